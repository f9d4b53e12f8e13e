//! The end-to-end tier: conversations, groups and keys made and used only in members'
//! browsers (WebCrypto), for members whose browser runs JavaScript. The server stores and
//! relays ciphertext, wrapped keys and signatures; it never holds a key that opens them.
//!
//! ```text
//! password ──PBKDF2-SHA256(salt = HMAC(installation secret, name), N)──> 64 bytes
//!     ├─ login secret (32)      → the server's argon2id input (accounts/secret.rs); the
//!     │                           login and settings forms send it instead of the password
//!     └─ wrapping secret (32)   → AES-256-GCM key, in the tab only (sessionStorage)
//!            └─ wraps the key ring: per generation an RSA-OAEP-3072 private key
//!               (receives keys) and a signing private key (RSA-PSS-3072 or ECDSA P-256)
//! epoch key (AES-256-GCM, made by one participant's browser per conversation epoch)
//!     ├─ wrapped with RSA-OAEP-SHA256 to every participant's current receiving key
//!     ├─ the maker signs (conversation, epoch, recipients, SHA-256 of each wrapped key)
//!     └─ encrypts messages; the header is the associated data; the sender signs
//!        header ‖ IV ‖ ciphertext
//! ```
//!
//! The server checks what it can without keys — shapes, sizes, the participant set, the
//! signatures (so that a ciphertext replayed into another conversation, or under another
//! sender, is refused before it is stored) — and the reader's browser checks everything
//! again before it shows a word.
//!
//! Functions in [`store`] block (redb) and are called through `Store::run`.

pub mod api;
pub mod pages;
pub mod sig;
pub mod store;
pub mod ws;

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::store::{Id, Record};

/// Longest wrapped key ring the browser may store (base64url text).
pub const MAX_BLOB_CHARS: usize = 64 * 1024;
/// An RSA-OAEP-3072 ciphertext (a wrapped epoch key).
pub const WRAPPED_KEY_BYTES: usize = 384;
/// Longest encrypted group name (AES-GCM ciphertext of at most 64 characters).
pub const MAX_NAME_CT: usize = 1024;
/// Longest message ciphertext: 4096 bytes of text plus the GCM tag, with room to spare.
pub const MAX_MESSAGE_CT: usize = 8 * 1024;
/// How far the time a browser puts in a header may differ from the server's clock.
pub const MAX_CLOCK_SKEW_SECS: i64 = 120;
/// Messages returned by one history request.
pub const HISTORY_PAGE: usize = 50;

/// Domain separation of the signed byte strings (also in `assets/js/e2e-core.js`).
const TAG_MESSAGE: &[u8] = b"ghostcache-e2e-msg-v1\0";
const TAG_EPOCH: &[u8] = b"ghostcache-e2e-epoch-v1\0";
const TAG_KEYS: &[u8] = b"ghostcache-e2e-keys-v1\0";

/// The signature scheme of a member's end-to-end signing key: RSA-PSS-SHA256 (salt 32),
/// or ECDSA P-256 with SHA-256 where the member chose DSA (WebCrypto has no DSA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignScheme {
    RsaPss,
    EcdsaP256,
}

impl SignScheme {
    /// The name the browser and the JSON use.
    pub fn name(self) -> &'static str {
        match self {
            SignScheme::RsaPss => "rsa-pss",
            SignScheme::EcdsaP256 => "ecdsa-p256",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "rsa-pss" => Some(SignScheme::RsaPss),
            "ecdsa-p256" => Some(SignScheme::EcdsaP256),
            _ => None,
        }
    }

    /// The end-to-end scheme that follows a member's signature setting.
    pub fn following(setting: crate::connections::keys::SignatureScheme) -> Self {
        match setting {
            crate::connections::keys::SignatureScheme::RsaPss => SignScheme::RsaPss,
            crate::connections::keys::SignatureScheme::Dsa => SignScheme::EcdsaP256,
        }
    }
}

/// A member's public end-to-end keys of one generation (in clear: others wrap to and
/// verify with them).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicKeysRecord {
    pub scheme: SignScheme,
    /// RSA-OAEP-3072 SubjectPublicKeyInfo DER.
    pub enc_public: Vec<u8>,
    /// Signing key SubjectPublicKeyInfo DER.
    pub sign_public: Vec<u8>,
}

impl Record for PublicKeysRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "e2e public keys";
}

crate::connections::debug_without_names!(PublicKeysRecord);

/// A member's end-to-end keys: the current generation's public keys, and the key ring as
/// the browser wrapped it, sealed again under the member's `data_key`.
#[derive(Clone, Serialize, Deserialize)]
pub struct MemberKeysRecord {
    pub generation: u32,
    pub public: PublicKeysRecord,
    /// Fernet token under the member's `data_key` of the browser's wrapped key ring.
    pub ring_sealed: String,
}

impl Record for MemberKeysRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "e2e member keys";
}

crate::connections::debug_without_names!(MemberKeysRecord);

/// What an end-to-end conversation is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ConversationKind {
    /// The end-to-end conversation of an accepted connection.
    Direct { connection: Id },
    /// A group; the creator invites and removes.
    Group { creator: Id },
}

/// Where a conversation stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ConversationState {
    /// One-to-one: proposed by `by`, waiting for the other side.
    Proposed {
        by: Id,
    },
    Active,
}

/// An end-to-end conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationRecord {
    pub kind: ConversationKind,
    pub state: ConversationState,
    /// The current key epoch (0: none yet).
    pub epoch: u32,
    /// The participants or their keys changed since the current epoch was made: nothing
    /// can be sent until a participant's browser makes the next one.
    pub rekey: bool,
    /// Last sequence number used (numbers are never reused).
    pub last_seq: u64,
    /// Day (Unix time / 86400) it was created.
    pub created_day: i64,
}

impl Record for ConversationRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "e2e conversation";
}

impl ConversationRecord {
    pub fn is_group(&self) -> bool {
        matches!(self.kind, ConversationKind::Group { .. })
    }
}

/// A member's place in a conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParticipantRecord {
    pub active: bool,
    /// The first epoch whose key they receive.
    pub from_epoch: u32,
    /// Messages up to this sequence number were sent before they joined.
    pub from_seq: u64,
    /// The last per-sender sequence number their browser used here.
    pub last_client_seq: u64,
}

impl Record for ParticipantRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "e2e participant";
}

/// One recipient of an epoch key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recipient {
    pub member: Id,
    /// The generation of the recipient's keys it was wrapped to.
    pub generation: u32,
    /// SHA-256 of the wrapped key (the wrapped key itself is in `E2E_EPOCH_KEYS`).
    pub wrapped_hash: [u8; 32],
}

/// A key epoch, as its maker's browser signed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub maker: Id,
    pub maker_generation: u32,
    /// Sorted by member id.
    pub recipients: Vec<Recipient>,
    /// The group's name under the epoch key (empty one-to-one): IV ‖ AES-GCM ciphertext.
    pub name: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Record for EpochRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "e2e epoch";
}

impl EpochRecord {
    /// The bytes the maker signs.
    pub fn signed_bytes(&self, conversation: &Id, epoch: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.recipients.len() * 52 + 32);
        out.extend_from_slice(TAG_EPOCH);
        out.extend_from_slice(conversation);
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&self.maker);
        out.extend_from_slice(&self.maker_generation.to_be_bytes());
        out.extend_from_slice(&crate::crypto::sha256(&self.name));
        let n = u32::try_from(self.recipients.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for r in &self.recipients {
            out.extend_from_slice(&r.member);
            out.extend_from_slice(&r.generation.to_be_bytes());
            out.extend_from_slice(&r.wrapped_hash);
        }
        out
    }
}

/// An end-to-end message as stored: the header (which is the AES-GCM associated data),
/// the IV, the ciphertext and the sender's signature over all three.
#[derive(Clone, Serialize, Deserialize)]
pub struct E2eMessageRecord {
    pub header: MessageHeader,
    pub iv: [u8; 12],
    pub ciphertext: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Record for E2eMessageRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "e2e message";
}

impl std::fmt::Debug for E2eMessageRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("E2eMessageRecord(..)")
    }
}

/// The header of an end-to-end message: chosen by the sender's browser, checked by the
/// server against what it knows, bound into the ciphertext as associated data and into
/// the signature.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageHeader {
    pub sender: Id,
    pub sender_generation: u32,
    pub epoch: u32,
    /// Per sender and conversation, strictly increasing (the server refuses anything else).
    pub client_seq: u64,
    /// The sender's time, within [`MAX_CLOCK_SKEW_SECS`] of the server's.
    pub sent_at: UnixTime,
    pub expires_at: Option<UnixTime>,
}

impl MessageHeader {
    /// The associated data: fixed length, so unambiguous.
    pub fn associated_data(&self, conversation: &Id) -> Vec<u8> {
        let mut out = Vec::with_capacity(TAG_MESSAGE.len() + 16 + 16 + 4 + 4 + 8 + 8 + 9);
        out.extend_from_slice(TAG_MESSAGE);
        out.extend_from_slice(conversation);
        out.extend_from_slice(&self.sender);
        out.extend_from_slice(&self.sender_generation.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.client_seq.to_be_bytes());
        out.extend_from_slice(&self.sent_at.to_be_bytes());
        out.push(u8::from(self.expires_at.is_some()));
        out.extend_from_slice(&self.expires_at.unwrap_or(0).to_be_bytes());
        out
    }
}

impl E2eMessageRecord {
    /// The bytes the sender signs: associated data ‖ IV ‖ ciphertext.
    pub fn signed_bytes(&self, conversation: &Id) -> Vec<u8> {
        let mut out = self.header.associated_data(conversation);
        out.extend_from_slice(&self.iv);
        out.extend_from_slice(&self.ciphertext);
        out
    }
}

/// The statement a browser signs with a new signing key when it registers its keys (proof
/// that it holds the private half).
pub fn keys_statement(member: &Id, generation: u32, public: &PublicKeysRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(TAG_KEYS.len() + 16 + 4 + 64 + 1);
    out.extend_from_slice(TAG_KEYS);
    out.extend_from_slice(member);
    out.extend_from_slice(&generation.to_be_bytes());
    out.push(match public.scheme {
        SignScheme::RsaPss => 1,
        SignScheme::EcdsaP256 => 2,
    });
    out.extend_from_slice(&crate::crypto::sha256(&public.enc_public));
    out.extend_from_slice(&crate::crypto::sha256(&public.sign_public));
    out
}

/// An invitation to an end-to-end group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct E2eInviteRecord {
    pub inviter: Id,
    pub day: i64,
}

impl Record for E2eInviteRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "e2e invitation";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associated_data_binds_every_header_field() {
        let h = MessageHeader {
            sender: [2; 16],
            sender_generation: 1,
            epoch: 3,
            client_seq: 4,
            sent_at: 5,
            expires_at: Some(35),
        };
        let base = h.associated_data(&[1; 16]);
        assert_ne!(base, h.associated_data(&[9; 16]));
        for other in [
            MessageHeader {
                sender: [9; 16],
                ..h
            },
            MessageHeader {
                sender_generation: 2,
                ..h
            },
            MessageHeader { epoch: 4, ..h },
            MessageHeader { client_seq: 5, ..h },
            MessageHeader { sent_at: 6, ..h },
            MessageHeader {
                expires_at: None,
                ..h
            },
            MessageHeader {
                expires_at: Some(36),
                ..h
            },
        ] {
            assert_ne!(base, other.associated_data(&[1; 16]));
            assert_eq!(base.len(), other.associated_data(&[1; 16]).len());
        }
    }
}
