//! RSA key pairs: per-member delivery keys (hybrid RSA-OAEP-SHA256 + Fernet, so others can
//! hand a member keys while the member is offline) and per-connection signing keys
//! (RSA-PSS-SHA256).
//!
//! Generating a 3072-bit key takes hundreds of milliseconds, so it never runs on an async
//! worker: [`KeyPool`] keeps a few pairs ready, refilled by a blocking task.
//!
//! Private-key operations only ever run on data the server produced itself; no handler
//! decrypts or signs bytes that a client chose.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use rand::rngs::OsRng;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use super::CryptoError;

/// An RSA private key. The `rsa` crate zeroizes its limbs on drop.
pub struct RsaPrivate(rsa::RsaPrivateKey);

/// An RSA public key.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublic(rsa::RsaPublicKey);

impl std::fmt::Debug for RsaPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaPrivate(..)")
    }
}

impl std::fmt::Debug for RsaPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use rsa::traits::PublicKeyParts;
        write!(f, "RsaPublic({} bits)", self.0.size() * 8)
    }
}

impl RsaPrivate {
    /// Generate a new key pair. Blocking and slow.
    pub fn generate(bits: usize) -> Result<Self, CryptoError> {
        rsa::RsaPrivateKey::new(&mut OsRng, bits)
            .map(Self)
            .map_err(|_| CryptoError::Rsa)
    }

    /// PKCS#8 DER encoding, in a zeroizing buffer (to be sealed before storing).
    pub fn to_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let doc = self.0.to_pkcs8_der().map_err(|_| CryptoError::Rsa)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Parse PKCS#8 DER.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        rsa::RsaPrivateKey::from_pkcs8_der(der)
            .map(Self)
            .map_err(|_| CryptoError::BadKey)
    }

    /// The public half.
    pub fn public(&self) -> RsaPublic {
        RsaPublic(self.0.to_public_key())
    }

    /// RSA-OAEP-SHA256 decryption of a key wrapped by [`RsaPublic::encrypt`].
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.0
            .decrypt(rsa::Oaep::new::<sha2::Sha256>(), ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Unseal)
    }

    /// RSA-PSS-SHA256 signature.
    pub fn sign_pss(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        let key = rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(self.0.clone());
        let sig = key
            .try_sign_with_rng(&mut OsRng, message)
            .map_err(|_| CryptoError::Rsa)?;
        Ok(sig.to_vec())
    }
}

impl RsaPublic {
    /// SubjectPublicKeyInfo DER encoding (stored in clear).
    pub fn to_der(&self) -> Result<Vec<u8>, CryptoError> {
        self.0
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|_| CryptoError::Rsa)
    }

    /// Parse SubjectPublicKeyInfo DER.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        rsa::RsaPublicKey::from_public_key_der(der)
            .map(Self)
            .map_err(|_| CryptoError::BadKey)
    }

    /// RSA-OAEP-SHA256 encryption of a short secret (a key).
    pub fn encrypt(&self, secret: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.0
            .encrypt(&mut OsRng, rsa::Oaep::new::<sha2::Sha256>(), secret)
            .map_err(|_| CryptoError::Rsa)
    }

    /// Verify an RSA-PSS-SHA256 signature.
    pub fn verify_pss(&self, message: &[u8], signature: &[u8]) -> bool {
        use rsa::signature::Verifier;
        let Ok(sig) = rsa::pss::Signature::try_from(signature) else {
            return false;
        };
        rsa::pss::VerifyingKey::<sha2::Sha256>::new(self.0.clone())
            .verify(message, &sig)
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
    }
}
