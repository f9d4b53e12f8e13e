//! Cryptography: password KDF, symmetric sealing (Fernet), RSA delivery keys, DSA signing
//! keys, random ids and CSRF tokens. Every key lives in a zeroizing type from the moment it
//! exists, and no type here prints its contents in `Debug`.

pub mod dsa_keys;
pub mod fernet_buf;
pub mod hybrid;
pub mod kdf;
pub mod master;
pub mod rsa_keys;
pub mod seal;

pub use kdf::{KdfParams, MasterKey, Verifier};
pub use seal::SecretKey;

use rand::RngCore;
use rand::rngs::OsRng;

/// Why a cryptographic operation failed. Deliberately coarse: callers never learn more
/// than "this did not verify".
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext did not verify under this key")]
    Unseal,
    #[error("malformed key material")]
    BadKey,
    #[error("password hashing failed: {0}")]
    Kdf(String),
    #[error("RSA operation failed")]
    Rsa,
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// URL-safe base64 without padding (ids, tokens in cookies and forms).
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode URL-safe base64 without padding into exactly `N` bytes.
pub fn b64url_decode_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    use base64::Engine;
    // Reject before allocating when the length cannot be right.
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    bytes.try_into().ok()
}

/// HMAC-SHA256.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Constant-time equality of two byte strings of the same length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64_round_trip_and_length_check() {
        let raw = random_bytes::<32>();
        let text = b64url(&raw);
        assert_eq!(b64url_decode_exact::<32>(&text), Some(raw));
        assert_eq!(b64url_decode_exact::<16>(&text), None);
        assert_eq!(b64url_decode_exact::<32>("!!"), None);
    }

    /// RUSTSEC-2023-0071 (the Marvin attack): the `rsa` crate's private-key operations
    /// leak timing and have no fix. Every private RSA operation of ours goes through
    /// aws-lc-rs (constant-time, blinded: see `rsa_keys`); this keeps the `rsa` crate
    /// from coming back as a dependency of ours. (arti still uses it for Tor relays'
    /// public identity keys, which involves no private key.)
    #[test]
    fn rsa_private_keys_are_not_handled_by_the_rsa_crate() {
        let manifest = include_str!("../../Cargo.toml");
        let deps = manifest
            .split("\n[dependencies]\n")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .unwrap();
        assert!(deps.contains("aws-lc-rs"));
        assert!(
            !deps
                .lines()
                .any(|l| l.trim_start().starts_with("rsa ") || l.trim_start().starts_with("rsa=")),
            "the rsa crate is back among our dependencies"
        );
    }

    #[test]
    fn hmac_separates_parts() {
        let k = [7u8; 32];
        assert_ne!(
            hmac_sha256(&k, &[b"ab", b"c"]),
            hmac_sha256(&k, &[b"a", b"bc"])
        );
    }
}
