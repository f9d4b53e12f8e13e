//! Hybrid sealing to an RSA public key: a fresh Fernet key seals the payload and
//! RSA-OAEP-SHA256 wraps that key. Used to hand a member secrets while they are offline
//! (their delivery key pair: public half in clear, private half sealed under their
//! `data_key`).
//!
//! Format (ASCII, so it can sit in a record beside other Fernet tokens):
//!
//! ```text
//! gc-hybrid-1.<base64url(RSA-OAEP-SHA256(public, fernet key))>.<Fernet token>
//! ```
//!
//! The private-key operation in [`open_with`] only ever runs on a blob that this server
//! sealed itself and stored; no handler passes client-supplied bytes to it.

use zeroize::Zeroizing;

use super::rsa_keys::{RsaPrivate, RsaPublic};
use super::{CryptoError, SecretKey, b64url};
use crate::clock::UnixTime;

/// Prefix naming the format version.
const PREFIX: &str = "gc-hybrid-1.";

/// Seal `plaintext` so that only the holder of `public`'s private half can open it.
pub fn seal_to(public: &RsaPublic, plaintext: &[u8], now: UnixTime) -> Result<String, CryptoError> {
    let key = SecretKey::generate();
    let wrapped = public.encrypt(key.expose())?;
    let token = key.seal(plaintext, now)?;
    let wrapped = b64url(&wrapped);
    let mut out = String::with_capacity(PREFIX.len() + wrapped.len() + 1 + token.len());
    out.push_str(PREFIX);
    out.push_str(&wrapped);
    out.push('.');
    out.push_str(&token);
    Ok(out)
}

/// Open a blob made by [`seal_to`] with the matching private key.
pub fn open_with(private: &RsaPrivate, sealed: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    use base64::Engine;
    let rest = sealed.strip_prefix(PREFIX).ok_or(CryptoError::Unseal)?;
    let (wrapped, token) = rest.split_once('.').ok_or(CryptoError::Unseal)?;
    let wrapped = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(wrapped)
        .map_err(|_| CryptoError::Unseal)?;
    let key_bytes = private.decrypt(&wrapped)?;
    let key = SecretKey::from_slice(&key_bytes).map_err(|_| CryptoError::Unseal)?;
    key.open(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key_or_tampering_fail() {
        let k = RsaPrivate::generate(2048).unwrap();
        let other = RsaPrivate::generate(2048).unwrap();
        let sealed = seal_to(&k.public(), b"secret payload", 1_700_000_000).unwrap();
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.contains("secret payload"));
        assert_eq!(&**open_with(&k, &sealed).unwrap(), b"secret payload");
        assert!(open_with(&other, &sealed).is_err());
        // Tamper with the Fernet part.
        let mut t = sealed.clone().into_bytes();
        let last = t.len() - 5;
        t[last] = if t[last] == b'A' { b'B' } else { b'A' };
        assert!(open_with(&k, &String::from_utf8(t).unwrap()).is_err());
        assert!(open_with(&k, "garbage").is_err());
        assert!(open_with(&k, "gc-hybrid-1.!!.x").is_err());
        // Two seals of the same payload differ (fresh key, fresh IV, randomised OAEP).
        assert_ne!(
            sealed,
            seal_to(&k.public(), b"secret payload", 1_700_000_000).unwrap()
        );
    }
}
