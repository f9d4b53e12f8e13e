//! RSA key pairs: per-member delivery keys (hybrid RSA-OAEP-SHA256 + Fernet, so others can
//! hand a member keys while the member is offline) and per-connection signing keys
//! (RSA-PSS-SHA256).
//!
//! Every RSA operation goes through aws-lc-rs (AWS-LC, BoringSSL's descendant): key
//! generation, PSS signing, OAEP encryption and decryption, and verification. Its private
//! key operations are constant-time and *blinded* (AWS-LC blinds every RSA private
//! operation unless a key is flagged otherwise, which aws-lc-rs never does), so OAEP
//! decryption does not leak the key through timing the way the pure-Rust `rsa` crate's
//! does (RUSTSEC-2023-0071, the Marvin attack); the `rsa` crate is no longer ours.
//!
//! Stored forms are unchanged: private keys are PKCS#8 DER (as the `rsa` crate wrote
//! them, and as AWS-LC writes them), public keys SubjectPublicKeyInfo DER, signatures
//! RSA-PSS-SHA256 with a 32-byte salt. Keys stored by earlier versions open as they are.
//! AWS-LC frees key material with `OPENSSL_free`, which wipes it first.
//!
//! Generating a 3072-bit key takes a few hundred milliseconds, so it never runs on an
//! async worker: [`KeyPool`] keeps a few pairs ready, refilled by a blocking task.
//!
//! Private-key operations only ever run on data the server produced itself; no handler
//! decrypts or signs bytes that a client chose.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{KeyPair as _, RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256};
use parking_lot::Mutex;
use zeroize::Zeroizing;

use super::CryptoError;

/// An RSA private key (AWS-LC's, wiped when freed), with its PKCS#8 encoding kept for
/// sealing and for OAEP decryption.
pub struct RsaPrivate {
    pair: KeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
}

/// An RSA public key: its SubjectPublicKeyInfo DER.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublic(Vec<u8>);

impl std::fmt::Debug for RsaPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaPrivate(..)")
    }
}

impl std::fmt::Debug for RsaPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = PublicEncryptingKey::from_der(&self.0).map_or(0, |k| k.key_size_bits());
        write!(f, "RsaPublic({bits} bits)")
    }
}

fn key_size(bits: usize) -> Result<KeySize, CryptoError> {
    match bits {
        2048 => Ok(KeySize::Rsa2048),
        3072 => Ok(KeySize::Rsa3072),
        4096 => Ok(KeySize::Rsa4096),
        _ => Err(CryptoError::Rsa),
    }
}

impl RsaPrivate {
    /// Generate a new key pair (2048, 3072 or 4096 bits). Blocking and slow.
    pub fn generate(bits: usize) -> Result<Self, CryptoError> {
        let pair = KeyPair::generate(key_size(bits)?).map_err(|_| CryptoError::Rsa)?;
        let der = pair.as_der().map_err(|_| CryptoError::Rsa)?;
        let pkcs8 = Zeroizing::new(der.as_ref().to_vec());
        Ok(Self { pair, pkcs8 })
    }

    /// PKCS#8 DER encoding, in a zeroizing buffer (to be sealed before storing).
    pub fn to_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        Ok(self.pkcs8.clone())
    }

    /// Parse PKCS#8 DER (also what earlier versions stored, written by the `rsa` crate).
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let pair = KeyPair::from_pkcs8(der).map_err(|_| CryptoError::BadKey)?;
        Ok(Self {
            pair,
            pkcs8: Zeroizing::new(der.to_vec()),
        })
    }

    /// The public half.
    pub fn public(&self) -> RsaPublic {
        // SubjectPublicKeyInfo of the pair's public key.
        match self.pair.public_key().as_der() {
            Ok(der) => RsaPublic(der.as_ref().to_vec()),
            Err(_) => RsaPublic(Vec::new()),
        }
    }

    /// RSA-OAEP-SHA256 decryption of a key wrapped by [`RsaPublic::encrypt`]: constant
    /// time and blinded (AWS-LC).
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = PrivateDecryptingKey::from_pkcs8(&self.pkcs8)
            .and_then(|k| OaepPrivateDecryptingKey::new(k).map_err(Into::into))
            .map_err(|_| CryptoError::BadKey)?;
        let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
        let len = key
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
            .map_err(|_| CryptoError::Unseal)?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// RSA-PSS-SHA256 signature (salt as long as the digest).
    pub fn sign_pss(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&RSA_PSS_SHA256, &rng, message, &mut sig)
            .map_err(|_| CryptoError::Rsa)?;
        Ok(sig)
    }
}

impl RsaPublic {
    /// SubjectPublicKeyInfo DER encoding (stored in clear).
    pub fn to_der(&self) -> Result<Vec<u8>, CryptoError> {
        Ok(self.0.clone())
    }

    /// Parse SubjectPublicKeyInfo DER.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        PublicEncryptingKey::from_der(der).map_err(|_| CryptoError::BadKey)?;
        Ok(Self(der.to_vec()))
    }

    /// RSA-OAEP-SHA256 encryption of a short secret (a key).
    pub fn encrypt(&self, secret: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = PublicEncryptingKey::from_der(&self.0)
            .and_then(|k| OaepPublicEncryptingKey::new(k).map_err(Into::into))
            .map_err(|_| CryptoError::Rsa)?;
        let mut out = vec![0u8; key.ciphertext_size()];
        let len = key
            .encrypt(&OAEP_SHA256_MGF1SHA256, secret, &mut out, None)
            .map_err(|_| CryptoError::Rsa)?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// Verify an RSA-PSS-SHA256 signature (2048 to 8192 bits, 32-byte salt).
    pub fn verify_pss(&self, message: &[u8], signature: &[u8]) -> bool {
        aws_lc_rs::signature::UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

/// Pre-generated RSA key pairs, so that registering and accepting a connection do not wait
/// for key generation. Refilled in the background by one blocking task at a time; emptied
/// (and so zeroized) on shutdown.
pub struct KeyPool {
    bits: usize,
    target: usize,
    keys: Mutex<Vec<RsaPrivate>>,
    refilling: AtomicBool,
    closed: AtomicBool,
    /// Generations on demand (the pool was empty) running at once: no more than the
    /// machine has cores, so that a burst of accepts queues instead of filling the
    /// blocking pool with seconds-long jobs.
    on_demand: tokio::sync::Semaphore,
}

impl KeyPool {
    pub fn new(bits: usize, target: usize) -> Arc<Self> {
        Arc::new(Self {
            bits,
            target,
            keys: Mutex::new(Vec::with_capacity(target)),
            refilling: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            on_demand: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
        })
    }

    /// Number of ready key pairs.
    pub fn ready(&self) -> usize {
        self.keys.lock().len()
    }

    /// Take a key pair: a ready one if any, otherwise generate one on a blocking thread.
    /// Either way the pool starts refilling.
    pub async fn take(self: &Arc<Self>) -> Result<RsaPrivate, CryptoError> {
        let ready = self.keys.lock().pop();
        self.refill();
        match ready {
            Some(k) => Ok(k),
            None => {
                let _permit = self
                    .on_demand
                    .acquire()
                    .await
                    .map_err(|_| CryptoError::Rsa)?;
                // The refill may have produced one while this waited.
                if let Some(k) = self.keys.lock().pop() {
                    return Ok(k);
                }
                let bits = self.bits;
                tokio::task::spawn_blocking(move || RsaPrivate::generate(bits))
                    .await
                    .map_err(|_| CryptoError::Rsa)?
            }
        }
    }

    /// Start a background refill unless one is running or the pool is full.
    pub fn refill(self: &Arc<Self>) {
        if self.closed.load(Ordering::Acquire) || self.ready() >= self.target {
            return;
        }
        if self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            while !pool.closed.load(Ordering::Acquire) && pool.ready() < pool.target {
                let Ok(k) = RsaPrivate::generate(pool.bits) else {
                    break;
                };
                // Checked under the lock `close` clears with, so that a key made while
                // the pool closed is dropped (zeroized) here, not kept after `close`.
                let mut keys = pool.keys.lock();
                if pool.closed.load(Ordering::Acquire) {
                    break;
                }
                keys.push(k);
            }
            pool.refilling.store(false, Ordering::Release);
        });
    }

    /// Drop every ready key (zeroizing it) and stop refilling.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.keys.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_round_trip_oaep_and_pss() {
        let k = RsaPrivate::generate(2048).unwrap();
        let der = k.to_der().unwrap();
        let k2 = RsaPrivate::from_der(&der).unwrap();
        let pub_der = k.public().to_der().unwrap();
        let p = RsaPublic::from_der(&pub_der).unwrap();
        assert_eq!(p, k2.public());

        let ct = p.encrypt(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            &**k2.decrypt(&ct).unwrap(),
            b"0123456789abcdef0123456789abcdef"
        );

        let sig = k.sign_pss(b"message").unwrap();
        assert!(p.verify_pss(b"message", &sig));
        assert!(!p.verify_pss(b"messagf", &sig));
        assert!(!p.verify_pss(b"message", &sig[1..]));
        assert_eq!(format!("{k:?}"), "RsaPrivate(..)");
        assert_eq!(format!("{p:?}"), "RsaPublic(2048 bits)");
        assert!(RsaPrivate::generate(1024).is_err());
        assert!(RsaPublic::from_der(b"junk").is_err());
    }

    /// OAEP decryption (RUSTSEC-2023-0071): through AWS-LC's constant-time, blinded RSA;
    /// every malformed or foreign ciphertext fails the same way, with nothing decrypted.
    #[test]
    fn oaep_decryption_is_blinded_and_fails_uniformly() {
        let k = RsaPrivate::generate(2048).unwrap();
        let other = RsaPrivate::generate(2048).unwrap();
        let ct = k.public().encrypt(&[7u8; 32]).unwrap();
        assert_eq!(ct.len(), 256);
        // Randomized: the same secret never encrypts the same way twice.
        assert_ne!(ct, k.public().encrypt(&[7u8; 32]).unwrap());
        // Decrypting the same ciphertext many times gives the same secret (blinding
        // changes the computation, never the result).
        for _ in 0..8 {
            assert_eq!(&**k.decrypt(&ct).unwrap(), &[7u8; 32]);
        }
        let mut flipped = ct.clone();
        flipped[100] ^= 1;
        let too_big = vec![0xffu8; 256];
        for bad in [&flipped[..], &ct[1..], &too_big[..], &[][..]] {
            assert!(matches!(k.decrypt(bad), Err(CryptoError::Unseal)));
        }
        assert!(matches!(other.decrypt(&ct), Err(CryptoError::Unseal)));
    }
}
