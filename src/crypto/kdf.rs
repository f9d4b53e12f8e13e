//! Password-derived keys.
//!
//! `m = argon2id(password, salt)` (64 bytes); `auth = HKDF(m, "auth")` is stored as a
//! verifier; `kek = HKDF(m, "kek")` unwraps the member's `data_key` and is never stored.
//! The destruction password goes through the same salt and parameters, so one argon2id
//! computation per login attempt serves both verifiers.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{CryptoError, SecretKey, ct_eq};

/// argon2id cost parameters, stored beside each member's salt so that changing the
/// configured policy does not lock anybody out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// A trivially cheap cost (64 KiB, one pass) for tests and `danger_fast_kdf`; nothing
    /// in the configuration file, environment or command line reaches it.
    pub const DANGER_FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
}

/// The 64-byte argon2id output. Zeroized on drop, never printed.
pub struct MasterKey(Zeroizing<[u8; 64]>);

/// A stored password verifier, `HKDF(m, "auth")`.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifier(pub [u8; 32]);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

const INFO_AUTH: &[u8] = b"ghostcache v1 auth";
const INFO_KEK: &[u8] = b"ghostcache v1 kek";

impl MasterKey {
    /// Run argon2id. Blocking and deliberately expensive: call it from a blocking thread.
    pub fn derive(
        password: &[u8],
        salt: &[u8; 16],
        params: KdfParams,
    ) -> Result<Self, CryptoError> {
        let p = argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(64),
        )
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut out = Zeroizing::new([0u8; 64]);
        argon
            .hash_password_into(password, salt, out.as_mut())
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        Ok(Self(out))
    }

    fn expand(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, self.0.as_ref());
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        if hk.expand(info, out.as_mut()).is_err() {
            out.as_mut().fill(0);
        }
        out
    }

    /// The verifier stored for this password.
    pub fn verifier(&self) -> Verifier {
        Verifier(*self.expand(INFO_AUTH))
    }

    /// The key-encryption key that wraps the member's `data_key`.
    pub fn kek(&self) -> SecretKey {
        SecretKey::from_bytes(&self.expand(INFO_KEK))
    }
}

impl Verifier {
    /// Constant-time comparison.
    pub fn matches(&self, other: &Verifier) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams::DANGER_FAST;

    #[test]
    fn same_password_same_salt_same_keys() {
        let salt = [1u8; 16];
        let a = MasterKey::derive(b"correct horse", &salt, FAST).unwrap();
        let b = MasterKey::derive(b"correct horse", &salt, FAST).unwrap();
        assert!(a.verifier().matches(&b.verifier()));
        let c = MasterKey::derive(b"correct horsf", &salt, FAST).unwrap();
        assert!(!a.verifier().matches(&c.verifier()));
        assert_ne!(
            a.verifier().0,
            *a.expand(INFO_KEK),
            "verifier and kek are independent"
        );
    }

    #[test]
    fn debug_never_prints_bytes() {
        let m = MasterKey::derive(b"pw", &[0u8; 16], FAST).unwrap();
        assert_eq!(format!("{m:?}"), "MasterKey(..)");
        assert_eq!(format!("{:?}", m.verifier()), "Verifier(..)");
    }
}
