//! DSA (FIPS 186-4, L = 2048, N = 256, SHA-256), the alternative signature scheme a member
//! may choose instead of RSA-PSS.
//!
//! # Domain parameters
//!
//! DSA keys share domain parameters `(p, q, g)`. Generating them takes seconds, so each
//! installation generates its own set **once**, on a blocking thread, the first time a
//! member chooses DSA, and keeps it in the `meta` table (`dsa_params_v1`, DER
//! `Dss-Parms`, public). Every load checks the set again (sizes, primality of `p` and
//! `q`, `q | p - 1`, `g` of order `q`), so a file edited by someone else cannot slip in
//! weak parameters unnoticed. A per-installation set avoids trusting a constant chosen by
//! us (DSA parameters can hide trapdoors) and costs one short wait once.
//!
//! # Signing
//!
//! Signatures use RFC 6979 deterministic nonces (no dependence on the RNG at signing
//! time, where a biased or repeated nonce would reveal the key). Key generation is a
//! random `x` and one modular exponentiation: fast, but still never run on an async
//! worker (callers go through `Store::run` or `spawn_blocking`).
//!
//! The `dsa` crate computes with `num-bigint-dig`, which is not constant-time; see the
//! README's security section for what that means here.

use dsa::signature::{SignatureEncoding, Signer, Verifier};
use dsa::{BigUint, Components, KeySize};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use super::CryptoError;

/// Bits of `p` and `q`.
const L_BITS: usize = 2048;
const N_BITS: usize = 256;
/// Miller–Rabin rounds when checking stored parameters.
const CHECK_ROUNDS: usize = 32;

/// The installation's DSA domain parameters, checked.
#[derive(Clone, PartialEq)]
pub struct DsaParams(Components);

impl std::fmt::Debug for DsaParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DsaParams(2048/256)")
    }
}

impl DsaParams {
    /// Generate a fresh set. Blocking and slow (seconds).
    pub fn generate() -> Self {
        Self(Components::generate(&mut OsRng, KeySize::DSA_2048_256))
    }

    /// DER encoding (`Dss-Parms ::= SEQUENCE { p, q, g }`).
    pub fn to_der(&self) -> Result<Vec<u8>, CryptoError> {
        use dsa::pkcs8::der::Encode;
        self.0.to_der().map_err(|_| CryptoError::BadKey)
    }

    /// Parse and check a stored set.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        use dsa::pkcs8::der::Decode;
        let c = Components::from_der(der).map_err(|_| CryptoError::BadKey)?;
        let params = Self(c);
        params.check()?;
        Ok(params)
    }

    /// The checks of FIPS 186-4 A.1/A.2 that do not need the generation seed.
    fn check(&self) -> Result<(), CryptoError> {
        let (p, q, g) = (self.0.p(), self.0.q(), self.0.g());
        let one = BigUint::from(1u8);
        let ok = p.bits() == L_BITS
            && q.bits() == N_BITS
            && (p - &one) % q == BigUint::from(0u8)
            && g > &one
            && g < p
            && g.modpow(q, p) == one
            && num_prime(q)
            && num_prime(p);
        if ok { Ok(()) } else { Err(CryptoError::BadKey) }
    }
}

fn num_prime(n: &BigUint) -> bool {
    // `dsa` re-exports num-bigint-dig's BigUint; its primality test is reached through
    // the same crate.
    num_bigint_dig::prime::probably_prime(n, CHECK_ROUNDS)
}

/// A DSA private key.
pub struct DsaPrivate(dsa::SigningKey);

impl std::fmt::Debug for DsaPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DsaPrivate(..)")
    }
}

impl DsaPrivate {
    /// A new key pair under `params`. Blocking (one modular exponentiation).
    pub fn generate(params: &DsaParams) -> Self {
        Self(dsa::SigningKey::generate(&mut OsRng, params.0.clone()))
    }

    /// PKCS#8 DER (with the domain parameters), in a zeroizing buffer.
    pub fn to_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        use dsa::pkcs8::EncodePrivateKey;
        let doc = self.0.to_pkcs8_der().map_err(|_| CryptoError::BadKey)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Parse PKCS#8 DER.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        use dsa::pkcs8::DecodePrivateKey;
        dsa::SigningKey::from_pkcs8_der(der)
            .map(Self)
            .map_err(|_| CryptoError::BadKey)
    }

    /// SubjectPublicKeyInfo DER of the public half.
    pub fn public_der(&self) -> Result<Vec<u8>, CryptoError> {
        use dsa::pkcs8::EncodePublicKey;
        self.0
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|_| CryptoError::BadKey)
    }

    /// DSA-SHA256 signature (RFC 6979 nonce), DER `Dss-Sig-Value`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let sig: dsa::Signature = self.0.try_sign(message).map_err(|_| CryptoError::BadKey)?;
        Ok(sig.to_vec())
    }
}

/// Verify a DSA-SHA256 signature with a SubjectPublicKeyInfo DER public key. Anything
/// malformed is `false`. The key's domain parameters must have the expected sizes.
pub fn verify(public_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use dsa::pkcs8::DecodePublicKey;
    let Ok(key) = dsa::VerifyingKey::from_public_key_der(public_der) else {
        return false;
    };
    let c = key.components();
    if c.p().bits() != L_BITS || c.q().bits() != N_BITS {
        return false;
    }
    let Ok(sig) = dsa::Signature::try_from(signature) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    /// One generation for all tests of this module (it takes seconds).
    pub static PARAMS: LazyLock<DsaParams> = LazyLock::new(DsaParams::generate);

    #[test]
    fn params_round_trip_and_are_checked() {
        let der = PARAMS.to_der().unwrap();
        assert_eq!(DsaParams::from_der(&der).unwrap(), *PARAMS);
        // Parameters of the wrong size (a tiny but consistent set) are refused.
        let small = DsaParams(
            Components::from_components(
                BigUint::from(23u8),
                BigUint::from(11u8),
                BigUint::from(4u8),
            )
            .unwrap(),
        );
        assert!(DsaParams::from_der(&small.to_der().unwrap()).is_err());
        assert!(DsaParams::from_der(b"junk").is_err());
    }

    #[test]
    fn sign_verify_and_reject() {
        let k = DsaPrivate::generate(&PARAMS);
        let public = k.public_der().unwrap();
        let sig = k.sign(b"header and ciphertext").unwrap();
        assert!(verify(&public, b"header and ciphertext", &sig));
        assert!(!verify(&public, b"header and ciphertexT", &sig));
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!verify(&public, b"header and ciphertext", &bad));
        let other = DsaPrivate::generate(&PARAMS);
        assert!(!verify(
            &other.public_der().unwrap(),
            b"header and ciphertext",
            &sig
        ));
        let back = DsaPrivate::from_der(&k.to_der().unwrap()).unwrap();
        assert_eq!(back.public_der().unwrap(), public);
        assert!(!verify(b"junk", b"x", &sig));
        assert_eq!(format!("{k:?}"), "DsaPrivate(..)");
    }
}
