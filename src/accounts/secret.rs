//! The login secret: what a browser with JavaScript sends instead of the password.
//!
//! ```text
//! password ──PBKDF2-SHA256(salt = HMAC(installation secret, "e2e-salt" ‖ name), N)──> 64 bytes
//!                                                     ├── 0..32   login secret  → the server (argon2id, as a password was)
//!                                                     └── 32..64  wrapping secret (never leaves the tab; opens the
//!                                                                 member's end-to-end key ring)
//! ```
//!
//! With JavaScript, the login, registration and settings forms derive both halves in the
//! browser and send only the login secret, so the server never receives the password
//! nor anything from which the wrapping secret follows. Without JavaScript the form sends
//! the password and the server derives the login secret itself (same function, same
//! cost), so both doors reach the same credentials; the wrapping secret is never computed
//! here. The salt depends only on the installation and the name, so
//! `GET /login/salt` gives one to anyone for any name, existing or not.
//!
//! Accounts made before login secrets (`CredentialScheme::Argon2Hkdf`) check the password
//! itself; the salt endpoint says so, and their browsers send the password until the
//! member sets the destruction password again (the one moment the server has both
//! passwords and can re-make both verifiers).

use redb::ReadableTable;
use zeroize::Zeroizing;

use crate::crypto::{b64url_decode_exact, random_bytes};
use crate::store::tables::META;
use crate::store::{Store, StoreError};

/// PBKDF2-SHA256 iterations of new credentials (see the README for the figures: the
/// browser runs them at every login with JavaScript, the server at every login without).
pub const ITERATIONS: u32 = 210_000;

/// Iterations with the test key derivation (`KdfParams::DANGER_FAST`), so that tests
/// that log in hundreds of times stay quick.
pub const DANGER_FAST_ITERATIONS: u32 = 1_000;

/// The iterations of new login secrets that go with argon2id cost `kdf`.
pub fn iterations_for(kdf: crate::crypto::KdfParams) -> u32 {
    if kdf == crate::crypto::KdfParams::DANGER_FAST {
        DANGER_FAST_ITERATIONS
    } else {
        ITERATIONS
    }
}

/// Key of the installation secret (for the salts) in the `meta` table. Its name predates
/// login secrets: the end-to-end tier made it first, and its salts must not change.
const INSTALLATION_SECRET_KEY: &str = "e2e_installation_secret_v1";

/// The installation's secret for the salts, made on first use.
pub fn installation_secret(store: &Store) -> Result<[u8; 32], StoreError> {
    {
        let txn = store.read()?;
        if let Some(v) = txn.open_table(META)?.get(INSTALLATION_SECRET_KEY)?
            && let Ok(bytes) = <[u8; 32]>::try_from(v.value())
        {
            return Ok(bytes);
        }
    }
    let txn = store.write()?;
    let secret = {
        let mut meta = txn.open_table(META)?;
        let existing = meta
            .get(INSTALLATION_SECRET_KEY)?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok());
        match existing {
            Some(s) => s,
            None => {
                let s: [u8; 32] = random_bytes();
                meta.insert(INSTALLATION_SECRET_KEY, s.as_slice())?;
                s
            }
        }
    };
    txn.commit()?;
    Ok(secret)
}

/// The salt of a name: `HMAC-SHA256(installation secret, "e2e-salt" ‖ name)`, first 16
/// bytes. The same for a name whether or not it exists, and independent of the address
/// the site is reached at. `name` is the normalised name when it is a valid one.
pub fn salt(installation_secret: &[u8; 32], name: &str) -> [u8; 16] {
    let mac = crate::crypto::hmac_sha256(installation_secret, &[b"e2e-salt\0", name.as_bytes()]);
    let mut out = [0u8; 16];
    out.copy_from_slice(mac.get(..16).unwrap_or(&[0u8; 16]));
    out
}

/// The login secret of `password`: the first 32 bytes of PBKDF2-SHA256's 64, which are
/// its first block alone (PBKDF2 computes each 32-byte block separately), so the second
/// half, the wrapping secret, is never computed here.
pub fn derive(password: &[u8], salt: &[u8; 16], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    let rounds = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password,
        out.as_mut_slice(),
    );
    out
}

/// What a form presented for one password field: the password itself (no JavaScript) or
/// the login secret the browser derived from it.
pub enum Presented {
    Password(Zeroizing<Vec<u8>>),
    Secret(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Presented::Password(_) => "Presented::Password(..)",
            Presented::Secret(_) => "Presented::Secret(..)",
        })
    }
}

/// A field named `<field>_secret` that is present but not 32 bytes of url-safe base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Your browser sent a login secret that is not well formed. Reload the page and try again.")]
pub struct MalformedSecret;

impl Presented {
    /// A password as a form without JavaScript sends it.
    pub fn password(bytes: &[u8]) -> Self {
        Presented::Password(Zeroizing::new(bytes.to_vec()))
    }

    /// Read the password field `field` of a form: `<field>_secret` (the browser's login
    /// secret) when the form carries one, else `<field>` itself.
    pub fn from_form(
        form: &crate::web::request::Form,
        field: &str,
    ) -> Result<Self, MalformedSecret> {
        match form.get(&format!("{field}_secret")) {
            Some(text) if !text.is_empty() => b64url_decode_exact::<32>(text)
                .map(|b| Presented::Secret(Zeroizing::new(b)))
                .ok_or(MalformedSecret),
            _ => Ok(Presented::Password(Zeroizing::new(
                form.text(field).as_bytes().to_vec(),
            ))),
        }
    }

    /// Whether the password itself reached the server.
    pub fn is_password(&self) -> bool {
        matches!(self, Presented::Password(_))
    }

    /// The login secret: the browser's, or derived here from the password.
    pub fn login_secret(&self, salt: &[u8; 16], iterations: u32) -> Zeroizing<[u8; 32]> {
        match self {
            Presented::Password(p) => derive(p, salt, iterations),
            Presented::Secret(s) => Zeroizing::new(**s),
        }
    }

    /// The bytes a scheme that predates login secrets checks: the password (a login
    /// secret, which such a scheme cannot know, is checked as it is and matches nothing).
    pub fn legacy_bytes(&self) -> &[u8] {
        match self {
            Presented::Password(p) => p.as_slice(),
            Presented::Secret(s) => s.as_slice(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_depend_on_the_name_and_the_installation_only() {
        let a = salt(&[1; 32], "alice");
        assert_eq!(a, salt(&[1; 32], "alice"));
        assert_ne!(a, salt(&[1; 32], "alicf"));
        assert_ne!(a, salt(&[2; 32], "alice"));
    }

    /// The login secret is the first half of PBKDF2's 64 bytes (what the browser derives),
    /// checked against RFC 7914's PBKDF2-HMAC-SHA256 test vector (P = "passwd",
    /// S = "salt", c = 1).
    #[test]
    fn derive_is_pbkdf2_sha256_first_half() {
        let mut s = [0u8; 16];
        s[..4].copy_from_slice(b"salt");
        let ours = derive(b"passwd", &s, 1);
        let mut full = [0u8; 64];
        aws_lc_rs::pbkdf2::derive(
            aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::MIN,
            &s,
            b"passwd",
            &mut full,
        );
        assert_eq!(ours.as_slice(), &full[..32]);
        assert_ne!(ours.as_slice(), &full[32..]);
        let short = {
            let mut out = [0u8; 64];
            aws_lc_rs::pbkdf2::derive(
                aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
                std::num::NonZeroU32::MIN,
                b"salt",
                b"passwd",
                &mut out,
            );
            out
        };
        assert_eq!(
            &short[..8],
            &[0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f],
            "RFC 7914 section 11"
        );
    }

    #[test]
    fn forms_present_a_secret_or_the_password() {
        let f = crate::web::request::Form::parse(b"password=hunter22").unwrap();
        assert!(Presented::from_form(&f, "password").unwrap().is_password());
        let good = crate::crypto::b64url(&[7u8; 32]);
        let f = crate::web::request::Form::parse(
            format!("password=&password_secret={good}").as_bytes(),
        )
        .unwrap();
        let p = Presented::from_form(&f, "password").unwrap();
        assert!(!p.is_password());
        assert_eq!(p.login_secret(&[0; 16], 1).as_slice(), &[7u8; 32]);
        for bad in ["AAAA", "!!!!", &crate::crypto::b64url(&[7u8; 31])] {
            let f = crate::web::request::Form::parse(format!("password_secret={bad}").as_bytes())
                .unwrap();
            assert!(Presented::from_form(&f, "password").is_err(), "{bad}");
        }
        assert_eq!(format!("{p:?}"), "Presented::Secret(..)");
    }
}
