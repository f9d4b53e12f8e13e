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

/// Members (and decoys of departed members). Key: user id. Value: `UserRecord`, whose
/// credentials are sealed under the member's erasure key (`store/erasure.rs`).
pub const USERS: TableDefinition<Id, &[u8]> = TableDefinition::new("users_v2");

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

/// Message queues, one per conversation (a connection id or a group id). Key:
/// `(conversation id, sequence number)`, numbered from 1 in order of arrival. Value:
/// `MessageRecord` (`chat/mod.rs`): Fernet ciphertext under the conversation's key (for a
/// group, the key of the epoch named in the record), the self-destruct deadline if any,
/// and the sender's signature.
pub const MESSAGES: TableDefinition<(Id, u64), &[u8]> = TableDefinition::new("messages_v1");

/// Messages not yet delivered to a recipient (by `/chat/poll`, the chat page or its live
/// stream). Key: `(recipient id, conversation id, sequence number)`. Value: nothing.
pub const UNDELIVERED: TableDefinition<(Id, Id, u64), ()> = TableDefinition::new("undelivered_v1");

/// Last sequence number used in each conversation, so that numbers are never reused even
/// when messages are deleted. Key: conversation id. Value: the last sequence number.
pub const CONVERSATION_TO_LAST_SEQ: TableDefinition<Id, u64> =
    TableDefinition::new("conversation_to_last_seq_v1");

/// Self-destruct deadlines, so that the sweeper finds due messages without scanning
/// `MESSAGES`. Key: `(deadline in Unix seconds, conversation id, sequence number)`. Value:
/// nothing. A row exists exactly while its message does.
pub const MESSAGE_DEADLINES: TableDefinition<(i64, Id, u64), ()> =
    TableDefinition::new("message_deadlines_v1");

/// Per-member settings. Key: member id. Value: `MemberSettingsRecord`
/// (`chat/signing.rs`): the signature scheme the member signs new connections and groups
/// with. No row: the defaults (RSA-PSS).
pub const MEMBER_SETTINGS: TableDefinition<Id, &[u8]> = TableDefinition::new("member_settings_v1");

/// Group chats. Key: group id (the id in `/chat/group/<id>`). Value: `GroupRecord`
/// (`groups/mod.rs`): creator, current key epoch, and the group's name sealed under the
/// group's name key.
pub const GROUPS: TableDefinition<Id, &[u8]> = TableDefinition::new("groups_v1");

/// Members of groups, current and former. Key: `(group id, member id)`. Value:
/// `MembershipRecord` (`groups/mod.rs`): active (with the epoch and first message they
/// joined at) or left, and the public half of the member's signing key for this group in
/// clear (kept after leaving, so that their messages still verify).
pub const GROUP_MEMBERS: TableDefinition<(Id, Id), &[u8]> =
    TableDefinition::new("group_members_v1");

/// Index of `GROUP_MEMBERS` by member. Key: `(member id, group id)`. Value: nothing.
pub const MEMBER_TO_GROUPS: TableDefinition<(Id, Id), ()> =
    TableDefinition::new("member_to_groups_v1");

/// Group keys, one per membership epoch, wrapped for each member of that epoch. Key:
/// `(group id, epoch, member id)`. Value: `EpochKeyRecord` (`groups/keys.rs`): the
/// epoch's Fernet key RSA-OAEP-SHA256-wrapped to the member's delivery key, re-sealed
/// under their `data_key` on first use. A member's rows go when they leave.
pub const GROUP_EPOCH_KEYS: TableDefinition<(Id, u32, Id), &[u8]> =
    TableDefinition::new("group_epoch_keys_v1");

/// Each current member's own secrets of a group: their signing private key for this
/// group and the group's name key. Key: `(group id, member id)`. Value:
/// `MemberSecretsRecord` (`groups/keys.rs`), sealed under the member's `data_key`.
pub const GROUP_MEMBER_SECRETS: TableDefinition<(Id, Id), &[u8]> =
    TableDefinition::new("group_member_secrets_v1");

/// Pending invitations to groups. Key: `(invitee id, group id)`. Value: `InviteRecord`
/// (`groups/mod.rs`): who invited, when (day), and the group's name key sealed to the
/// invitee's delivery key.
pub const GROUP_INVITES: TableDefinition<(Id, Id), &[u8]> =
    TableDefinition::new("group_invites_v1");

/// Index of `GROUP_INVITES` by group. Key: `(group id, invitee id)`. Value: nothing.
pub const GROUP_TO_INVITEES: TableDefinition<(Id, Id), ()> =
    TableDefinition::new("group_to_invitees_v1");

/// Registration invitations. Key: SHA-256 of the normalised code (the code itself is never
/// stored). Value: `InviteRecord` (`invites/mod.rs`): uses left, expiry (Unix seconds), and
/// the member who made it (none for the operator's codes). A used-up code stays until it
/// expires, so that it keeps counting against its maker's quota; the sweeper removes
/// expired codes.
pub const INVITES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("invites_v1");

/// Invitation codes by the member who made them. Key: `(member id, code hash)`. Value:
/// nothing.
pub const MEMBER_TO_INVITES: TableDefinition<(Id, [u8; 32]), ()> =
    TableDefinition::new("member_to_invites_v1");

/// Onion-service client authorization (restricted discovery). Key: the client's name, as
/// the operator gave it (`[a-z0-9_-]`, 1–32). Value: `ClientAuthRecord`
/// (`onion/client_auth.rs`): the x25519 public key and the day it was added. Private keys
/// are never stored.
pub const CLIENT_AUTH: TableDefinition<&str, &[u8]> = TableDefinition::new("client_auth_v1");
/// What happened in a group (joins, departures, invitations, roles, settings), shown in
/// its history between the messages. Key: `(group id, sequence number)`, numbered in the
/// group's message sequence (`CONVERSATION_TO_LAST_SEQ`), so that a number is either a
/// message or an event. Value: `GroupEventRecord` (`groups/events.rs`): the key epoch and
/// the event (who, what, when) sealed under that epoch's group key.
pub const GROUP_EVENTS: TableDefinition<(Id, u64), &[u8]> = TableDefinition::new("group_events_v1");
/// End-to-end keys of a member (the current generation). Key: member id. Value:
/// `MemberKeysRecord` (`e2e/mod.rs`): generation, public keys in clear, and the private
/// keys as the browser wrapped them (opaque to the server), sealed again under the
/// member's `data_key`.
pub const E2E_MEMBER_KEYS: TableDefinition<Id, &[u8]> = TableDefinition::new("e2e_member_keys_v1");

/// Every generation of every member's end-to-end public keys, so that old signatures still
/// verify after a re-key. Key: `(member id, generation)`. Value: `PublicKeysRecord`.
pub const E2E_PUBLIC_KEYS: TableDefinition<(Id, u32), &[u8]> =
    TableDefinition::new("e2e_public_keys_v1");

/// End-to-end conversations (one-to-one and groups). Key: conversation id (its own random
/// id, never a connection's). Value: `ConversationRecord`: kind, state, current epoch,
/// whether a re-key is due, last sequence number.
pub const E2E_CONVERSATIONS: TableDefinition<Id, &[u8]> =
    TableDefinition::new("e2e_conversations_v1");

/// The end-to-end conversation of a connection. Key: connection id. Value: conversation id.
pub const E2E_CONNECTION_TO_CONVERSATION: TableDefinition<Id, Id> =
    TableDefinition::new("e2e_connection_to_conversation_v1");

/// Participants of end-to-end conversations, current and former. Key: `(conversation,
/// member)`. Value: `ParticipantRecord`: active or left, the epoch and sequence number
/// their participation starts at, the last per-sender sequence number they used.
pub const E2E_PARTICIPANTS: TableDefinition<(Id, Id), &[u8]> =
    TableDefinition::new("e2e_participants_v1");

/// Index of `E2E_PARTICIPANTS` by member. Key: `(member, conversation)`. Value: nothing.
pub const E2E_MEMBER_TO_CONVERSATIONS: TableDefinition<(Id, Id), ()> =
    TableDefinition::new("e2e_member_to_conversations_v1");

/// Key epochs of end-to-end conversations, as a participant's browser made them. Key:
/// `(conversation, epoch)`. Value: `EpochRecord`: maker, recipients with the SHA-256 of
/// each wrapped key, the group's name sealed under the epoch key, the maker's signature.
pub const E2E_EPOCHS: TableDefinition<(Id, u32), &[u8]> = TableDefinition::new("e2e_epochs_v1");

/// Each recipient's copy of an epoch key, RSA-OAEP-SHA256-wrapped by the maker's browser
/// to the recipient's end-to-end key. Key: `(conversation, epoch, member)`. Value: the
/// wrapped key (opaque to the server).
pub const E2E_EPOCH_KEYS: TableDefinition<(Id, u32, Id), &[u8]> =
    TableDefinition::new("e2e_epoch_keys_v1");

/// End-to-end messages. Key: `(conversation, sequence number)` in order of arrival. Value:
/// `E2eMessageRecord`: header, AES-256-GCM ciphertext, the sender's signature.
pub const E2E_MESSAGES: TableDefinition<(Id, u64), &[u8]> = TableDefinition::new("e2e_messages_v1");

/// Self-destruct deadlines of end-to-end messages. Key: `(deadline, conversation, sequence
/// number)`. Value: nothing.
pub const E2E_DEADLINES: TableDefinition<(i64, Id, u64), ()> =
    TableDefinition::new("e2e_deadlines_v1");

/// Invitations to end-to-end groups. Key: `(invitee, group)`. Value: `E2eInviteRecord`.
pub const E2E_INVITES: TableDefinition<(Id, Id), &[u8]> = TableDefinition::new("e2e_invites_v1");

/// Index of `E2E_INVITES` by group. Key: `(group, invitee)`. Value: nothing.
pub const E2E_GROUP_TO_INVITEES: TableDefinition<(Id, Id), ()> =
    TableDefinition::new("e2e_group_to_invitees_v1");

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
    v.visit(MESSAGE_DEADLINES)?;
    v.visit(MEMBER_SETTINGS)?;
    v.visit(GROUPS)?;
    v.visit(GROUP_MEMBERS)?;
    v.visit(MEMBER_TO_GROUPS)?;
    v.visit(GROUP_EPOCH_KEYS)?;
    v.visit(GROUP_MEMBER_SECRETS)?;
    v.visit(GROUP_INVITES)?;
    v.visit(GROUP_TO_INVITEES)?;
    v.visit(INVITES)?;
    v.visit(MEMBER_TO_INVITES)?;
    v.visit(CLIENT_AUTH)?;
    v.visit(GROUP_EVENTS)?;
    v.visit(E2E_MEMBER_KEYS)?;
    v.visit(E2E_PUBLIC_KEYS)?;
    v.visit(E2E_CONVERSATIONS)?;
    v.visit(E2E_CONNECTION_TO_CONVERSATION)?;
    v.visit(E2E_PARTICIPANTS)?;
    v.visit(E2E_MEMBER_TO_CONVERSATIONS)?;
    v.visit(E2E_EPOCHS)?;
    v.visit(E2E_EPOCH_KEYS)?;
    v.visit(E2E_MESSAGES)?;
    v.visit(E2E_DEADLINES)?;
    v.visit(E2E_INVITES)?;
    v.visit(E2E_GROUP_TO_INVITEES)?;
    Ok(())
}
