//! Per-connection keys.
//!
//! On accept, each side gets a fresh RSA key pair (from the key pool; never used by any
//! other connection) and both get the same fresh Fernet chat key. Public keys are stored
//! in clear on the connection. Each side's *secrets* (its private key and the chat key)
//! are stored sealed:
//!
//! - the accepting side's under its session's `data_key` (Fernet);
//! - the requesting side's, who may be offline, to its delivery public key (hybrid
//!   RSA-OAEP-SHA256 + Fernet, see `crypto::hybrid`). The first time the requester uses
//!   the connection (any page that needs its keys), the server opens that blob with their
//!   delivery private key — itself unsealed with their session's `data_key` — and re-seals
//!   it under their `data_key`, so later use needs no RSA operation.
//!
//! Sealed payload: `scheme (1 byte) || chat key (32 bytes) || private key (PKCS#8 DER)`.
//!
//! Each side signs with the scheme its member had chosen (settings) when the connection
//! was accepted: RSA-PSS-SHA256 (default) or DSA 2048/256 with SHA-256. Readers verify
//! either; the scheme is part of the stored public key and of each signature.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::dsa_keys::{self, DsaPrivate};
use crate::crypto::rsa_keys::{RsaPrivate, RsaPublic};
use crate::crypto::{CryptoError, SecretKey, hybrid};
use crate::store::tables::{CONNECTION_SECRETS, USERS};
use crate::store::{Id, Record, Store, StoreError, UserRecord};

/// Scheme byte of an RSA-PSS-SHA256 signing key in a sealed payload.
const SCHEME_RSA_PSS: u8 = 1;
/// Scheme byte of a DSA (2048/256, SHA-256) signing key in a sealed payload.
const SCHEME_DSA: u8 = 2;

/// The signature scheme a member signs with (chosen in settings; RSA-PSS by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SignatureScheme {
    #[default]
    RsaPss,
    Dsa,
}

impl SignatureScheme {
    /// Name of the scheme, for pages.
    pub fn name(self) -> &'static str {
        match self {
            SignatureScheme::RsaPss => "RSA-PSS-SHA256",
            SignatureScheme::Dsa => "DSA-2048/256-SHA256",
        }
    }

    /// The value of the settings form.
    pub fn form_value(self) -> &'static str {
        match self {
            SignatureScheme::RsaPss => "rsa-pss",
            SignatureScheme::Dsa => "dsa",
        }
    }

    /// Parse the settings form's value.
    pub fn from_form(value: &str) -> Option<Self> {
        match value {
            "rsa-pss" => Some(SignatureScheme::RsaPss),
            "dsa" => Some(SignatureScheme::Dsa),
            _ => None,
        }
    }
}

/// A public key that verifies a side's signatures, stored in clear on the connection.
/// An enum so that other schemes (DSA) can join without changing existing records.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifyingKey {
    /// RSA-PSS-SHA256; SubjectPublicKeyInfo DER.
    RsaPss(Vec<u8>),
    /// DSA 2048/256 with SHA-256; SubjectPublicKeyInfo DER (with the domain parameters).
    Dsa(Vec<u8>),
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyingKey::RsaPss(_) => f.write_str("VerifyingKey::RsaPss(..)"),
            VerifyingKey::Dsa(_) => f.write_str("VerifyingKey::Dsa(..)"),
        }
    }
}

/// A signature over a message's header and ciphertext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signature {
    /// RSA-PSS-SHA256.
    RsaPss(Vec<u8>),
    /// DSA-SHA256, DER `Dss-Sig-Value`.
    Dsa(Vec<u8>),
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signature(..)")
    }
}

impl VerifyingKey {
    /// Whether `signature` is this key's signature of `message`. Any mismatch of scheme,
    /// malformed key or wrong signature is simply `false`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        match (self, signature) {
            (VerifyingKey::RsaPss(der), Signature::RsaPss(sig)) => {
                RsaPublic::from_der(der).is_ok_and(|k| k.verify_pss(message, sig))
            }
            (VerifyingKey::Dsa(der), Signature::Dsa(sig)) => dsa_keys::verify(der, message, sig),
            _ => false,
        }
    }

    /// A short fingerprint for people to compare: SHA-256 of the key, first 16 bytes, hex
    /// in groups of four.
    pub fn fingerprint(&self) -> String {
        let digest = match self {
            VerifyingKey::RsaPss(der) | VerifyingKey::Dsa(der) => crate::crypto::sha256(der),
        };
        let hex: Vec<String> = digest
            .chunks(2)
            .take(8)
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        hex.join(" ")
    }

    /// Name of the scheme, for pages.
    pub fn scheme_name(&self) -> &'static str {
        self.scheme().name()
    }

    /// The scheme of this key.
    pub fn scheme(&self) -> SignatureScheme {
        match self {
            VerifyingKey::RsaPss(_) => SignatureScheme::RsaPss,
            VerifyingKey::Dsa(_) => SignatureScheme::Dsa,
        }
    }
}

/// A side's signing key, opened.
pub enum SigningKey {
    RsaPss(RsaPrivate),
    Dsa(DsaPrivate),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// Sign `message`, which the server itself produced (header and ciphertext).
    pub fn sign(&self, message: &[u8]) -> Result<Signature, CryptoError> {
        match self {
            SigningKey::RsaPss(k) => k.sign_pss(message).map(Signature::RsaPss),
            SigningKey::Dsa(k) => k.sign(message).map(Signature::Dsa),
        }
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, CryptoError> {
        match self {
            SigningKey::RsaPss(k) => k.public().to_der().map(VerifyingKey::RsaPss),
            SigningKey::Dsa(k) => k.public_der().map(VerifyingKey::Dsa),
        }
    }

    /// The scheme byte and PKCS#8 DER of this key (to be sealed).
    pub fn to_tagged_der(&self) -> Result<(u8, Zeroizing<Vec<u8>>), CryptoError> {
        match self {
            SigningKey::RsaPss(k) => Ok((SCHEME_RSA_PSS, k.to_der()?)),
            SigningKey::Dsa(k) => Ok((SCHEME_DSA, k.to_der()?)),
        }
    }

    /// Parse what [`SigningKey::to_tagged_der`] produced.
    pub fn from_tagged_der(scheme: u8, der: &[u8]) -> Result<Self, CryptoError> {
        match scheme {
            SCHEME_RSA_PSS => RsaPrivate::from_der(der).map(SigningKey::RsaPss),
            SCHEME_DSA => DsaPrivate::from_der(der).map(SigningKey::Dsa),
            _ => Err(CryptoError::BadKey),
        }
    }

    /// Whether `scheme` is a known scheme byte.
    pub fn known_scheme(scheme: u8) -> bool {
        matches!(scheme, SCHEME_RSA_PSS | SCHEME_DSA)
    }
}

/// A Fernet key and a tagged signing key, as a connection side and a group member hold
/// them, in the form they are sealed in: `scheme (1) || key (32) || signing key DER`.
pub(crate) fn encode_key_and_signer(
    key: &SecretKey,
    scheme: u8,
    signing_der: &[u8],
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(1 + 32 + signing_der.len()));
    out.push(scheme);
    out.extend_from_slice(key.expose());
    out.extend_from_slice(signing_der);
    out
}

/// Split what [`encode_key_and_signer`] made, checking the scheme byte.
pub(crate) fn decode_key_and_signer(
    payload: &[u8],
) -> Result<(SecretKey, u8, Zeroizing<Vec<u8>>), CryptoError> {
    let (&scheme, rest) = payload.split_first().ok_or(CryptoError::BadKey)?;
    let key = rest.get(..32).ok_or(CryptoError::BadKey)?;
    let der = rest.get(32..).ok_or(CryptoError::BadKey)?;
    if !SigningKey::known_scheme(scheme) || der.is_empty() {
        return Err(CryptoError::BadKey);
    }
    let mut signing_der = Zeroizing::new(Vec::with_capacity(der.len()));
    signing_der.extend_from_slice(der);
    Ok((SecretKey::from_slice(key)?, scheme, signing_der))
}

/// One side's secrets of a connection, opened for the length of one operation (or one
/// live stream). Zeroized on drop.
pub struct SideSecrets {
    pub chat_key: SecretKey,
    scheme: u8,
    signing_der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SideSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SideSecrets(..)")
    }
}

impl SideSecrets {
    /// Secrets for a new connection side.
    pub fn new(chat_key: SecretKey, signing: &SigningKey) -> Result<Self, CryptoError> {
        let (scheme, signing_der) = signing.to_tagged_der()?;
        Ok(Self {
            chat_key,
            scheme,
            signing_der,
        })
    }

    /// Parse the signing key (only when signing).
    pub fn signing_key(&self) -> Result<SigningKey, CryptoError> {
        SigningKey::from_tagged_der(self.scheme, &self.signing_der)
    }

    fn to_payload(&self) -> Zeroizing<Vec<u8>> {
        encode_key_and_signer(&self.chat_key, self.scheme, &self.signing_der)
    }

    fn from_payload(payload: &[u8]) -> Result<Self, CryptoError> {
        let (chat_key, scheme, signing_der) = decode_key_and_signer(payload)?;
        Ok(Self {
            chat_key,
            scheme,
            signing_der,
        })
    }

    /// Seal under a member's `data_key`.
    pub fn seal_under(&self, data_key: &SecretKey) -> Result<Sealed, CryptoError> {
        data_key.seal(&self.to_payload()).map(Sealed::UnderDataKey)
    }

    /// Seal to a member's delivery public key (they may be offline).
    pub fn seal_to(&self, delivery: &RsaPublic) -> Result<Sealed, CryptoError> {
        hybrid::seal_to(delivery, &self.to_payload()).map(Sealed::ToDelivery)
    }
}

/// How a side's secrets are sealed at rest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sealed {
    /// Fernet under the member's `data_key`.
    UnderDataKey(String),
    /// Hybrid-sealed to the member's delivery public key, until their next use.
    ToDelivery(hybrid::HybridSealed),
}

/// The stored value of `CONNECTION_SECRETS`.
#[derive(Clone, Serialize, Deserialize)]
pub struct SideSecretsRecord {
    pub sealed: Sealed,
}

impl std::fmt::Debug for SideSecretsRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SideSecretsRecord(..)")
    }
}

impl Record for SideSecretsRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "connection secrets";
}

fn corrupt(e: CryptoError) -> StoreError {
    StoreError::Corrupt(format!("connection secrets: {e}"))
}

/// Open `member`'s secrets of `connection` with their session's `data_key`. Secrets still
/// sealed to their delivery key are opened with it and re-sealed under `data_key` (in a
/// write transaction that only replaces the blob it opened). `None` when there are none
/// (not a side, or not accepted).
pub fn open_side(
    store: &Store,
    connection: &Id,
    member: &Id,
    data_key: &SecretKey,
) -> Result<Option<SideSecrets>, StoreError> {
    let (record, user) = {
        let txn = store.read()?;
        let table = txn.open_table(CONNECTION_SECRETS)?;
        let Some(bytes) = table.get((*connection, *member))? else {
            return Ok(None);
        };
        let record = SideSecretsRecord::decode(bytes.value())?;
        let user = match record.sealed {
            Sealed::UnderDataKey(_) => None,
            Sealed::ToDelivery(_) => txn
                .open_table(USERS)?
                .get(member)?
                .map(|b| UserRecord::decode(b.value()))
                .transpose()?,
        };
        (record, user)
    };
    match &record.sealed {
        Sealed::UnderDataKey(token) => {
            let payload = data_key.open(token).map_err(corrupt)?;
            SideSecrets::from_payload(&payload)
                .map(Some)
                .map_err(corrupt)
        }
        Sealed::ToDelivery(blob) => {
            let Some(user) = user else {
                return Ok(None);
            };
            let delivery_der = data_key
                .open(&user.delivery_private_sealed)
                .map_err(corrupt)?;
            let delivery = RsaPrivate::from_der(&delivery_der).map_err(corrupt)?;
            // The blob was sealed by this server at accept time: not client input.
            let payload = hybrid::open_with(&delivery, blob).map_err(corrupt)?;
            let secrets = SideSecrets::from_payload(&payload).map_err(corrupt)?;
            let resealed = SideSecretsRecord {
                sealed: secrets.seal_under(data_key).map_err(corrupt)?,
            };
            replace_if_unchanged(store, connection, member, &record.sealed, &resealed)?;
            Ok(Some(secrets))
        }
    }
}

/// Store re-sealed secrets unless the row changed (or went) since it was read.
fn replace_if_unchanged(
    store: &Store,
    connection: &Id,
    member: &Id,
    seen: &Sealed,
    new: &SideSecretsRecord,
) -> Result<(), StoreError> {
    let txn = store.write()?;
    {
        let mut table = txn.open_table(CONNECTION_SECRETS)?;
        let current = table
            .get((*connection, *member))?
            .map(|b| SideSecretsRecord::decode(b.value()))
            .transpose()?;
        if current.is_some_and(|c| &c.sealed == seen) {
            table.insert((*connection, *member), new.encode()?.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_sign_and_verify() {
        let k = SigningKey::RsaPss(RsaPrivate::generate(2048).unwrap());
        let chat = SecretKey::generate();
        let s = SideSecrets::new(chat.clone(), &k).unwrap();
        let data_key = SecretKey::generate();
        let Sealed::UnderDataKey(token) = s.seal_under(&data_key).unwrap() else {
            panic!("sealed under data key");
        };
        let back = SideSecrets::from_payload(&data_key.open(&token).unwrap()).unwrap();
        assert_eq!(back.chat_key.expose(), chat.expose());
        let signing = back.signing_key().unwrap();
        let vk = signing.verifying_key().unwrap();
        let sig = signing.sign(b"header and ciphertext").unwrap();
        assert!(vk.verify(b"header and ciphertext", &sig));
        assert!(!vk.verify(b"header and ciphertexT", &sig));
        let other = SigningKey::RsaPss(RsaPrivate::generate(2048).unwrap());
        assert!(
            !other
                .verifying_key()
                .unwrap()
                .verify(b"header and ciphertext", &sig)
        );
        assert!(!VerifyingKey::RsaPss(vec![1, 2, 3]).verify(b"x", &sig));
        assert_eq!(vk.fingerprint().len(), 8 * 4 + 7);
        assert!(SideSecrets::from_payload(&[1, 2, 3]).is_err());
        assert_eq!(format!("{back:?}"), "SideSecrets(..)");
    }
}
