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

/// A member (table `users_v2`).
///
/// What would let anyone test a password or open the member's data — salt, verifiers,
/// wrapped data key — is not here in clear: it is the sealed [`Credentials`], under the
/// member's erasure key in the key file (`store/erasure.rs`). The record of a departed
/// member who became a decoy has the same shape, with credentials that match no password.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// Normalised username (what everybody sees).
    pub username: String,
    /// Delivery public key, SubjectPublicKeyInfo DER, in clear.
    pub delivery_public: Vec<u8>,
    /// Delivery private key, PKCS#8 DER, Fernet-sealed under `data_key`.
    pub delivery_private_sealed: String,
    /// Day number (Unix time / 86400) of the last login; day-granular so that the file
    /// does not keep precise login times.
    pub last_login_day: i64,
    /// Day number of the last day on which a login attempt for this name was turned away
    /// by the login limiter without being checked (0: never). Inactivity counts from the
    /// later of this and `last_login_day`, so that nobody kept out by us is deleted.
    pub kept_out_day: i64,
    /// Slot of the member's erasure key in the key file.
    pub erasure_slot: u32,
    /// [`Credentials`], Fernet-sealed under the erasure key.
    pub credentials_sealed: String,
    /// The member departed and this is their decoy; their data is still being erased
    /// (done in the background after a destruction, resumed at start-up).
    pub erasing: bool,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord").finish_non_exhaustive()
    }
}

impl Record for UserRecord {
    const VERSION: u8 = 2;
    const NAME: &'static str = "user";
}

/// How a member's passwords are checked; stored with the credentials, so that other ways
/// can be added beside this one (accounts/credentials.rs holds the one function that
/// checks them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialScheme {
    /// `m = argon2id(password, salt)`; the verifier is `HKDF(m, "auth")`, and
    /// `HKDF(m, "kek")` wraps the data key. With `peppered`, the stored verifiers are
    /// `HMAC(pepper, verifier)` and the wrapped data key has an outer Fernet layer under a
    /// key derived from the pepper.
    Argon2Hkdf { peppered: bool },
    /// The same, over the *login secret* instead of the password:
    /// `m = argon2id(PBKDF2-SHA256(password, name's salt, iterations)[..32], salt)`. A
    /// browser with JavaScript derives the login secret itself and sends only that
    /// (`accounts/secret.rs`); without JavaScript the server derives it from the password.
    LoginSecret { peppered: bool, iterations: u32 },
}

impl CredentialScheme {
    /// Whether the stored verifiers and wrapped data key carry the pepper's layer.
    pub fn peppered(&self) -> bool {
        match *self {
            CredentialScheme::Argon2Hkdf { peppered }
            | CredentialScheme::LoginSecret { peppered, .. } => peppered,
        }
    }

    /// The same scheme with the pepper's layer.
    pub fn with_pepper(&self) -> Self {
        match *self {
            CredentialScheme::Argon2Hkdf { .. } => CredentialScheme::Argon2Hkdf { peppered: true },
            CredentialScheme::LoginSecret { iterations, .. } => CredentialScheme::LoginSecret {
                peppered: true,
                iterations,
            },
        }
    }
}

/// A member's credentials, stored sealed under their erasure key.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub scheme: CredentialScheme,
    /// argon2id salt, shared by the password and the destruction password.
    pub salt: [u8; 16],
    pub kdf: KdfParams,
    /// The password's verifier, in the stored form the scheme says.
    pub password_verifier: Verifier,
    /// The destruction password's verifier, in the same form.
    pub destruction_verifier: Verifier,
    /// The member's `data_key`, wrapped as the scheme says.
    pub wrapped_data_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl Record for Credentials {
    const VERSION: u8 = 1;
    const NAME: &'static str = "credentials";
}

impl Credentials {
    /// Seal under an erasure key.
    pub fn seal(&self, key: &crate::crypto::SecretKey) -> Result<String, StoreError> {
        // Encoded by hand into zeroizing buffers (`Record::encode` would leave copies).
        let body = zeroize::Zeroizing::new(
            postcard::to_stdvec(self).map_err(|e| StoreError::Encode(e.to_string()))?,
        );
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(body.len() + 1));
        plain.push(Self::VERSION);
        plain.extend_from_slice(&body);
        key.seal(&plain)
            .map_err(|e| StoreError::Encode(format!("credentials: {e}")))
    }

    /// Open with an erasure key.
    pub fn open(token: &str, key: &crate::crypto::SecretKey) -> Result<Self, StoreError> {
        let plain = key
            .open(token)
            .map_err(|_| StoreError::Corrupt("credentials do not open under their key".into()))?;
        Self::decode(&plain)
    }
}
