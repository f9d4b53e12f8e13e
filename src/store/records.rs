//! The values stored in redb: compact postcard encoding behind a one-byte record version.
//! A record written by a newer binary is refused rather than misread.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::crypto::{KdfParams, Verifier};

/// A type stored as a versioned record.
pub trait Record: Serialize + DeserializeOwned {
    /// Bumped whenever the layout changes (with a migration in `schema.rs`).
    const VERSION: u8;
    /// For error messages.
    const NAME: &'static str;

    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = vec![Self::VERSION];
        let body = postcard::to_stdvec(self).map_err(|e| StoreError::Encode(e.to_string()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match bytes.split_first() {
            Some((&v, body)) if v == Self::VERSION => postcard::from_bytes(body)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", Self::NAME))),
            Some((&v, _)) => Err(StoreError::Corrupt(format!(
                "{} record version {v} (this binary reads {})",
                Self::NAME,
                Self::VERSION
            ))),
            None => Err(StoreError::Corrupt(format!("empty {} record", Self::NAME))),
        }
    }
}

/// A member.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// Normalised username (what everybody sees).
    pub username: String,
    /// argon2id salt, shared by the password and the destruction password.
    pub salt: [u8; 16],
    pub kdf: KdfParams,
    /// `HKDF(argon2id(password), "auth")`.
    pub password_verifier: Verifier,
    /// `HKDF(argon2id(destruction password), "auth")`.
    pub destruction_verifier: Verifier,
    /// The member's `data_key`, Fernet-sealed under `HKDF(argon2id(password), "kek")`.
    pub wrapped_data_key: String,
    /// Delivery public key, SubjectPublicKeyInfo DER, in clear.
    pub delivery_public: Vec<u8>,
    /// Delivery private key, PKCS#8 DER, Fernet-sealed under `data_key`.
    pub delivery_private_sealed: String,
    /// Day number (Unix time / 86400) of the last login; day-granular so that the file
    /// does not keep precise login times.
    pub last_login_day: i64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord").finish_non_exhaustive()
    }
}

impl Record for UserRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "user";
}
