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
//! Every send opens the member's sealed PKCS#8 key and signs once. The `dsa` crate's
//! `SigningKey::from_pkcs8_der` computes the public `y = g^x mod p` (the DER holds no
//! public key) and checks `y^q mod p == 1`: two 2048-bit modular exponentiations on top
//! of the one a signature needs (`g^k mod p`), which made DSA sends slower than RSA's
//! (issue 11). [`DsaPrivate`] therefore keeps only the parameters and `x`, parses with
//! cheap checks (the DER was opened from an AEAD seal, the installation's parameters are
//! checked in full when loaded), and signs itself with the `dsa` crate's very steps:
//! the same RFC 6979 HMAC-DRBG nonce, the same `r` and `s`, so its signatures are byte
//! for byte those of `dsa::SigningKey::try_sign` (the tests compare them, including
//! against a key and signature made by the earlier code). The stored DER format is
//! unchanged. `y` is computed only when the public key is asked for, that is when keys
//! are made.
//!
//! The `dsa` crate computes with `num-bigint-dig`, which is not constant-time; see the
//! README's security section for what that means here.

use dsa::signature::Verifier;
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

/// Draws of the RFC 6979 nonce loop before giving up. With a 256-bit `q` a draw is
/// rejected with probability below 1/2, so this many rejections in a row (below 2^-256)
/// do not happen with sound parameters; the bound only keeps a malformed key from
/// looping forever (the `dsa` crate's loop has none).
const MAX_NONCE_TRIES: usize = 256;

/// A DSA private key: the domain parameters and `x`.
///
/// Parsing does not compute the public `y = g^x mod p` (see the module documentation);
/// a key that was just generated keeps its public half so that handing it out costs
/// nothing.
pub struct DsaPrivate {
    /// Boxed, as is `public`: big numbers are large inline, and `SigningKey` holds
    /// either this or an RSA key.
    components: Box<Components>,
    x: Zeroizing<BigUint>,
    /// Known when the key was generated here; computed on demand otherwise.
    public: Option<Box<dsa::VerifyingKey>>,
}

impl std::fmt::Debug for DsaPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DsaPrivate(..)")
    }
}

impl DsaPrivate {
    /// A new key pair under `params`. Blocking (one modular exponentiation).
    pub fn generate(params: &DsaParams) -> Self {
        let full = dsa::SigningKey::generate(&mut OsRng, params.0.clone());
        Self {
            components: Box::new(params.0.clone()),
            x: Zeroizing::new(full.x().clone()),
            public: Some(Box::new(full.verifying_key().clone())),
        }
    }

    /// The public half. Blocking when it is not known yet (two modular
    /// exponentiations: `y`, and the `dsa` crate's check of `y`).
    fn verifying_key(&self) -> Result<dsa::VerifyingKey, CryptoError> {
        if let Some(public) = &self.public {
            return Ok((**public).clone());
        }
        let c = &self.components;
        let y = c.g().modpow(&self.x, c.p());
        dsa::VerifyingKey::from_components((**c).clone(), y).map_err(|_| CryptoError::BadKey)
    }

    /// PKCS#8 DER (with the domain parameters), in a zeroizing buffer. The layout is the
    /// `dsa` crate's, as it always was: the stored keys of earlier versions parse.
    pub fn to_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        use dsa::pkcs8::EncodePrivateKey;
        let full = dsa::SigningKey::from_components(self.verifying_key()?, (*self.x).clone())
            .map_err(|_| CryptoError::BadKey)?;
        let doc = full.to_pkcs8_der().map_err(|_| CryptoError::BadKey)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Parse PKCS#8 DER (`PrivateKeyInfo` with the DSA OID, `Dss-Parms` as the
    /// algorithm's parameters and `x` as an INTEGER).
    ///
    /// Only cheap checks: the sizes of `p` and `q`, `1 < g < p` and `0 < x < q`. No
    /// modular exponentiation and no primality test: the DER comes out of an AEAD seal
    /// under the member's key, and the installation's parameters are checked in full
    /// when they are loaded ([`DsaParams::from_der`]).
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        use dsa::pkcs8::PrivateKeyInfo;
        use dsa::pkcs8::der::Decode;
        use dsa::pkcs8::der::asn1::UintRef;
        fn bad<E>(_: E) -> CryptoError {
            CryptoError::BadKey
        }
        let info = PrivateKeyInfo::from_der(der).map_err(bad)?;
        info.algorithm.assert_algorithm_oid(dsa::OID).map_err(bad)?;
        let components = info
            .algorithm
            .parameters_any()
            .map_err(bad)?
            .decode_as::<Components>()
            .map_err(bad)?;
        let x = Zeroizing::new(BigUint::from_bytes_be(
            UintRef::from_der(info.private_key).map_err(bad)?.as_bytes(),
        ));
        let (p, q, g) = (components.p(), components.q(), components.g());
        let one = BigUint::from(1u8);
        let ok = p.bits() == L_BITS
            && q.bits() == N_BITS
            && g > &one
            && g < p
            && *x > BigUint::from(0u8)
            && &*x < q;
        if !ok {
            return Err(CryptoError::BadKey);
        }
        Ok(Self {
            components: Box::new(components),
            x,
            public: None,
        })
    }

    /// SubjectPublicKeyInfo DER of the public half.
    pub fn public_der(&self) -> Result<Vec<u8>, CryptoError> {
        use dsa::pkcs8::EncodePublicKey;
        self.verifying_key()?
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|_| CryptoError::BadKey)
    }

    /// DSA-SHA256 signature (RFC 6979 nonce), DER `Dss-Sig-Value`: byte for byte what
    /// the `dsa` crate's `try_sign` gives, with one modular exponentiation.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use dsa::pkcs8::der::Encode;
        use num_bigint_dig::ModInverse;
        use sha2::{Digest, Sha256};

        let (p, q, g) = (
            self.components.p(),
            self.components.q(),
            self.components.g(),
        );
        let hash = Sha256::digest(message);
        let q_bytes = q.bits() / 8;

        // The nonce, as `dsa::generate::secret_number_rfc6979` derives it: HMAC-DRBG
        // seeded with x's minimal big-endian bytes and the hash reduced modulo q (left
        // padded to q's length); draws of q's length until 0 < k < q has an inverse.
        let reduced = {
            let h = hash.get(..q_bytes.min(hash.len())).unwrap_or_default();
            let mut bytes = (BigUint::from_bytes_be(h) % q).to_bytes_be();
            while bytes.len() < q_bytes {
                bytes.insert(0, 0);
            }
            bytes
        };
        let mut drbg = {
            let x_bytes = Zeroizing::new(self.x.to_bytes_be());
            rfc6979::HmacDrbg::<Sha256>::new(&x_bytes, &reduced, &[])
        };
        let mut buffer = Zeroizing::new(vec![0u8; q_bytes]);
        let mut nonce = None;
        for _ in 0..MAX_NONCE_TRIES {
            drbg.fill_bytes(&mut buffer);
            let k = Zeroizing::new(BigUint::from_bytes_be(&buffer));
            if *k == BigUint::from(0u8) || &*k >= q {
                continue;
            }
            let Some(inv) = (&*k).mod_inverse(q).and_then(|i| i.to_biguint()) else {
                continue;
            };
            nonce = Some((k, Zeroizing::new(inv)));
            break;
        }
        let (k, k_inv) = nonce.ok_or(CryptoError::BadKey)?;

        // As `dsa::SigningKey::sign_prehashed`: z is the leftmost min(N, outlen) bits.
        // The secret numbers we name are zeroized; num-bigint-dig's own scratch space is
        // not (nor was it under the `dsa` crate).
        let r = g.modpow(&k, p) % q;
        let z = BigUint::from_bytes_be(hash.get(..q_bytes.min(hash.len())).unwrap_or_default());
        let xr = Zeroizing::new(&*self.x * &r);
        let sum = Zeroizing::new(z + &*xr);
        let s = (&*k_inv * &*sum) % q;
        let sig = dsa::Signature::from_components(r, s).map_err(|_| CryptoError::BadKey)?;
        sig.to_der().map_err(|_| CryptoError::BadKey)
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
    use dsa::pkcs8::der::asn1::{AnyRef, ObjectIdentifier, UintRef};
    use dsa::pkcs8::der::{Decode, Encode};
    use dsa::pkcs8::{AlgorithmIdentifierRef, DecodePrivateKey, PrivateKeyInfo};
    use dsa::signature::{SignatureEncoding, Signer};
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

    /// Messages of every kind: empty, short, with every byte value, long.
    fn messages() -> Vec<Vec<u8>> {
        vec![
            Vec::new(),
            b"m".to_vec(),
            b"header and ciphertext".to_vec(),
            (0..=255u8).collect(),
            (0..200_000u32)
                .map(|i| (i.wrapping_mul(31) >> 3) as u8)
                .collect(),
        ]
    }

    /// What the `dsa` crate signs for `der` (what `DsaPrivate` did before it signed itself).
    fn crate_signature(der: &[u8], message: &[u8]) -> Vec<u8> {
        dsa::SigningKey::from_pkcs8_der(der)
            .unwrap()
            .try_sign(message)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn signatures_are_the_dsa_crates_byte_for_byte() {
        for _ in 0..4 {
            let generated = DsaPrivate::generate(&PARAMS);
            let der = generated.to_der().unwrap();
            let parsed = DsaPrivate::from_der(&der).unwrap();
            let public = generated.public_der().unwrap();
            assert_eq!(parsed.public_der().unwrap(), public);
            assert_eq!(*parsed.to_der().unwrap(), *der);
            for m in messages() {
                let expected = crate_signature(&der, &m);
                assert_eq!(parsed.sign(&m).unwrap(), expected, "{} bytes", m.len());
                assert_eq!(generated.sign(&m).unwrap(), expected);
                assert!(verify(&public, &m, &expected));
            }
        }
    }

    /// PKCS#8 as the `dsa` crate writes it, from parts that may be wrong.
    fn pkcs8(oid: ObjectIdentifier, params: &Components, x: &BigUint) -> Vec<u8> {
        let params = params.to_der().unwrap();
        let algorithm = AlgorithmIdentifierRef {
            oid,
            parameters: Some(AnyRef::from_der(&params).unwrap()),
        };
        let x = x.to_bytes_be();
        let x = UintRef::new(&x).unwrap().to_der().unwrap();
        PrivateKeyInfo::new(algorithm, &x).to_der().unwrap()
    }

    #[test]
    fn malformed_keys_are_refused() {
        let k = DsaPrivate::generate(&PARAMS);
        let der = k.to_der().unwrap();
        let c = &PARAMS.0;
        let (p, q, g) = (c.p().clone(), c.q().clone(), c.g().clone());
        // The helper writes exactly the stored format.
        assert_eq!(pkcs8(dsa::OID, c, &k.x), *der);
        assert!(DsaPrivate::from_der(&pkcs8(dsa::OID, c, &k.x)).is_ok());

        for len in [0, 1, 10, der.len() / 2, der.len() - 1] {
            assert!(
                DsaPrivate::from_der(&der[..len]).is_err(),
                "truncated to {len}"
            );
        }
        let mut longer = der.to_vec();
        longer.push(0);
        assert!(DsaPrivate::from_der(&longer).is_err());

        let rsa = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
        assert!(DsaPrivate::from_der(&pkcs8(rsa, c, &k.x)).is_err());

        let one = BigUint::from(1u8);
        for (what, x) in [
            ("x = 0", BigUint::from(0u8)),
            ("x = q", q.clone()),
            ("x = q + 1", &q + &one),
        ] {
            assert!(
                DsaPrivate::from_der(&pkcs8(dsa::OID, c, &x)).is_err(),
                "{what}"
            );
        }
        assert!(DsaPrivate::from_der(&pkcs8(dsa::OID, c, &(&q - &one))).is_ok());

        let small_p = &p >> 1usize; // 2047 bits
        let small_q = &q >> 1usize; // 255 bits
        let big_q = &q << 1usize; // 257 bits
        let x = BigUint::from(5u8);
        for (what, params) in [
            ("p of 2047 bits", (small_p, q.clone(), BigUint::from(2u8))),
            ("q of 255 bits", (p.clone(), small_q, g.clone())),
            ("q of 257 bits", (p.clone(), big_q, g.clone())),
            ("g = 1", (p.clone(), q.clone(), one.clone())),
            ("g = p", (p.clone(), q.clone(), p.clone())),
            (
                "tiny",
                (BigUint::from(23u8), BigUint::from(11u8), BigUint::from(4u8)),
            ),
        ] {
            let (p, q, g) = params;
            let params = Components::from_components(p, q, g).unwrap();
            assert!(
                DsaPrivate::from_der(&pkcs8(dsa::OID, &params, &x)).is_err(),
                "{what}"
            );
        }
        // Nothing secret in what is printed.
        assert_eq!(
            format!("{:?}", DsaPrivate::from_der(&der).unwrap()),
            "DsaPrivate(..)"
        );
        assert_eq!(
            format!("{:?}", DsaPrivate::from_der(b"junk").unwrap_err()),
            "BadKey"
        );
    }

    /// A key written by the code before `DsaPrivate` signed itself (the `dsa` crate's
    /// `SigningKey`: `generate`, `to_pkcs8_der`), with its signatures (`try_sign`) of
    /// `KNOWN_MESSAGES`. Kept as bytes so that a change of crate or of our code cannot
    /// move both sides of the comparison at once.
    const KNOWN_KEY: &[u8] = include_bytes!("testdata/dsa-key-before-issue-11.der");
    const KNOWN_SIGNATURES: [&[u8]; 3] = [
        include_bytes!("testdata/dsa-sig-before-issue-11-0.der"),
        include_bytes!("testdata/dsa-sig-before-issue-11-1.der"),
        include_bytes!("testdata/dsa-sig-before-issue-11-2.der"),
    ];
    const KNOWN_MESSAGES: [&[u8]; 3] = [b"", b"header and ciphertext", &[0xA5; 5000]];

    #[test]
    fn a_key_stored_before_signs_as_before() {
        let k = DsaPrivate::from_der(KNOWN_KEY).unwrap();
        // Same format: it writes back the very bytes.
        assert_eq!(*k.to_der().unwrap(), *KNOWN_KEY);
        let public = k.public_der().unwrap();
        for (m, expected) in KNOWN_MESSAGES.iter().zip(KNOWN_SIGNATURES) {
            assert_eq!(k.sign(m).unwrap(), expected);
            assert_eq!(crate_signature(KNOWN_KEY, m), expected);
            assert!(verify(&public, m, expected));
        }
    }
}
