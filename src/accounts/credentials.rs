//! Credentials: making them, checking a password against them (one function for every
//! scheme), peppering them, and the credentials of a decoy.
//!
//! New credentials use `LoginSecret` (see `store::records::CredentialScheme` and
//! `secret.rs`): argon2id over the login secret, which a browser with JavaScript derives
//! from the password and sends instead of it. Accounts made before keep `Argon2Hkdf`
//! (argon2id over the password) until their destruction password is set again. Either
//! way one argon2id computation per attempt serves both verifiers, so timing cannot tell
//! which matched.

use zeroize::Zeroizing;

use super::secret::Presented;
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

/// The bytes argon2id takes under `scheme`: the login secret (the browser's, or derived
/// here from the password with the name's `salt`), or for accounts that predate login
/// secrets the password itself.
fn kdf_input(
    scheme: CredentialScheme,
    presented: &Presented,
    name_salt: &[u8; 16],
) -> Zeroizing<Vec<u8>> {
    match scheme {
        CredentialScheme::Argon2Hkdf { .. } => Zeroizing::new(presented.legacy_bytes().to_vec()),
        CredentialScheme::LoginSecret { iterations, .. } => {
            Zeroizing::new(presented.login_secret(name_salt, iterations).to_vec())
        }
    }
}

/// Check what a form presented against `credentials`: at most one PBKDF2 (a password for
/// a login-secret scheme), exactly one argon2id computation and two constant-time
/// comparisons, whatever matches. `name_salt` is the salt of the member's name
/// (`secret::salt`).
pub fn check(
    credentials: &Credentials,
    presented: &Presented,
    name_salt: &[u8; 16],
    pepper: Option<&Pepper>,
) -> Result<Check, CryptoError> {
    let input = kdf_input(credentials.scheme, presented, name_salt);
    let key = MasterKey::derive(&input, &credentials.salt, credentials.kdf)?;
    let v = stored(key.verifier(), credentials.scheme.peppered(), pepper);
    // Evaluate both comparisons, always.
    let password_ok = v.matches(&credentials.password_verifier);
    let destruction_ok = v.matches(&credentials.destruction_verifier);
    Ok(Check {
        password: password_ok,
        destruction: destruction_ok,
        key,
    })
}

impl Check {
    /// The member's data key, once the password matched.
    pub fn data_key(
        &self,
        credentials: &Credentials,
        pepper: Option<&Pepper>,
    ) -> Result<SecretKey, CryptoError> {
        let inner = if credentials.scheme.peppered() {
            let p = pepper.ok_or(CryptoError::BadKey)?;
            let bytes = p.wrap_key().open(&credentials.wrapped_data_key)?;
            Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|_| CryptoError::BadKey)?)
        } else {
            Zeroizing::new(credentials.wrapped_data_key.clone())
        };
        self.key.kek().unwrap_key(&inner)
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

/// The scheme of new credentials.
fn scheme_for(pepper: Option<&Pepper>, iterations: u32) -> CredentialScheme {
    CredentialScheme::LoginSecret {
        peppered: pepper.is_some(),
        iterations,
    }
}

/// Verifiers and wrapped data key of a login-secret scheme, from both login secrets.
/// `None` when they give the same verifier.
#[allow(
    clippy::too_many_arguments,
    reason = "the whole of new credentials: both secrets, salts, costs, key and pepper"
)]
fn made(
    password: &[u8],
    destruction: &[u8],
    salt: [u8; 16],
    kdf: KdfParams,
    scheme: CredentialScheme,
    data_key: &SecretKey,
    pepper: Option<&Pepper>,
) -> Result<Option<Credentials>, CryptoError> {
    let peppered = scheme.peppered();
    let m_password = MasterKey::derive(password, &salt, kdf)?;
    let m_destruction = MasterKey::derive(destruction, &salt, kdf)?;
    let password_verifier = stored(m_password.verifier(), peppered, pepper);
    let destruction_verifier = stored(m_destruction.verifier(), peppered, pepper);
    if password_verifier.matches(&destruction_verifier) {
        return Ok(None);
    }
    Ok(Some(Credentials {
        scheme,
        salt,
        kdf,
        password_verifier,
        destruction_verifier,
        wrapped_data_key: wrap(&m_password.kek(), data_key, pepper.filter(|_| peppered))?,
    }))
}

/// New credentials under the login-secret scheme: a fresh argon2id salt, both login
/// secrets (derived here from whatever was a password) through argon2id, `data_key`
/// wrapped under the password's key. `None` when the two give the same verifier.
pub fn create(
    password: &Presented,
    destruction: &Presented,
    name_salt: &[u8; 16],
    iterations: u32,
    kdf: KdfParams,
    data_key: &SecretKey,
    pepper: Option<&Pepper>,
) -> Result<Option<Credentials>, CryptoError> {
    let l_password = password.login_secret(name_salt, iterations);
    let l_destruction = destruction.login_secret(name_salt, iterations);
    made(
        l_password.as_slice(),
        l_destruction.as_slice(),
        random_bytes::<16>(),
        kdf,
        scheme_for(pepper, iterations),
        data_key,
        pepper,
    )
}

/// Which password a change replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Password,
    Destruction,
}

/// Why [`replace`] made nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The new password gives the other password's verifier.
    SameAsOther,
    /// The account predates login secrets and the change came as login secrets: only a
    /// change of the destruction password with both passwords moves it (see [`replace`]).
    NeedsPasswords,
}

/// `credentials` with one password replaced by `new` (same argon2id salt and cost: the
/// other verifier was made with them). `current` is what the member presented as their
/// current password and `check` its check, which unwraps the data key when the password
/// itself changes.
///
/// An account that predates login secrets moves to them when its destruction password is
/// changed with both passwords in hand (the only moment the server has both): the new
/// credentials are the login-secret scheme's, over the current password and the new
/// destruction password.
#[allow(
    clippy::too_many_arguments,
    reason = "one change: the credentials, both sides of the change, the name's salt, the costs"
)]
pub fn replace(
    credentials: &Credentials,
    current: &Presented,
    check: &Check,
    which: Which,
    new: &Presented,
    name_salt: &[u8; 16],
    iterations: u32,
    pepper: Option<&Pepper>,
) -> Result<Result<Credentials, Refused>, CryptoError> {
    let peppered = credentials.scheme.peppered();
    if let CredentialScheme::Argon2Hkdf { .. } = credentials.scheme {
        match (which, current, new) {
            (Which::Destruction, Presented::Password(_), Presented::Password(_)) => {
                let data_key = check.data_key(credentials, pepper)?;
                let scheme = CredentialScheme::LoginSecret {
                    peppered,
                    iterations,
                };
                let l_current = current.login_secret(name_salt, iterations);
                let l_new = new.login_secret(name_salt, iterations);
                return Ok(made(
                    l_current.as_slice(),
                    l_new.as_slice(),
                    credentials.salt,
                    credentials.kdf,
                    scheme,
                    &data_key,
                    pepper,
                )?
                .ok_or(Refused::SameAsOther));
            }
            (_, Presented::Password(_), Presented::Password(_)) => {}
            _ => return Ok(Err(Refused::NeedsPasswords)),
        }
    }
    let input = kdf_input(credentials.scheme, new, name_salt);
    let m_new = MasterKey::derive(&input, &credentials.salt, credentials.kdf)?;
    let v_new = stored(m_new.verifier(), peppered, pepper);
    let mut updated = credentials.clone();
    match which {
        Which::Password => {
            if v_new.matches(&credentials.destruction_verifier) {
                return Ok(Err(Refused::SameAsOther));
            }
            let data_key = check.data_key(credentials, pepper)?;
            updated.password_verifier = v_new;
            updated.wrapped_data_key = wrap(&m_new.kek(), &data_key, pepper.filter(|_| peppered))?;
        }
        Which::Destruction => {
            if v_new.matches(&credentials.password_verifier) {
                return Ok(Err(Refused::SameAsOther));
            }
            updated.destruction_verifier = v_new;
        }
    }
    Ok(Ok(updated))
}

/// The credentials of a decoy: the same scheme, salt and cost (what a stranger could ever
/// observe of an account, such as the time a login takes or what `GET /login/salt`
/// says), verifiers that no password gives, and a wrapped "data key" of the same shape
/// that is random and opens nothing.
pub fn decoy(
    credentials: &Credentials,
    pepper: Option<&Pepper>,
) -> Result<Credentials, CryptoError> {
    let peppered = credentials.scheme.peppered();
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
pub fn dummy(
    kdf: KdfParams,
    iterations: u32,
    pepper: Option<&Pepper>,
) -> Result<Credentials, CryptoError> {
    let fake = Credentials {
        scheme: scheme_for(pepper, iterations),
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
    if credentials.scheme.peppered() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        scheme: credentials.scheme.with_pepper(),
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
    use crate::accounts::secret;
    use crate::crypto::master::MasterSecret;

    const FAST: KdfParams = KdfParams::DANGER_FAST;
    const ITER: u32 = 1_000;
    const SALT: [u8; 16] = [3; 16];

    fn pepper() -> Pepper {
        MasterSecret::from_bytes(&[9u8; 32]).pepper()
    }

    fn pw(s: &str) -> Presented {
        Presented::Password(Zeroizing::new(s.as_bytes().to_vec()))
    }

    /// What a browser with JavaScript sends for `s`.
    fn js(s: &str) -> Presented {
        Presented::Secret(secret::derive(s.as_bytes(), &SALT, ITER))
    }

    fn new(p: &str, d: &str, data_key: &SecretKey, pepper: Option<&Pepper>) -> Credentials {
        create(&pw(p), &pw(d), &SALT, ITER, FAST, data_key, pepper)
            .unwrap()
            .unwrap()
    }

    fn ck(c: &Credentials, p: &Presented, pepper: Option<&Pepper>) -> Check {
        check(c, p, &SALT, pepper).unwrap()
    }

    /// Credentials as accounts made before login secrets have them (argon2id over the
    /// password itself).
    fn legacy(p: &str, d: &str, data_key: &SecretKey) -> Credentials {
        let salt = random_bytes::<16>();
        let m_p = MasterKey::derive(p.as_bytes(), &salt, FAST).unwrap();
        let m_d = MasterKey::derive(d.as_bytes(), &salt, FAST).unwrap();
        Credentials {
            scheme: CredentialScheme::Argon2Hkdf { peppered: false },
            salt,
            kdf: FAST,
            password_verifier: m_p.verifier(),
            destruction_verifier: m_d.verifier(),
            wrapped_data_key: m_p.kek().wrap(data_key).unwrap(),
        }
    }

    #[test]
    fn both_passwords_and_a_wrong_one_through_either_door() {
        let data_key = SecretKey::generate();
        for pepper in [None, Some(pepper())] {
            let p = pepper.as_ref();
            let c = new("password one", "destroy two", &data_key, p);
            assert_eq!(
                c.scheme,
                CredentialScheme::LoginSecret {
                    peppered: p.is_some(),
                    iterations: ITER
                }
            );
            for door in [pw, js] {
                let ok = ck(&c, &door("password one"), p);
                assert!(ok.password && !ok.destruction);
                assert_eq!(ok.data_key(&c, p).unwrap().expose(), data_key.expose());
                let d = ck(&c, &door("destroy two"), p);
                assert!(!d.password && d.destruction);
                let wrong = ck(&c, &door("wrong"), p);
                assert!(!wrong.password && !wrong.destruction);
            }
            // The secret of another name's salt is another secret.
            let elsewhere = Presented::Secret(secret::derive(b"password one", &[4; 16], ITER));
            assert!(!ck(&c, &elsewhere, p).password);
            assert!(
                create(&pw("same"), &js("same"), &SALT, ITER, FAST, &data_key, p)
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn the_pepper_migration_keeps_both_passwords_and_the_data_key() {
        let data_key = SecretKey::generate();
        let old = new("password one", "destroy two", &data_key, None);
        let pepper = pepper();
        let peppered = apply_pepper(&old, &pepper).unwrap().unwrap();
        assert_eq!(
            peppered.scheme,
            CredentialScheme::LoginSecret {
                peppered: true,
                iterations: ITER
            }
        );
        assert!(apply_pepper(&peppered, &pepper).unwrap().is_none(), "once");
        // Nothing stored is what it was: the old verifiers and wrapped key are gone.
        assert_ne!(peppered.password_verifier, old.password_verifier);
        assert_ne!(peppered.destruction_verifier, old.destruction_verifier);
        assert!(!peppered.wrapped_data_key.contains(&old.wrapped_data_key));
        let ok = ck(&peppered, &pw("password one"), Some(&pepper));
        assert!(ok.password && !ok.destruction);
        assert_eq!(
            ok.data_key(&peppered, Some(&pepper)).unwrap().expose(),
            data_key.expose()
        );
        assert!(ck(&peppered, &js("destroy two"), Some(&pepper)).destruction);
        // Without the pepper, or with another one, nothing matches: a copy of the database
        // alone cannot test a guess, nor tell the two passwords apart.
        for p in [None, Some(&MasterSecret::from_bytes(&[1u8; 32]).pepper())] {
            let c = ck(&peppered, &pw("password one"), p);
            assert!(!c.password && !c.destruction);
            let c = ck(&peppered, &pw("destroy two"), p);
            assert!(!c.password && !c.destruction);
        }
        // And a password change after the migration keeps the peppered form.
        let changed = replace(
            &peppered,
            &js("password one"),
            &ok,
            Which::Password,
            &js("password three"),
            &SALT,
            ITER,
            Some(&pepper),
        )
        .unwrap()
        .unwrap();
        let ok = ck(&changed, &pw("password three"), Some(&pepper));
        assert!(ok.password);
        assert_eq!(
            ok.data_key(&changed, Some(&pepper)).unwrap().expose(),
            data_key.expose()
        );
        assert!(!ck(&changed, &pw("password three"), None).password);
        // Legacy credentials are peppered in their own scheme.
        let l = apply_pepper(&legacy("a password", "a destruction", &data_key), &pepper)
            .unwrap()
            .unwrap();
        assert_eq!(l.scheme, CredentialScheme::Argon2Hkdf { peppered: true });
        assert!(ck(&l, &pw("a password"), Some(&pepper)).password);
    }

    #[test]
    fn a_decoy_keeps_its_shape_and_matches_nothing() {
        let data_key = SecretKey::generate();
        let pepper = pepper();
        let real = new("password one", "destroy two", &data_key, Some(&pepper));
        let fake = decoy(&real, Some(&pepper)).unwrap();
        assert_eq!(fake.scheme, real.scheme);
        assert_eq!(fake.salt, real.salt);
        assert_eq!(fake.kdf, real.kdf);
        assert_eq!(fake.wrapped_data_key.len(), real.wrapped_data_key.len());
        for pw in [pw("password one"), js("password one"), pw("destroy two")] {
            let c = ck(&fake, &pw, Some(&pepper));
            assert!(!c.password && !c.destruction);
        }
        let token = SecretKey::generate().seal(&[5u8; 1217]).unwrap();
        assert_eq!(look_alike_token(&token).unwrap().len(), token.len());
        let d = dummy(FAST, ITER, None).unwrap();
        assert_eq!(
            d.scheme,
            CredentialScheme::LoginSecret {
                peppered: false,
                iterations: ITER
            }
        );
    }

    #[test]
    fn changing_either_password_refuses_the_other_one() {
        let data_key = SecretKey::generate();
        let c = new("password one", "destroy two", &data_key, None);
        let cur = pw("password one");
        let ok = ck(&c, &cur, None);
        let r =
            |which, new: Presented| replace(&c, &cur, &ok, which, &new, &SALT, ITER, None).unwrap();
        assert_eq!(
            r(Which::Password, js("destroy two")).err(),
            Some(Refused::SameAsOther)
        );
        assert_eq!(
            r(Which::Destruction, pw("password one")).err(),
            Some(Refused::SameAsOther)
        );
        let d = r(Which::Destruction, js("destroy three")).unwrap();
        assert!(ck(&d, &pw("destroy three"), None).destruction);
        assert!(!ck(&d, &pw("destroy two"), None).destruction);
    }

    #[test]
    fn legacy_accounts_check_the_password_and_move_when_the_destruction_password_is_set() {
        let data_key = SecretKey::generate();
        let old = legacy("password one", "destroy two", &data_key);
        let ok = ck(&old, &pw("password one"), None);
        assert!(ok.password && !ok.destruction);
        assert!(ck(&old, &pw("destroy two"), None).destruction);
        // A login secret cannot match what was made from the password itself.
        let c = ck(&old, &js("password one"), None);
        assert!(!c.password && !c.destruction);
        // A password change keeps the old scheme (the destruction password is not known).
        let changed = replace(
            &old,
            &pw("password one"),
            &ok,
            Which::Password,
            &pw("password two"),
            &SALT,
            ITER,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(changed.scheme, old.scheme);
        let ok2 = ck(&changed, &pw("password two"), None);
        assert!(ok2.password);
        // Changes that come as login secrets cannot move it.
        assert_eq!(
            replace(
                &changed,
                &pw("password two"),
                &ok2,
                Which::Destruction,
                &js("d3"),
                &SALT,
                ITER,
                None
            )
            .unwrap()
            .err(),
            Some(Refused::NeedsPasswords)
        );
        // Setting the destruction password with both passwords moves it, keeping the data key.
        let moved = replace(
            &changed,
            &pw("password two"),
            &ok2,
            Which::Destruction,
            &pw("destroy two"),
            &SALT,
            ITER,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            moved.scheme,
            CredentialScheme::LoginSecret {
                peppered: false,
                iterations: ITER
            }
        );
        for door in [pw, js] {
            let c = ck(&moved, &door("password two"), None);
            assert!(c.password && !c.destruction);
            assert_eq!(
                c.data_key(&moved, None).unwrap().expose(),
                data_key.expose()
            );
            assert!(ck(&moved, &door("destroy two"), None).destruction);
        }
    }
}
