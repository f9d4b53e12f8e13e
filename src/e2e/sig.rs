//! Checking what browsers send: the shape of their public keys, and their signatures.
//!
//! Public keys only: the server holds no end-to-end private key, so nothing here decrypts
//! or signs.

use p256::pkcs8::DecodePublicKey as _;

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

/// The RFC 8017 `RSAPublicKey` of every 3072-bit key with exponent 65537, as AWS-LC
/// re-encodes it (canonical DER): `SEQUENCE { INTEGER n (0x00 and 384 bytes), INTEGER
/// 65537 }`. The leading zero is there exactly when n's top bit is set, so a match also
/// says that n has 3072 bits.
const RSA_3072_HEAD: [u8; 9] = [0x30, 0x82, 0x01, 0x8a, 0x02, 0x82, 0x01, 0x81, 0x00];
const RSA_F4_TAIL: [u8; 5] = [0x02, 0x03, 0x01, 0x00, 0x01];
const RSA_3072_LEN: usize = RSA_3072_HEAD.len() + RSA_BITS / 8 + RSA_F4_TAIL.len();

/// Whether `der` (SubjectPublicKeyInfo) is a valid RSA key of 3072 bits with e = 65537.
fn rsa_3072(der: &[u8]) -> bool {
    use aws_lc_rs::rsa::{PublicEncryptingKey, PublicKey};
    let Ok(key) = PublicKey::from_der(der) else {
        return false;
    };
    let pkcs1 = key.as_ref();
    PublicEncryptingKey::from_der(der).is_ok_and(|k| k.key_size_bits() == RSA_BITS)
        && pkcs1.len() == RSA_3072_LEN
        && pkcs1.starts_with(&RSA_3072_HEAD)
        && pkcs1.ends_with(&RSA_F4_TAIL)
}

/// Check both public keys of a generation.
pub fn check_public(keys: &PublicKeysRecord) -> Result<(), KeyError> {
    if !rsa_3072(&keys.enc_public) {
        return Err(KeyError::Receiving);
    }
    let signing_ok = match keys.scheme {
        SignScheme::RsaPss => rsa_3072(&keys.sign_public),
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

    #[test]
    fn rsa_3072_with_f4_is_accepted_and_its_encoding_checked() {
        let key = crate::crypto::rsa_keys::RsaPrivate::generate(3072).unwrap();
        let der = key.public().to_der().unwrap();
        assert!(rsa_3072(&der));
        let keys = PublicKeysRecord {
            scheme: SignScheme::RsaPss,
            enc_public: der.clone(),
            sign_public: der.clone(),
        };
        assert_eq!(check_public(&keys), Ok(()));
        assert!(!rsa_3072(&der[..der.len() - 1]));
        assert!(!rsa_3072(b"junk"));
    }
}
