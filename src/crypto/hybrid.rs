//! Hybrid sealing to a member's delivery key, so that anyone can hand a member a secret
//! while that member is offline: a fresh Fernet key seals the payload and RSA-OAEP-SHA256
//! wraps that key for the recipient's delivery public key. Only the recipient, logged in
//! (their `data_key` unseals their delivery private key), can open it.
//!
//! Used for file names shared with a grantee; the same helpers serve any other "seal for a
//! member who is not here" need.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::rsa_keys::{RsaPrivate, RsaPublic};
use super::{CryptoError, SecretKey};

/// A payload sealed to one RSA public key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HybridSealed {
    /// The one-off Fernet key, RSA-OAEP-SHA256 encrypted to the recipient.
    pub wrapped_key: Vec<u8>,
    /// The payload, a Fernet token under that one-off key.
    pub token: String,
}

impl std::fmt::Debug for HybridSealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HybridSealed(..)")
    }
}

/// Seal `plaintext` so that only the holder of `public`'s private key can open it.
pub fn seal_to(public: &RsaPublic, plaintext: &[u8]) -> Result<HybridSealed, CryptoError> {
    let one_off = SecretKey::generate();
    let token = one_off.seal(plaintext)?;
    let wrapped_key = public.encrypt(one_off.expose())?;
    Ok(HybridSealed { wrapped_key, token })
}

/// Open what [`seal_to`] sealed to this private key's public half.
pub fn open_with(
    private: &RsaPrivate,
    sealed: &HybridSealed,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let key_bytes = private.decrypt(&sealed.wrapped_key)?;
    let one_off = SecretKey::from_slice(&key_bytes)?;
    one_off.open(&sealed.token)
}

/// A member's delivery private key, from its stored form (PKCS#8 DER sealed under the
/// member's `data_key`, `UserRecord::delivery_private_sealed`).
pub fn unseal_private(sealed_der: &str, data_key: &SecretKey) -> Result<RsaPrivate, CryptoError> {
    let der = data_key.open(sealed_der)?;
    RsaPrivate::from_der(&der)
}

/// A member's delivery public key, from its stored form (SubjectPublicKeyInfo DER,
/// `UserRecord::delivery_public`).
pub fn public_from_der(der: &[u8]) -> Result<RsaPublic, CryptoError> {
    RsaPublic::from_der(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_to_and_open_with_round_trip_only_for_the_recipient() {
        let alice = RsaPrivate::generate(2048).unwrap();
        let mallory = RsaPrivate::generate(2048).unwrap();
        let sealed = seal_to(&alice.public(), "report.pdf".as_bytes()).unwrap();
        assert_eq!(&**open_with(&alice, &sealed).unwrap(), b"report.pdf");
        assert!(open_with(&mallory, &sealed).is_err());

        let mut tampered = sealed.clone();
        let mid = tampered.token.len() / 2;
        let swap = if &tampered.token[mid..=mid] == "A" {
            "B"
        } else {
            "A"
        };
        tampered.token.replace_range(mid..=mid, swap);
        assert!(open_with(&alice, &tampered).is_err());
        assert_eq!(format!("{sealed:?}"), "HybridSealed(..)");
    }

    #[test]
    fn stored_forms_round_trip() {
        let key = RsaPrivate::generate(2048).unwrap();
        let data_key = SecretKey::generate();
        let sealed_der = data_key.seal(&key.to_der().unwrap()).unwrap();
        let back = unseal_private(&sealed_der, &data_key).unwrap();
        assert_eq!(back.public(), key.public());
        assert!(unseal_private(&sealed_der, &SecretKey::generate()).is_err());
        let public = public_from_der(&key.public().to_der().unwrap()).unwrap();
        assert_eq!(public, key.public());
    }
}
