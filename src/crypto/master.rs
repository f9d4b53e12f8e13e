//! The master key: a secret kept outside the database (a systemd credential or a private
//! file) from which two keys are derived:
//!
//! - the key that seals the onion identity key in the database (`onion_key`), and
//! - the *pepper* (`pepper`), an outer keyed step on every stored password verifier and
//!   wrapped data key, so that a copy of the database alone cannot test a guessed
//!   password, nor tell the destruction password from the password.
//!
//! The file's bytes (at least 32 of them, in any form: raw, base64, hex) go through
//! HKDF-SHA256 with a fixed salt; each use expands its own label. Losing the master key
//! loses the onion address and every account (see the README).

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::config::Config;
use crate::crypto::{SecretKey, hmac_sha256};

/// Why the master key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("cannot read the master key from {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

/// The master secret: HKDF's pseudo-random key over the file's bytes. Zeroized on drop,
/// never printed.
pub struct MasterSecret {
    prk: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret(..)")
    }
}

/// Where the configuration says the master key is, if anywhere.
pub fn source(config: &Config) -> Option<MasterKeySource> {
    let credential = config
        .master_key_credential
        .as_ref()
        .or(config.tor.master_key_credential.as_ref());
    let file = config
        .master_key_file
        .as_ref()
        .or(config.tor.master_key_file.as_ref());
    match (credential, file) {
        (Some(name), _) => Some(MasterKeySource::Credential(name.clone())),
        (None, Some(path)) => Some(MasterKeySource::File(path.clone())),
        (None, None) => None,
    }
}

/// A configured master key: a systemd credential's name, or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    Credential(String),
    File(PathBuf),
}

impl MasterSecret {
    /// Read the master key named by the configuration, if one is configured.
    pub fn load(config: &Config) -> Result<Option<Self>, MasterKeyError> {
        // systemd keeps credentials in a private, non-swappable directory of its own; a
        // file the operator named must not be readable by anyone else.
        let (path, check_mode) = match source(config) {
            Some(MasterKeySource::Credential(name)) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    MasterKeyError::Unreadable {
                        path: format!("credential {name}"),
                        reason:
                            "$CREDENTIALS_DIRECTORY is not set (is LoadCredential= configured?)"
                                .into(),
                    }
                })?;
                (PathBuf::from(dir).join(name), false)
            }
            Some(MasterKeySource::File(path)) => (path, true),
            None => return Ok(None),
        };
        let unreadable = |reason: String| MasterKeyError::Unreadable {
            path: path.display().to_string(),
            reason,
        };
        if check_mode {
            crate::hardening::check_private_file(&path).map_err(|e| unreadable(e.to_string()))?;
        }
        let bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| unreadable(e.to_string()))?);
        if bytes.len() < 32 {
            return Err(unreadable("it holds fewer than 32 bytes".into()));
        }
        Ok(Some(Self::from_bytes(&bytes)))
    }

    /// The master secret of some key material (tests, and `load`).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let (mut prk, _) =
            hkdf::Hkdf::<sha2::Sha256>::extract(Some(b"ghostcache master key"), bytes);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&prk);
        zeroize::Zeroize::zeroize(prk.as_mut_slice());
        Self { prk: out }
    }

    fn expand(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        // A 32-byte PRK is valid and 32 bytes is far below HKDF-SHA256's limit, so
        // neither step can fail.
        let expanded = match hkdf::Hkdf::<sha2::Sha256>::from_prk(self.prk.as_ref()) {
            Ok(hk) => hk.expand(label, out.as_mut()).is_ok(),
            Err(_) => false,
        };
        if !expanded {
            out.as_mut().fill(0);
        }
        out
    }

    /// The key that seals the onion identity key in the database.
    pub fn onion_key(&self) -> SecretKey {
        SecretKey::from_bytes(&self.expand(b"onion identity"))
    }

    /// The password pepper.
    pub fn pepper(&self) -> Pepper {
        Pepper {
            auth: self.expand(b"password pepper: verifiers"),
            wrap: SecretKey::from_bytes(&self.expand(b"password pepper: data key")),
        }
    }
}

/// The pepper: an outer keyed step on the stored password verifiers (HMAC) and on the
/// wrapped data key (a second Fernet layer). Both steps apply to what is already stored,
/// so existing accounts are moved to the peppered form without their passwords.
pub struct Pepper {
    auth: Zeroizing<[u8; 32]>,
    wrap: SecretKey,
}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(..)")
    }
}

impl Pepper {
    /// The stored form of a verifier: `HMAC(pepper, verifier)`.
    pub fn verifier(&self, inner: &[u8; 32]) -> [u8; 32] {
        hmac_sha256(self.auth.as_ref(), &[b"verifier", inner])
    }

    /// The key of the outer layer around a wrapped data key.
    pub fn wrap_key(&self) -> &SecretKey {
        &self.wrap
    }

    /// A value stored in the database that tells, at start-up, whether the configured
    /// master key is the one the accounts were peppered with.
    pub fn check_value(&self) -> [u8; 32] {
        hmac_sha256(self.auth.as_ref(), &[b"ghostcache pepper check"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_independent_and_stable() {
        let a = MasterSecret::from_bytes(&[7u8; 32]);
        let b = MasterSecret::from_bytes(&[7u8; 32]);
        assert_eq!(a.onion_key().expose(), b.onion_key().expose());
        assert_ne!(a.onion_key().expose(), a.pepper().wrap_key().expose());
        assert_eq!(a.pepper().check_value(), b.pepper().check_value());
        let other = MasterSecret::from_bytes(&[8u8; 32]);
        assert_ne!(a.pepper().check_value(), other.pepper().check_value());
        assert_eq!(
            format!("{a:?} {:?}", a.pepper()),
            "MasterSecret(..) Pepper(..)"
        );
    }

    #[test]
    fn the_onion_key_is_derived_as_before_the_pepper_existed() {
        // The derivation the onion identity has always been sealed with.
        let bytes = [42u8; 40];
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"ghostcache master key"), &bytes);
        let mut expected = [0u8; 32];
        hk.expand(b"onion identity", &mut expected).unwrap();
        assert_eq!(
            MasterSecret::from_bytes(&bytes).onion_key().expose(),
            &expected
        );
    }

    #[test]
    fn the_old_and_the_new_names_both_work() {
        let mut c = Config::default();
        assert_eq!(source(&c), None);
        c.tor.master_key_file = Some("/k".into());
        assert_eq!(source(&c), Some(MasterKeySource::File("/k".into())));
        c.tor.master_key_file = None;
        c.master_key_credential = Some("master-key".into());
        assert_eq!(
            source(&c),
            Some(MasterKeySource::Credential("master-key".into()))
        );
    }
}
