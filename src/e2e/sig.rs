//! Checking what browsers send: the shape of their public keys, and their signatures.
//!
//! Public keys only: the server holds no end-to-end private key, so nothing here decrypts
//! or signs.

use p256::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts;

use super::{PublicKeysRecord, SignScheme};

/// Modulus size of every end-to-end RSA key.
pub const RSA_BITS: usize = 3072;

/// Why a public key was refused (shown to the member's browser).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("The receiving key must be an RSA-OAEP key of 3072 bits with exponent 65537.")]
    Receiving,
    #[error("The signing key does not match the signature scheme.")]
    Signing,
    #[error("The keys were not signed with the new signing key.")]
    Proof,
}

fn rsa_3072(der: &[u8]) -> Option<rsa::RsaPublicKey> {
    let key = rsa::RsaPublicKey::from_public_key_der(der).ok()?;
    (key.n().bits() == RSA_BITS && key.e() == &rsa::BigUint::from(65_537u32)).then_some(key)
}

/// Check both public keys of a generation.
pub fn check_public(keys: &PublicKeysRecord) -> Result<(), KeyError> {
    rsa_3072(&keys.enc_public).ok_or(KeyError::Receiving)?;
    let signing_ok = match keys.scheme {
        SignScheme::RsaPss => rsa_3072(&keys.sign_public).is_some(),
        SignScheme::EcdsaP256 => {
            p256::ecdsa::VerifyingKey::from_public_key_der(&keys.sign_public).is_ok()
        }
    };
    if signing_ok {
        Ok(())
    } else {
        Err(KeyError::Signing)
    }
}

/// Verify a browser's signature: RSA-PSS-SHA256 with a 32-byte salt, or ECDSA P-256
/// SHA-256 in WebCrypto's fixed-size `r ‖ s` form.
pub fn verify(scheme: SignScheme, public_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    match scheme {
        SignScheme::RsaPss => crate::crypto::rsa_keys::RsaPublic::from_der(public_der)
            .is_ok_and(|k| k.verify_pss(message, signature)),
        SignScheme::EcdsaP256 => {
            use p256::ecdsa::signature::Verifier;
            let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(public_der) else {
                return false;
            };
            let Ok(sig) = p256::ecdsa::Signature::from_slice(signature) else {
                return false;
            };
            key.verify(message, &sig).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    #[test]
    fn ecdsa_signatures_in_webcrypto_form_verify() {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let der = p256::PublicKey::from(*sk.verifying_key())
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        let sig: p256::ecdsa::Signature = sk.sign(b"hello");
        let raw = sig.to_bytes();
        assert_eq!(raw.len(), 64);
        assert!(verify(SignScheme::EcdsaP256, &der, b"hello", &raw));
        assert!(!verify(SignScheme::EcdsaP256, &der, b"hellp", &raw));
        assert!(!verify(SignScheme::RsaPss, &der, b"hello", &raw));
        assert!(!verify(SignScheme::EcdsaP256, b"junk", b"hello", &raw));
    }

    #[test]
    fn receiving_keys_must_be_rsa_3072() {
        let small = crate::crypto::rsa_keys::RsaPrivate::generate(2048).unwrap();
        let keys = PublicKeysRecord {
            scheme: SignScheme::RsaPss,
            enc_public: small.public().to_der().unwrap(),
            sign_public: small.public().to_der().unwrap(),
        };
        assert_eq!(check_public(&keys), Err(KeyError::Receiving));
    }
}
