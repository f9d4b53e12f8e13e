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
use crate::store::tables::{CONNECTION_SECRETS, CONVERSATION_TO_LAST_SEQ, USERS};
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

    /// Append an unambiguous encoding (scheme, length, DER) for digests.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (tag, der) = match self {
            VerifyingKey::RsaPss(der) => (SCHEME_RSA_PSS, der),
            VerifyingKey::Dsa(der) => (SCHEME_DSA, der),
        };
        out.push(tag);
        out.extend_from_slice(&(der.len() as u64).to_be_bytes());
        out.extend_from_slice(der);
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

/// First byte of a sealed payload in the second layout (no scheme byte is this value).
const PAYLOAD_V2: u8 = 0xA2;

/// What a connection side and a group member keep sealed: a Fernet key, their own signing
/// key, and what vouches for the other members' public keys.
///
/// Layouts (the plaintext of the seal, so all of it is authenticated under the member's
/// own key once sealed under their `data_key`):
///
/// ```text
/// 1 (earlier versions):  scheme (1) || key (32) || signing key DER
/// 2:  0xA2 || scheme (1) || key (32) || legacy_upto (u64 BE)
///          || trust length (u16 BE) || trust || signing key DER
/// ```
///
/// `trust` is a digest of both sides' public keys for a connection, and a list of
/// (member, key digest) for a group; `legacy_upto` the last message that may be in an
/// older record format (see `chat`). A layout-1 payload has neither: the reader vouches
/// for what the file says the first time it opens it with this code, and re-seals it.
pub(crate) struct KeyAndSigner {
    pub key: SecretKey,
    pub scheme: u8,
    pub signing_der: Zeroizing<Vec<u8>>,
    pub legacy_upto: u64,
    /// `None`: a layout-1 payload.
    pub trust: Option<Vec<u8>>,
}

impl KeyAndSigner {
    pub fn new(key: SecretKey, signing: &SigningKey, trust: Vec<u8>) -> Result<Self, CryptoError> {
        let (scheme, signing_der) = signing.to_tagged_der()?;
        Ok(Self {
            key,
            scheme,
            signing_der,
            legacy_upto: 0,
            trust: Some(trust),
        })
    }

    /// The signing key, parsed.
    pub fn signing_key(&self) -> Result<SigningKey, CryptoError> {
        SigningKey::from_tagged_der(self.scheme, &self.signing_der)
    }

    /// The layout-2 payload (what is sealed).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let trust = self.trust.as_deref().unwrap_or_default();
        let trust_len = u16::try_from(trust.len()).map_err(|_| CryptoError::BadKey)?;
        let mut out = Zeroizing::new(Vec::with_capacity(
            1 + 1 + 32 + 8 + 2 + trust.len() + self.signing_der.len(),
        ));
        out.push(PAYLOAD_V2);
        out.push(self.scheme);
        out.extend_from_slice(self.key.expose());
        out.extend_from_slice(&self.legacy_upto.to_be_bytes());
        out.extend_from_slice(&trust_len.to_be_bytes());
        out.extend_from_slice(trust);
        out.extend_from_slice(&self.signing_der);
        Ok(out)
    }

    /// Parse a payload of either layout.
    pub fn decode(payload: &[u8]) -> Result<Self, CryptoError> {
        let bad = || CryptoError::BadKey;
        let (&first, rest) = payload.split_first().ok_or_else(bad)?;
        let (scheme, rest, legacy_upto, trust) = if first == PAYLOAD_V2 {
            let (&scheme, rest) = rest.split_first().ok_or_else(bad)?;
            let key_and_more = rest;
            let fixed = key_and_more.get(32..32 + 10).ok_or_else(bad)?;
            let (upto, len) = fixed.split_at(8);
            let legacy_upto = u64::from_be_bytes(upto.try_into().map_err(|_| bad())?);
            let len = usize::from(u16::from_be_bytes(len.try_into().map_err(|_| bad())?));
            let trust = key_and_more.get(42..42 + len).ok_or_else(bad)?.to_vec();
            let key = key_and_more.get(..32).ok_or_else(bad)?;
            let der = key_and_more.get(42 + len..).ok_or_else(bad)?;
            let mut rest = Vec::with_capacity(32 + der.len());
            rest.extend_from_slice(key);
            rest.extend_from_slice(der);
            (scheme, Zeroizing::new(rest), legacy_upto, Some(trust))
        } else {
            (first, Zeroizing::new(rest.to_vec()), 0, None)
        };
        let key = rest.get(..32).ok_or_else(bad)?;
        let der = rest.get(32..).ok_or_else(bad)?;
        if !SigningKey::known_scheme(scheme) || der.is_empty() {
            return Err(bad());
        }
        let mut signing_der = Zeroizing::new(Vec::with_capacity(der.len()));
        signing_der.extend_from_slice(der);
        Ok(Self {
            key: SecretKey::from_slice(key)?,
            scheme,
            signing_der,
            legacy_upto,
            trust,
        })
    }
}

/// The digest of a connection's two public keys that each side keeps sealed: binds the
/// connection, both members and both keys. `None` before the connection is accepted.
pub fn keys_digest(connection: &Id, record: &super::ConnectionRecord) -> Option<[u8; 32]> {
    let requester = record.key_of(&record.requester)?;
    let receiver = record.key_of(&record.receiver)?;
    let mut bytes = Vec::with_capacity(1024);
    bytes.extend_from_slice(b"ghostcache-connection-keys-v1\0");
    bytes.extend_from_slice(connection);
    bytes.extend_from_slice(&record.requester);
    requester.encode_into(&mut bytes);
    bytes.extend_from_slice(&record.receiver);
    receiver.encode_into(&mut bytes);
    Some(crate::crypto::sha256(&bytes))
}

/// One side's secrets of a connection, opened for the length of one operation (or one
/// live stream). Zeroized on drop.
pub struct SideSecrets {
    pub chat_key: SecretKey,
    /// Whether the connection's public keys are those these secrets vouch for.
    pub keys_authentic: bool,
    /// Older message formats are accepted up to this sequence number.
    pub legacy_upto: u64,
    inner: KeyAndSigner,
}

impl std::fmt::Debug for SideSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SideSecrets(..)")
    }
}

impl SideSecrets {
    /// Secrets for a new connection side, vouching for the keys of `keys_digest`.
    pub fn new(
        chat_key: SecretKey,
        signing: &SigningKey,
        keys_digest: [u8; 32],
    ) -> Result<Self, CryptoError> {
        Ok(Self::from_inner(
            KeyAndSigner::new(chat_key, signing, keys_digest.to_vec())?,
            Some(&keys_digest),
        ))
    }

    fn from_inner(inner: KeyAndSigner, current: Option<&[u8; 32]>) -> Self {
        let keys_authentic = match (&inner.trust, current) {
            (Some(t), Some(c)) => crate::crypto::ct_eq(t, c),
            _ => false,
        };
        Self {
            chat_key: inner.key.clone(),
            keys_authentic,
            legacy_upto: inner.legacy_upto,
            inner,
        }
    }

    /// Parse the signing key (only when signing).
    pub fn signing_key(&self) -> Result<SigningKey, CryptoError> {
        self.inner.signing_key()
    }

    /// Seal under a member's `data_key`.
    pub fn seal_under(&self, data_key: &SecretKey) -> Result<Sealed, CryptoError> {
        data_key
            .seal(&self.inner.encode()?)
            .map(Sealed::UnderDataKey)
    }

    /// Seal to a member's delivery public key (they may be offline).
    pub fn seal_to(&self, delivery: &RsaPublic) -> Result<Sealed, CryptoError> {
        hybrid::seal_to(delivery, &self.inner.encode()?).map(Sealed::ToDelivery)
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

/// Open `member`'s secrets of `connection` (whose record is `record`) with their
/// session's `data_key`, and check the connection's public keys against the digest the
/// secrets vouch for (`keys_authentic`).
///
/// Secrets still sealed to the delivery key are opened with it and re-sealed under
/// `data_key`; secrets in the earlier layout, without a digest, are re-sealed with the
/// digest of the keys the file holds now and the conversation's last sequence number as
/// `legacy_upto` (trust on first use: from then on, keys rewritten in the file and old
/// messages copied to new places are refused). Either write replaces only the row it
/// opened, if unchanged. `None` when there are none (not a side, or not accepted).
pub fn open_side(
    store: &Store,
    connection: &Id,
    member: &Id,
    data_key: &SecretKey,
    connection_record: &super::ConnectionRecord,
) -> Result<Option<SideSecrets>, StoreError> {
    let Some(current) = keys_digest(connection, connection_record) else {
        return Ok(None);
    };
    let (record, user, last_seq) = {
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
        let last_seq = txn
            .open_table(CONVERSATION_TO_LAST_SEQ)?
            .get(connection)?
            .map_or(0, |g| g.value());
        (record, user, last_seq)
    };
    let payload = match &record.sealed {
        Sealed::UnderDataKey(token) => data_key.open(token).map_err(corrupt)?,
        Sealed::ToDelivery(blob) => {
            let Some(user) = user else {
                return Ok(None);
            };
            let delivery =
                hybrid::unseal_private(&user.delivery_private_sealed, data_key).map_err(corrupt)?;
            // The blob was sealed by this server at accept time: not client input.
            hybrid::open_with(&delivery, blob).map_err(corrupt)?
        }
    };
    let mut inner = KeyAndSigner::decode(&payload).map_err(corrupt)?;
    let upgrade = inner.trust.is_none();
    if upgrade {
        inner.trust = Some(current.to_vec());
        inner.legacy_upto = last_seq;
    }
    let secrets = SideSecrets::from_inner(inner, Some(&current));
    if upgrade || matches!(record.sealed, Sealed::ToDelivery(_)) {
        let resealed = SideSecretsRecord {
            sealed: secrets.seal_under(data_key).map_err(corrupt)?,
        };
        replace_if_unchanged(store, connection, member, &record.sealed, &resealed)?;
    }
    Ok(Some(secrets))
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
    use crate::connections::{ConnectionRecord, ConnectionState};

    fn accepted(requester_key: VerifyingKey, receiver_key: VerifyingKey) -> ConnectionRecord {
        ConnectionRecord {
            requester: [1; 16],
            receiver: [2; 16],
            requested_day: 1,
            state: ConnectionState::Accepted {
                requester_key,
                receiver_key,
                accepted_day: 1,
            },
        }
    }

    fn rsa() -> SigningKey {
        SigningKey::RsaPss(RsaPrivate::generate(2048).unwrap())
    }

    #[test]
    fn payload_layouts_round_trip_and_sign() {
        let k = rsa();
        let chat = SecretKey::generate();
        let record = accepted(k.verifying_key().unwrap(), rsa().verifying_key().unwrap());
        let digest = keys_digest(&[9; 16], &record).unwrap();
        let s = SideSecrets::new(chat.clone(), &k, digest).unwrap();
        assert!(s.keys_authentic);
        let data_key = SecretKey::generate();
        let Sealed::UnderDataKey(token) = s.seal_under(&data_key).unwrap() else {
            panic!("sealed under data key");
        };
        let back = KeyAndSigner::decode(&data_key.open(&token).unwrap()).unwrap();
        assert_eq!(back.key.expose(), chat.expose());
        assert_eq!(back.trust.as_deref(), Some(&digest[..]));
        assert_eq!(back.legacy_upto, 0);
        let signing = back.signing_key().unwrap();
        let vk = signing.verifying_key().unwrap();
        let sig = signing.sign(b"header and ciphertext").unwrap();
        assert!(vk.verify(b"header and ciphertext", &sig));
        assert!(!vk.verify(b"header and ciphertexT", &sig));
        assert!(
            !rsa()
                .verifying_key()
                .unwrap()
                .verify(b"header and ciphertext", &sig)
        );
        assert!(!VerifyingKey::RsaPss(vec![1, 2, 3]).verify(b"x", &sig));
        assert_eq!(vk.fingerprint().len(), 8 * 4 + 7);

        // The layout of earlier versions still decodes, without a digest.
        let (scheme, der) = k.to_tagged_der().unwrap();
        let mut old = vec![scheme];
        old.extend_from_slice(chat.expose());
        old.extend_from_slice(&der);
        let back = KeyAndSigner::decode(&old).unwrap();
        assert!(back.trust.is_none());
        assert_eq!(back.key.expose(), chat.expose());
        for bad in [&[1u8, 2, 3][..], &[PAYLOAD_V2, 1, 2][..], &[][..]] {
            assert!(KeyAndSigner::decode(bad).is_err());
        }
        assert_eq!(format!("{s:?}"), "SideSecrets(..)");
    }

    #[test]
    fn the_digest_binds_the_connection_both_members_and_both_keys() {
        let (a, b, c) = (
            rsa().verifying_key().unwrap(),
            rsa().verifying_key().unwrap(),
            rsa().verifying_key().unwrap(),
        );
        let base = keys_digest(&[9; 16], &accepted(a.clone(), b.clone())).unwrap();
        assert_ne!(
            base,
            keys_digest(&[8; 16], &accepted(a.clone(), b.clone())).unwrap()
        );
        assert_ne!(
            base,
            keys_digest(&[9; 16], &accepted(b.clone(), a.clone())).unwrap()
        );
        assert_ne!(
            base,
            keys_digest(&[9; 16], &accepted(a.clone(), c.clone())).unwrap()
        );
        assert_ne!(
            base,
            keys_digest(&[9; 16], &accepted(c, b.clone())).unwrap()
        );
        let mut other_member = accepted(a, b);
        other_member.requester = [3; 16];
        assert_ne!(base, keys_digest(&[9; 16], &other_member).unwrap());
    }

    /// A database writer swaps a public key on the connection: the reader's own sealed
    /// secrets no longer vouch for it. Secrets of the earlier layout are bound on first
    /// use and then hold against a later swap.
    #[test]
    fn a_public_key_swapped_in_the_file_is_not_authentic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let conn = [9u8; 16];
        let me = [2u8; 16];
        let data_key = SecretKey::generate();
        let (mine, theirs) = (rsa(), rsa());
        let record = accepted(
            theirs.verifying_key().unwrap(),
            mine.verifying_key().unwrap(),
        );
        let put = |sealed: Sealed| {
            let txn = store.write().unwrap();
            txn.open_table(CONNECTION_SECRETS)
                .unwrap()
                .insert(
                    (conn, me),
                    SideSecretsRecord { sealed }.encode().unwrap().as_slice(),
                )
                .unwrap();
            txn.open_table(CONVERSATION_TO_LAST_SEQ)
                .unwrap()
                .insert(conn, 7u64)
                .unwrap();
            txn.commit().unwrap();
        };
        let digest = keys_digest(&conn, &record).unwrap();
        let s = SideSecrets::new(SecretKey::generate(), &mine, digest).unwrap();
        put(s.seal_under(&data_key).unwrap());
        let open = |r: &ConnectionRecord| {
            open_side(&store, &conn, &me, &data_key, r)
                .unwrap()
                .unwrap()
        };
        assert!(open(&record).keys_authentic);
        let forger = rsa().verifying_key().unwrap();
        let swapped = accepted(forger.clone(), mine.verifying_key().unwrap());
        assert!(!open(&swapped).keys_authentic, "peer key swapped");
        let swapped_mine = accepted(theirs.verifying_key().unwrap(), forger);
        assert!(!open(&swapped_mine).keys_authentic, "own key swapped");

        // Earlier layout: bound to what the file says at the first open, with the last
        // sequence number as the end of the old formats; re-sealed in the new layout.
        let (scheme, der) = mine.to_tagged_der().unwrap();
        let mut old = vec![scheme];
        old.extend_from_slice(SecretKey::generate().expose());
        old.extend_from_slice(&der);
        put(Sealed::UnderDataKey(data_key.seal(&old).unwrap()));
        let first = open(&record);
        assert!(first.keys_authentic);
        assert_eq!(first.legacy_upto, 7);
        assert!(!open(&swapped).keys_authentic, "bound after the first open");
        assert!(open(&record).keys_authentic);
    }
}
