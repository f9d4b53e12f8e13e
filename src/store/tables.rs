//! Every redb table, in one place. Table names carry a version suffix: a change of layout
//! is a new table plus a migration step in `schema.rs`, never a silent reinterpretation.
//!
//! Ids are 16 random bytes. Values named `…Record` are versioned postcard (see `records.rs`).
//! Nothing readable at rest: message texts, file contents, file names and private keys
//! only ever appear sealed.

use redb::TableDefinition;

/// A 16-byte random identifier.
pub type Id = [u8; 16];

/// Schema metadata. Key: a name (`"schema_version"`). Value: raw bytes (u32 little-endian
/// for the schema version).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_v1");

/// Members. Key: user id. Value: `UserRecord`.
pub const USERS: TableDefinition<Id, &[u8]> = TableDefinition::new("users_v1");

/// Username index. Key: normalised username (NFKC + case fold). Value: user id.
pub const USERNAME_TO_USER: TableDefinition<&str, Id> = TableDefinition::new("username_to_user_v1");

/// Confusable-skeleton index (UTS #39), so that two names that look alike cannot both
/// exist. Key: skeleton of the normalised username. Value: user id.
pub const SKELETON_TO_USER: TableDefinition<&str, Id> = TableDefinition::new("skeleton_to_user_v1");

/// Hosted files. Key: file id (16 random bytes, base64url in URLs). Value: `FileRecord`
/// (owner, size, chunk count, expiry, and the name and content type sealed under the
/// owner's `data_key`). A record whose upload has not finished is marked incomplete.
pub const FILES: TableDefinition<Id, &[u8]> = TableDefinition::new("files_v1");

/// File contents. Key: (file id, chunk index from 0). Value: one Fernet token (ASCII,
/// without the `\n` that separates tokens in the downloadable blob) sealing one chunk of
/// plaintext under the file's key, which is never stored.
pub const FILE_CHUNKS: TableDefinition<(Id, u32), &[u8]> = TableDefinition::new("file_chunks_v1");

/// Files by owner. Key: (owner id, file id). Value: nothing.
pub const OWNER_TO_FILES: TableDefinition<(Id, Id), ()> = TableDefinition::new("owner_to_files_v1");

/// Access grants. Key: (file id, grantee id). Value: `FileGrantRecord` (the file's name
/// and content type sealed to the grantee's delivery public key).
pub const FILE_GRANTS: TableDefinition<(Id, Id), &[u8]> = TableDefinition::new("file_grants_v1");

/// Grants by grantee. Key: (grantee id, file id). Value: nothing.
pub const GRANTEE_TO_FILES: TableDefinition<(Id, Id), ()> =
    TableDefinition::new("grantee_to_files_v1");

/// What two members are to each other: a pending or accepted connection, denials and
/// blocks. Key: the two user ids in ascending order `(low, high)`. Value: `PairRecord`
/// (`connections/mod.rs`). A row exists only while something links the two.
pub const PAIRS: TableDefinition<(Id, Id), &[u8]> = TableDefinition::new("pairs_v1");

/// Index of `PAIRS` by member, written in both directions. Key: `(member, other member)`.
/// Value: nothing.
pub const MEMBER_TO_PAIRED: TableDefinition<(Id, Id), ()> =
    TableDefinition::new("member_to_paired_v1");

/// Connections (pending requests and accepted connections). Key: connection id (the id in
/// `/chat/<id>` and `/connect/…/<id>`). Value: `ConnectionRecord` (`connections/mod.rs`):
/// requester, receiver, state, and once accepted both sides' public keys in clear.
pub const CONNECTIONS: TableDefinition<Id, &[u8]> = TableDefinition::new("connections_v1");

/// Each side's secrets of an accepted connection: its per-connection private key and the
/// connection's chat key. Key: `(connection id, member id)`. Value: `SideSecretsRecord`
/// (`connections/keys.rs`), sealed under the member's `data_key`, or sealed to their
/// delivery public key until they next use the connection.
pub const CONNECTION_SECRETS: TableDefinition<(Id, Id), &[u8]> =
    TableDefinition::new("connection_secrets_v1");

/// Message queues, one per conversation (a connection id; group ids will share it). Key:
/// `(conversation id, sequence number)`, numbered from 1 in order of arrival. Value:
/// `MessageRecord` (`chat/mod.rs`): Fernet ciphertext under the conversation's key and the
/// sender's signature.
pub const MESSAGES: TableDefinition<(Id, u64), &[u8]> = TableDefinition::new("messages_v1");

/// Messages not yet delivered to a recipient (by `/chat/poll`, the chat page or its live
/// stream). Key: `(recipient id, conversation id, sequence number)`. Value: nothing.
pub const UNDELIVERED: TableDefinition<(Id, Id, u64), ()> = TableDefinition::new("undelivered_v1");

/// Last sequence number used in each conversation, so that numbers are never reused even
/// when messages are deleted. Key: conversation id. Value: the last sequence number.
pub const CONVERSATION_TO_LAST_SEQ: TableDefinition<Id, u64> =
    TableDefinition::new("conversation_to_last_seq_v1");

/// Something done once per table (creating them, copying them into a backup).
pub trait TableVisitor {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<(), super::StoreError>;
}

/// Visit every table. Every table declared in this module must be listed here: creation
/// at start-up and backups both go through this list, and a backup refuses to finish
/// when the file holds a table this list does not name.
pub fn visit_all(v: &mut impl TableVisitor) -> Result<(), super::StoreError> {
    v.visit(META)?;
    v.visit(USERS)?;
    v.visit(USERNAME_TO_USER)?;
    v.visit(SKELETON_TO_USER)?;
    v.visit(FILES)?;
    v.visit(FILE_CHUNKS)?;
    v.visit(OWNER_TO_FILES)?;
    v.visit(FILE_GRANTS)?;
    v.visit(GRANTEE_TO_FILES)?;
    v.visit(PAIRS)?;
    v.visit(MEMBER_TO_PAIRED)?;
    v.visit(CONNECTIONS)?;
    v.visit(CONNECTION_SECRETS)?;
    v.visit(MESSAGES)?;
    v.visit(UNDELIVERED)?;
    v.visit(CONVERSATION_TO_LAST_SEQ)?;
    Ok(())
}
