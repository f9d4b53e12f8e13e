//! Usernames: normalised with NFKC and Unicode case folding so that two names that look
//! the same map to one, restricted to identifier characters of a single script (UTS #39),
//! and indexed by their confusable skeleton so that `paypal` and `pаypal` (Cyrillic а)
//! cannot both exist.

use caseless::default_case_fold_str;
use unicode_normalization::UnicodeNormalization;
use unicode_security::GeneralSecurityProfile;
use unicode_security::MixedScript;
use unicode_security::confusable_detection::skeleton;

/// Shortest and longest username, in characters after normalisation.
pub const MIN_CHARS: usize = 3;
pub const MAX_CHARS: usize = 32;
/// Input longer than this (in bytes) is refused before any Unicode processing.
const MAX_INPUT_BYTES: usize = 256;

/// Punctuation allowed inside a username besides letters and digits.
const ALLOWED_PUNCTUATION: [char; 3] = ['_', '-', '.'];

/// A validated, normalised username.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Username {
    normalised: String,
    skeleton: String,
}

impl std::fmt::Debug for Username {
    // Usernames are personal data: keep them out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Username(..)")
    }
}

/// Why a username was refused. The text is shown to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("Usernames are 3 to 32 characters long.")]
    Length,
    #[error("Usernames may contain letters, digits and the characters _ - . only.")]
    Characters,
    #[error("Usernames need at least one letter or digit.")]
    NoAlphanumeric,
    #[error(
        "Usernames must be written in one script (for example all Latin or all Cyrillic), so that they cannot imitate another name."
    )]
    MixedScript,
}

impl Username {
    /// Validate and normalise what a member typed.
    pub fn parse(input: &str) -> Result<Self, UsernameError> {
        let input = input.trim();
        if input.len() > MAX_INPUT_BYTES {
            return Err(UsernameError::Length);
        }
        let first: String = input.nfkc().collect();
        let folded = default_case_fold_str(&first);
        let normalised: String = folded.nfkc().collect();
        let count = normalised.chars().count();
        if !(MIN_CHARS..=MAX_CHARS).contains(&count) {
            return Err(UsernameError::Length);
        }
        let mut any_alnum = false;
        for c in normalised.chars() {
            if ALLOWED_PUNCTUATION.contains(&c) {
                continue;
            }
            if !c.is_alphanumeric() || !c.identifier_allowed() {
                return Err(UsernameError::Characters);
            }
            any_alnum = true;
        }
        if !any_alnum {
            return Err(UsernameError::NoAlphanumeric);
        }
        if !normalised.as_str().is_single_script() {
            return Err(UsernameError::MixedScript);
        }
        let skeleton: String = skeleton(&normalised).collect();
        Ok(Self {
            normalised,
            skeleton,
        })
    }

    /// Rebuild from a stored, already-normalised name.
    pub fn from_stored(normalised: &str) -> Self {
        Self {
            normalised: normalised.to_owned(),
            skeleton: skeleton(normalised).collect(),
        }
    }

    /// The normalised name, as stored and displayed.
    pub fn as_str(&self) -> &str {
        &self.normalised
    }

    /// The confusable skeleton, unique among members.
    pub fn skeleton(&self) -> &str {
        &self.skeleton
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_compatibility_forms_collapse() {
        let a = Username::parse("Alice").unwrap();
        assert_eq!(a.as_str(), "alice");
        assert_eq!(Username::parse("ALICE").unwrap(), a);
        // Fullwidth letters are NFKC-equivalent to ASCII.
        assert_eq!(Username::parse("ＡＬＩＣＥ").unwrap(), a);
        // German sharp s folds to "ss".
        assert_eq!(Username::parse("Straße").unwrap().as_str(), "strasse");
    }

    #[test]
    fn mixed_script_is_refused() {
        // First letter is CYRILLIC SMALL LETTER A.
        assert_eq!(
            Username::parse("\u{0430}lice"),
            Err(UsernameError::MixedScript)
        );
    }

    #[test]
    fn whole_script_confusables_share_a_skeleton() {
        // All-Cyrillic letters that look like Latin "cop".
        let cyr = Username::parse("\u{0441}\u{043e}\u{0440}").unwrap();
        let lat = Username::parse("cop").unwrap();
        assert_ne!(cyr.as_str(), lat.as_str());
        assert_eq!(cyr.skeleton(), lat.skeleton());
        // "rn" imitates "m".
        assert_eq!(
            Username::parse("rnodern").unwrap().skeleton(),
            Username::parse("modern").unwrap().skeleton()
        );
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert_eq!(Username::parse("ab"), Err(UsernameError::Length));
        assert_eq!(Username::parse(&"a".repeat(33)), Err(UsernameError::Length));
        assert_eq!(
            Username::parse(&"a".repeat(10_000)),
            Err(UsernameError::Length)
        );
        assert_eq!(Username::parse("a b c"), Err(UsernameError::Characters));
        assert_eq!(Username::parse("<script>"), Err(UsernameError::Characters));
        assert_eq!(
            Username::parse("ab\u{202e}cd"),
            Err(UsernameError::Characters)
        );
        assert_eq!(Username::parse("ab\0cd"), Err(UsernameError::Characters));
        assert_eq!(Username::parse("..."), Err(UsernameError::NoAlphanumeric));
        assert!(Username::parse("  bob_1.x-y ").is_ok());
        assert!(Username::parse("мария").is_ok());
        assert!(
            Username::parse("太郎さん").is_ok(),
            "Han with Hiragana is one script set (Japanese)"
        );
    }

    #[test]
    fn debug_hides_the_name() {
        assert_eq!(
            format!("{:?}", Username::parse("alice").unwrap()),
            "Username(..)"
        );
    }
}
