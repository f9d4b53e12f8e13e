//! Credentials: making them, checking a password against them (one function for every
//! scheme), peppering them, and the credentials of a decoy.
//!
//! The scheme today is `Argon2Hkdf` (see `store::records::CredentialScheme`): one
//! argon2id computation per attempt serves both verifiers, so timing cannot tell which
//! matched. A new scheme (e.g. a login secret derived in the browser) is a new variant
//! with its own arm in [`check`]; stored records name theirs.

use crate::crypto::master::Pepper;
use crate::crypto::{CryptoError, KdfParams, MasterKey, SecretKey, Verifier, random_bytes};
use crate::store::{CredentialScheme, Credentials};

/// The result of checking one password: both comparisons, always made.
pub struct Check {
    pub password: bool,
    pub destruction: bool,
    key: MasterKey,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").finish_non_exhaustive()
    }
}

/// The stored form of a verifier under `scheme`.
fn stored(inner: Verifier, peppered: bool, pepper: Option<&Pepper>) -> Verifier {
    match (peppered, pepper) {
        (false, _) => inner,
        (true, Some(p)) => Verifier(p.verifier(&inner.0)),
        // Peppered credentials without the pepper (refused at start-up, so never here):
        // nothing can match.
        (true, None) => Verifier(random_bytes()),
    }
}

/// Check `password` against `credentials`: exactly one argon2id computation and two
/// constant-time comparisons, whatever matches.
pub fn check(
    credentials: &Credentials,
    password: &[u8],
    pepper: Option<&Pepper>,
) -> Result<Check, CryptoError> {
    match credentials.scheme {
        CredentialScheme::Argon2Hkdf { peppered } => {
            let key = MasterKey::derive(password, &credentials.salt, credentials.kdf)?;
            let v = stored(key.verifier(), peppered, pepper);
            // Evaluate both comparisons, always.
            let password_ok = v.matches(&credentials.password_verifier);
            let destruction_ok = v.matches(&credentials.destruction_verifier);
            Ok(Check {
                password: password_ok,
                destruction: destruction_ok,
                key,
            })
        }
    }
}

impl Check {
    /// The member's data key, once the password matched.
    pub fn data_key(
        &self,
        credentials: &Credentials,
        pepper: Option<&Pepper>,
    ) -> Result<SecretKey, CryptoError> {
        match credentials.scheme {
            CredentialScheme::Argon2Hkdf { peppered } => {
                let inner = if peppered {
                    let p = pepper.ok_or(CryptoError::BadKey)?;
                    let bytes = p.wrap_key().open(&credentials.wrapped_data_key)?;
                    zeroize::Zeroizing::new(
                        String::from_utf8(bytes.to_vec()).map_err(|_| CryptoError::BadKey)?,
                    )
                } else {
                    zeroize::Zeroizing::new(credentials.wrapped_data_key.clone())
                };
                self.key.kek().unwrap_key(&inner)
            }
        }
    }
}

/// The stored form of a wrapped data key: `kek`'s token, with the pepper's outer layer.
fn wrap(
    kek: &SecretKey,
    data_key: &SecretKey,
    pepper: Option<&Pepper>,
) -> Result<String, CryptoError> {
    let inner = kek.wrap(data_key)?;
    match pepper {
        Some(p) => p.wrap_key().seal(inner.as_bytes()),
        None => Ok(inner),
    }
}

fn scheme_for(pepper: Option<&Pepper>) -> CredentialScheme {
    CredentialScheme::Argon2Hkdf {
        peppered: pepper.is_some(),
    }
}

/// New credentials: a fresh salt, both passwords through argon2id (twice), `data_key`
/// wrapped under the password's key. `None` when the two passwords give the same verifier.
pub fn create(
    password: &[u8],
    destruction: &[u8],
    kdf: KdfParams,
    data_key: &SecretKey,
    pepper: Option<&Pepper>,
) -> Result<Option<Credentials>, CryptoError> {
    let salt = random_bytes::<16>();
    let peppered = pepper.is_some();
    let m_password = MasterKey::derive(password, &salt, kdf)?;
    let m_destruction = MasterKey::derive(destruction, &salt, kdf)?;
    let password_verifier = stored(m_password.verifier(), peppered, pepper);
    let destruction_verifier = stored(m_destruction.verifier(), peppered, pepper);
    if password_verifier.matches(&destruction_verifier) {
        return Ok(None);
    }
    Ok(Some(Credentials {
        scheme: scheme_for(pepper),
        salt,
        kdf,
        password_verifier,
        destruction_verifier,
        wrapped_data_key: wrap(&m_password.kek(), data_key, pepper)?,
    }))
}

/// Which password a change replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Password,
    Destruction,
}

/// `credentials` with one password replaced by `new` (same salt and cost: the other
/// verifier was made with them). `current` is the check of the current password, which
/// unwraps the data key when the password itself changes. `None` when the new password
/// gives the other password's verifier.
pub fn replace(
    credentials: &Credentials,
    current: &Check,
    which: Which,
    new: &[u8],
    pepper: Option<&Pepper>,
) -> Result<Option<Credentials>, CryptoError> {
    let CredentialScheme::Argon2Hkdf { peppered } = credentials.scheme;
    let m_new = MasterKey::derive(new, &credentials.salt, credentials.kdf)?;
    let v_new = stored(m_new.verifier(), peppered, pepper);
    let mut updated = credentials.clone();
    match which {
        Which::Password => {
            if v_new.matches(&credentials.destruction_verifier) {
                return Ok(None);
            }
            let data_key = current.data_key(credentials, pepper)?;
            updated.password_verifier = v_new;
            updated.wrapped_data_key = wrap(&m_new.kek(), &data_key, pepper.filter(|_| peppered))?;
        }
        Which::Destruction => {
            if v_new.matches(&credentials.password_verifier) {
                return Ok(None);
            }
            updated.destruction_verifier = v_new;
        }
    }
    Ok(Some(updated))
}

/// The credentials of a decoy: the same scheme, salt and cost (what a stranger could ever
/// observe of an account, such as the time a login takes), verifiers that no password
/// gives, and a wrapped "data key" of the same shape that is random and opens nothing.
pub fn decoy(
    credentials: &Credentials,
    pepper: Option<&Pepper>,
) -> Result<Credentials, CryptoError> {
    let CredentialScheme::Argon2Hkdf { peppered } = credentials.scheme;
    Ok(Credentials {
        scheme: credentials.scheme,
        salt: credentials.salt,
        kdf: credentials.kdf,
        password_verifier: Verifier(random_bytes()),
        destruction_verifier: Verifier(random_bytes()),
        wrapped_data_key: wrap(
            &SecretKey::generate(),
            &SecretKey::generate(),
            pepper.filter(|_| peppered),
        )?,
    })
}

/// Stand-in credentials for names nobody has: a login for them runs the same checks.
pub fn dummy(kdf: KdfParams, pepper: Option<&Pepper>) -> Result<Credentials, CryptoError> {
    let fake = Credentials {
        scheme: scheme_for(pepper),
        salt: random_bytes(),
        kdf,
        password_verifier: Verifier(random_bytes()),
        destruction_verifier: Verifier(random_bytes()),
        wrapped_data_key: String::new(),
    };
    decoy(&fake, pepper)
}

/// `credentials` moved to the peppered form, without the passwords: the stored verifiers
/// get the pepper's HMAC and the wrapped data key its outer layer. `None` when they are
/// peppered already.
pub fn apply_pepper(
    credentials: &Credentials,
    pepper: &Pepper,
) -> Result<Option<Credentials>, CryptoError> {
    let CredentialScheme::Argon2Hkdf { peppered } = credentials.scheme;
    if peppered {
        return Ok(None);
    }
    Ok(Some(Credentials {
        scheme: CredentialScheme::Argon2Hkdf { peppered: true },
        salt: credentials.salt,
        kdf: credentials.kdf,
        password_verifier: Verifier(pepper.verifier(&credentials.password_verifier.0)),
        destruction_verifier: Verifier(pepper.verifier(&credentials.destruction_verifier.0)),
        wrapped_data_key: pepper
            .wrap_key()
            .seal(credentials.wrapped_data_key.as_bytes())?,
    }))
}

/// A sealed token of the same length as `like` (a Fernet token), under a random key:
/// the decoy's stand-in for a sealed private key.
pub fn look_alike_token(like: &str) -> Result<String, CryptoError> {
    // Fernet: base64url(version 1 + time 8 + IV 16 + ciphertext + HMAC 32), the
    // ciphertext padded to whole 16-byte blocks with at least one byte of padding.
    // (The length over-counts base64 padding by at most two bytes: round down to blocks.)
    let decoded = like.len() / 4 * 3;
    let overhead = 1 + 8 + 16 + 32;
    let ciphertext = (decoded.saturating_sub(overhead) / 16 * 16).max(16);
    let mut random = zeroize::Zeroizing::new(vec![0u8; ciphertext - 1]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
    SecretKey::generate().seal(&random)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::master::MasterSecret;

    const FAST: KdfParams = KdfParams::DANGER_FAST;

    fn pepper() -> Pepper {
        MasterSecret::from_bytes(&[9u8; 32]).pepper()
    }

    #[test]
    fn both_passwords_and_a_wrong_one() {
        let data_key = SecretKey::generate();
        for pepper in [None, Some(pepper())] {
            let p = pepper.as_ref();
            let c = create(b"password one", b"destroy two", FAST, &data_key, p)
                .unwrap()
                .unwrap();
            let ok = check(&c, b"password one", p).unwrap();
            assert!(ok.password && !ok.destruction);
            assert_eq!(ok.data_key(&c, p).unwrap().expose(), data_key.expose());
            let d = check(&c, b"destroy two", p).unwrap();
            assert!(!d.password && d.destruction);
            let wrong = check(&c, b"wrong", p).unwrap();
            assert!(!wrong.password && !wrong.destruction);
            assert!(
                create(b"same", b"same", FAST, &data_key, p)
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn the_pepper_migration_keeps_both_passwords_and_the_data_key() {
        let data_key = SecretKey::generate();
        let old = create(b"password one", b"destroy two", FAST, &data_key, None)
            .unwrap()
            .unwrap();
        let pepper = pepper();
        let new = apply_pepper(&old, &pepper).unwrap().unwrap();
        assert_eq!(new.scheme, CredentialScheme::Argon2Hkdf { peppered: true });
        assert!(apply_pepper(&new, &pepper).unwrap().is_none(), "once");
        // Nothing stored is what it was: the old verifiers and wrapped key are gone.
        assert_ne!(new.password_verifier, old.password_verifier);
        assert_ne!(new.destruction_verifier, old.destruction_verifier);
        assert!(!new.wrapped_data_key.contains(&old.wrapped_data_key));
        let ok = check(&new, b"password one", Some(&pepper)).unwrap();
        assert!(ok.password && !ok.destruction);
        assert_eq!(
            ok.data_key(&new, Some(&pepper)).unwrap().expose(),
            data_key.expose()
        );
        assert!(
            check(&new, b"destroy two", Some(&pepper))
                .unwrap()
                .destruction
        );
        // Without the pepper, or with another one, nothing matches: a copy of the database
        // alone cannot test a guess, nor tell the two passwords apart.
        for p in [None, Some(&MasterSecret::from_bytes(&[1u8; 32]).pepper())] {
            let c = check(&new, b"password one", p).unwrap();
            assert!(!c.password && !c.destruction);
            let c = check(&new, b"destroy two", p).unwrap();
            assert!(!c.password && !c.destruction);
        }
        // And a password change after the migration keeps the peppered form.
        let changed = replace(&new, &ok, Which::Password, b"password three", Some(&pepper))
            .unwrap()
            .unwrap();
        let ok = check(&changed, b"password three", Some(&pepper)).unwrap();
        assert!(ok.password);
        assert_eq!(
            ok.data_key(&changed, Some(&pepper)).unwrap().expose(),
            data_key.expose()
        );
        assert!(!check(&changed, b"password three", None).unwrap().password);
    }

    #[test]
    fn a_decoy_keeps_its_shape_and_matches_nothing() {
        let data_key = SecretKey::generate();
        let pepper = pepper();
        let real = create(
            b"password one",
            b"destroy two",
            FAST,
            &data_key,
            Some(&pepper),
        )
        .unwrap()
        .unwrap();
        let fake = decoy(&real, Some(&pepper)).unwrap();
        assert_eq!(fake.scheme, real.scheme);
        assert_eq!(fake.salt, real.salt);
        assert_eq!(fake.kdf, real.kdf);
        assert_eq!(fake.wrapped_data_key.len(), real.wrapped_data_key.len());
        for pw in [&b"password one"[..], b"destroy two"] {
            let c = check(&fake, pw, Some(&pepper)).unwrap();
            assert!(!c.password && !c.destruction);
        }
        let token = SecretKey::generate().seal(&[5u8; 1217]).unwrap();
        assert_eq!(look_alike_token(&token).unwrap().len(), token.len());
    }

    #[test]
    fn changing_either_password_refuses_the_other_one() {
        let data_key = SecretKey::generate();
        let c = create(b"password one", b"destroy two", FAST, &data_key, None)
            .unwrap()
            .unwrap();
        let ok = check(&c, b"password one", None).unwrap();
        assert!(
            replace(&c, &ok, Which::Password, b"destroy two", None)
                .unwrap()
                .is_none()
        );
        assert!(
            replace(&c, &ok, Which::Destruction, b"password one", None)
                .unwrap()
                .is_none()
        );
        let d = replace(&c, &ok, Which::Destruction, b"destroy three", None)
            .unwrap()
            .unwrap();
        assert!(check(&d, b"destroy three", None).unwrap().destruction);
        assert!(!check(&d, b"destroy two", None).unwrap().destruction);
    }
}
