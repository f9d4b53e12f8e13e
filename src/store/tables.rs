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
    Ok(())
}
