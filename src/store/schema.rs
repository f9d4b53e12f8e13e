//! Schema version and migrations.
//!
//! The `meta_v1` table holds `schema_version`. A file with a newer version is refused
//! with a clear message; an older one is migrated one step per transaction.

use std::collections::HashSet;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::erasure::ErasureKeys;
use super::records::{CredentialScheme, Credentials, Record, UserRecord};
use super::{Store, StoreError, tables};
use crate::crypto::{KdfParams, Verifier};

/// The schema this binary writes.
///
/// 1. Accounts, files, connections, one-to-one chat.
/// 2. Groups, self-destruct deadlines, member settings (new tables only; version-1
///    message records stay readable as they are). An older binary must not open a
///    version-2 file: it would not delete a member's groups and settings with them.
/// 3. Group roles and events: the `group_events_v1` table, version-2 group records (admins
///    and the members-may-invite setting) and version-2 invitation records (re-sealed
///    under the invitee's `data_key`). Older records stay readable as they are; an older
///    binary must not open a version-3 file: it could not read the new records and would
///    not delete a group's events with it.
/// 4. Message records of version 3 (the signature covers the sequence number) and sealed
///    secrets of layout 2 (digests of the public keys their member vouches for). No new
///    table; older records stay readable and are re-sealed at their member's first use.
///    An older binary must not open a version-4 file: it could read neither.
/// 5. The end-to-end tier (the `e2e_*` tables; new tables only). An older binary must not
///    open a version-5 file: it would not delete a member's end-to-end data with them.
/// 6. Erasure keys: members move from `users_v1` to `users_v2`, their credentials sealed
///    under a per-member key in the key file beside the database.
pub const CURRENT_SCHEMA: u32 = 6;

const VERSION_KEY: &str = "schema_version";

/// META key of the id of the erasure key file that belongs to this database.
const KEYS_ID_KEY: &str = "erasure_keys_id";

/// What opening did that the caller must finish.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prepared {
    /// Old credentials were moved under erasure keys: compact the file, so that no copy
    /// of them stays in its free pages.
    pub compact: bool,
}

/// Read the schema version, refusing newer files, creating every table in a new file.
pub fn prepare(store: &Store) -> Result<Prepared, StoreError> {
    let found = read_version(store)?;
    match found {
        Some(v) if v > CURRENT_SCHEMA => Err(StoreError::NewerSchema {
            found: v,
            supported: CURRENT_SCHEMA,
        }),
        Some(v) => {
            // Migrations from older versions, one transaction per step.
            let compact = v < 6;
            let mut v = v;
            while v < CURRENT_SCHEMA {
                v = migrate_step(store, v)?;
            }
            create_tables(store)?;
            Ok(Prepared { compact })
        }
        None => {
            create_tables(store)?;
            write_version(store, CURRENT_SCHEMA)?;
            Ok(Prepared::default())
        }
    }
}

/// Open the erasure key file of the database `db`: the one its `meta` table names (which
/// must be there), or, for a database that names none yet, the file found at `path` or a
/// new one, which it then names.
pub fn open_keys(db: &redb::Database, path: &Path) -> Result<ErasureKeys, StoreError> {
    let named: Option<Vec<u8>> = {
        let txn = db.begin_read()?;
        match txn.open_table(tables::META) {
            Ok(meta) => meta.get(KEYS_ID_KEY)?.map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        }
    };
    let shown = || path.display().to_string();
    match named {
        Some(id) => {
            if !path.exists() {
                return Err(StoreError::KeysMissing(shown()));
            }
            let keys = ErasureKeys::open(path)?;
            if keys.id().as_slice() != id.as_slice() {
                return Err(StoreError::KeysMismatch(shown()));
            }
            Ok(keys)
        }
        None => {
            // A file without a database naming it holds no key anybody needs (it was
            // created just before a crash): adopt it; its unnamed keys are erased.
            let keys = if path.exists() {
                ErasureKeys::open(path)?
            } else {
                ErasureKeys::create(path)?
            };
            let mut txn = db.begin_write()?;
            txn.set_two_phase_commit(true);
            txn.open_table(tables::META)?
                .insert(KEYS_ID_KEY, keys.id().as_slice())?;
            txn.commit()?;
            Ok(keys)
        }
    }
}

/// The erasure key slots that member records name.
pub fn named_slots(store: &Store) -> Result<HashSet<u32>, StoreError> {
    named_slots_in(&store.read()?)
}

/// The erasure key slots that member records name, in a snapshot (also a backup's).
pub fn named_slots_in(txn: &redb::ReadTransaction) -> Result<HashSet<u32>, StoreError> {
    let users = match txn.open_table(tables::USERS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashSet::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = HashSet::new();
    for row in users.iter()? {
        let (_, v) = row?;
        out.insert(UserRecord::decode(v.value())?.erasure_slot);
    }
    Ok(out)
}

/// Members as schemas 1 to 4 stored them: credentials in clear.
const USERS_V1: TableDefinition<tables::Id, &[u8]> = TableDefinition::new("users_v1");

#[derive(Serialize, Deserialize)]
struct LegacyUserRecord {
    username: String,
    salt: [u8; 16],
    kdf: KdfParams,
    password_verifier: Verifier,
    destruction_verifier: Verifier,
    wrapped_data_key: String,
    delivery_public: Vec<u8>,
    delivery_private_sealed: String,
    last_login_day: i64,
}

impl Record for LegacyUserRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "user (schemas 1 to 5)";
}

/// 5 → 6: every member's credentials sealed under a new erasure key, in one transaction
/// (the keys are written and synced first; a crash leaves unnamed keys, erased at the
/// next start, and the migration runs again).
fn migrate_users_to_erasure_keys(store: &Store) -> Result<(), StoreError> {
    let txn = store.write()?;
    {
        let legacy = txn.open_table(USERS_V1)?;
        let mut users = txn.open_table(tables::USERS)?;
        for row in legacy.iter()? {
            let (id, bytes) = row?;
            let old = LegacyUserRecord::decode(bytes.value())?;
            let (slot, key) = store.keys().allocate()?;
            let credentials = Credentials {
                scheme: CredentialScheme::Argon2Hkdf { peppered: false },
                salt: old.salt,
                kdf: old.kdf,
                password_verifier: old.password_verifier,
                destruction_verifier: old.destruction_verifier,
                wrapped_data_key: old.wrapped_data_key,
            };
            let record = UserRecord {
                username: old.username,
                delivery_public: old.delivery_public,
                delivery_private_sealed: old.delivery_private_sealed,
                last_login_day: old.last_login_day,
                kept_out_day: 0,
                erasure_slot: slot,
                credentials_sealed: credentials.seal(&key)?,
                erasing: false,
            };
            users.insert(id.value(), record.encode()?.as_slice())?;
        }
    }
    txn.delete_table(USERS_V1)?;
    txn.open_table(tables::META)?
        .insert(VERSION_KEY, 6u32.to_le_bytes().as_slice())?;
    txn.commit()?;
    Ok(())
}

/// Migrate from `from` to the next version in one transaction; the new version.
fn migrate_step(store: &Store, from: u32) -> Result<u32, StoreError> {
    match from {
        1 => {
            // 1 → 2: the new tables, and the version, together.
            let txn = store.write()?;
            tables::visit_all(&mut Create(&txn))?;
            txn.open_table(tables::META)?
                .insert(VERSION_KEY, 2u32.to_le_bytes().as_slice())?;
            txn.commit()?;
            Ok(2)
        }
        2 => {
            // 2 → 3: the events table, and the version, together.
            let txn = store.write()?;
            tables::visit_all(&mut Create(&txn))?;
            txn.open_table(tables::META)?
                .insert(VERSION_KEY, 3u32.to_le_bytes().as_slice())?;
            txn.commit()?;
            Ok(3)
        }
        3 => {
            // 3 → 4: only the version (the new record forms are read beside the old).
            let txn = store.write()?;
            txn.open_table(tables::META)?
                .insert(VERSION_KEY, 4u32.to_le_bytes().as_slice())?;
            txn.commit()?;
            Ok(4)
        }
        4 => {
            // 4 → 5: the end-to-end tables, and the version, together.
            let txn = store.write()?;
            tables::visit_all(&mut Create(&txn))?;
            txn.open_table(tables::META)?
                .insert(VERSION_KEY, 5u32.to_le_bytes().as_slice())?;
            txn.commit()?;
            Ok(5)
        }
        5 => {
            migrate_users_to_erasure_keys(store)?;
            Ok(6)
        }
        v => Err(StoreError::Corrupt(format!(
            "unknown old schema version {v}"
        ))),
    }
}

/// The schema version stored in the file, if any.
pub fn read_version(store: &Store) -> Result<Option<u32>, StoreError> {
    read_version_in(&store.read()?)
}

/// The schema version as seen by a read transaction (also of a read-only database).
pub fn read_version_in(txn: &redb::ReadTransaction) -> Result<Option<u32>, StoreError> {
    let table = match txn.open_table(tables::META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(v) = table.get(VERSION_KEY)? else {
        return Ok(None);
    };
    let bytes: [u8; 4] = v
        .value()
        .try_into()
        .map_err(|_| StoreError::Corrupt("schema_version is not 4 bytes".into()))?;
    Ok(Some(u32::from_le_bytes(bytes)))
}

/// Write the schema version (also used by tests to fake a newer file).
pub fn write_version(store: &Store, version: u32) -> Result<(), StoreError> {
    let txn = store.write()?;
    {
        let mut meta = txn.open_table(tables::META)?;
        meta.insert(VERSION_KEY, version.to_le_bytes().as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Opens every table it visits (creating the missing ones).
struct Create<'t>(&'t redb::WriteTransaction);

impl tables::TableVisitor for Create<'_> {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: redb::TableDefinition<'static, K, V>,
    ) -> Result<(), StoreError> {
        self.0.open_table(table)?;
        Ok(())
    }
}

/// Open every table once so that read transactions never meet a missing table.
fn create_tables(store: &Store) -> Result<(), StoreError> {
    let txn = store.write()?;
    tables::visit_all(&mut Create(&txn))?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_file_migrates_to_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::DB_FILE);
        {
            let s = Store::open(&path).unwrap();
            // Make it look like a version-1 file: version 1, none of the new tables.
            let txn = s.write().unwrap();
            txn.delete_table(tables::GROUPS).unwrap();
            txn.delete_table(tables::MESSAGE_DEADLINES).unwrap();
            txn.commit().unwrap();
            write_version(&s, 1).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(read_version(&s).unwrap(), Some(CURRENT_SCHEMA));
        let txn = s.read().unwrap();
        assert!(txn.open_table(tables::GROUPS).is_ok());
        assert!(txn.open_table(tables::MESSAGE_DEADLINES).is_ok());
    }

    /// A file of schema `version` (2 to 4) as the code before erasure keys wrote it: a
    /// member in `users_v1` with salt, verifiers and wrapped data key in clear.
    fn legacy_file(path: &Path, version: u32) -> LegacyUserRecord {
        let data_key = crate::crypto::SecretKey::generate();
        let kdf = KdfParams::DANGER_FAST;
        // Those versions checked the password itself (argon2id over it, no login secret).
        let salt: [u8; 16] = crate::crypto::random_bytes();
        let m_password = crate::crypto::MasterKey::derive(b"legacy password", &salt, kdf).unwrap();
        let m_destruction =
            crate::crypto::MasterKey::derive(b"legacy destruction", &salt, kdf).unwrap();
        let legacy = LegacyUserRecord {
            username: "oldtimer".into(),
            salt,
            kdf,
            password_verifier: m_password.verifier(),
            destruction_verifier: m_destruction.verifier(),
            wrapped_data_key: m_password.kek().wrap(&data_key).unwrap(),
            delivery_public: vec![1, 2, 3],
            delivery_private_sealed: data_key.seal(b"private key").unwrap(),
            last_login_day: 0,
        };
        let s = Store::open(path).unwrap();
        let txn = s.write().unwrap();
        txn.delete_table(tables::USERS).unwrap();
        let id = [5u8; 16];
        txn.open_table(USERS_V1)
            .unwrap()
            .insert(id, legacy.encode().unwrap().as_slice())
            .unwrap();
        let username = crate::accounts::Username::parse("oldtimer").unwrap();
        txn.open_table(tables::USERNAME_TO_USER)
            .unwrap()
            .insert(username.as_str(), id)
            .unwrap();
        txn.open_table(tables::SKELETON_TO_USER)
            .unwrap()
            .insert(username.skeleton(), id)
            .unwrap();
        txn.commit().unwrap();
        write_version(&s, version).unwrap();
        legacy
    }

    #[test]
    fn members_of_a_version_2_file_move_under_erasure_keys_and_leave_nothing_behind() {
        members_move_under_erasure_keys(2);
    }

    /// Version 4 is what `main` wrote just before erasure keys (message records v3).
    #[test]
    fn members_of_a_version_4_file_move_under_erasure_keys_and_leave_nothing_behind() {
        members_move_under_erasure_keys(4);
    }

    #[test]
    fn members_of_a_version_5_file_move_under_erasure_keys_and_leave_nothing_behind() {
        members_move_under_erasure_keys(5);
    }

    fn members_move_under_erasure_keys(version: u32) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::DB_FILE);
        let legacy = legacy_file(&path, version);
        let before = std::fs::read(&path).unwrap();
        let has = |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(
            has(&before, &legacy.salt),
            "sanity: the old file holds the salt in clear"
        );

        let s = Store::open(&path).unwrap();
        assert_eq!(read_version(&s).unwrap(), Some(CURRENT_SCHEMA));
        assert!(
            s.read().unwrap().open_table(USERS_V1).is_err(),
            "old table gone"
        );
        let policy = crate::accounts::Policy::new(
            legacy.kdf,
            None,
            30,
            crate::store::cascade::Cascade::new(),
        )
        .unwrap();
        let name = crate::accounts::Username::parse("oldtimer").unwrap();
        let now = 0;
        assert!(matches!(
            crate::accounts::check_login(
                &s,
                &policy,
                &name,
                &crate::accounts::secret::Presented::password(b"legacy password"),
                now
            )
            .unwrap(),
            crate::accounts::LoginOutcome::Success { .. }
        ));
        drop(s);
        // Compacted: no copy of the clear credentials is left in free pages.
        let after = std::fs::read(&path).unwrap();
        assert!(!has(&after, &legacy.salt), "salt");
        assert!(!has(&after, &legacy.password_verifier.0), "verifier");
        assert!(!has(&after, &legacy.destruction_verifier.0), "verifier");
        assert!(
            !has(&after, legacy.wrapped_data_key.as_bytes()),
            "wrapped key"
        );
        assert!(has(&after, b"oldtimer"), "sanity: the scan sees the file");
    }

    #[test]
    fn a_database_refuses_to_open_without_its_own_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::DB_FILE);
        let keys = crate::store::erasure::keys_path(&path);
        drop(Store::open(&path).unwrap());
        let saved = std::fs::read(&keys).unwrap();
        std::fs::remove_file(&keys).unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");
        assert!(!keys.exists(), "no empty key file made in its place");
        // Another database's key file is refused too.
        let other = dir.path().join("other.redb");
        drop(Store::open(&other).unwrap());
        std::fs::copy(crate::store::erasure::keys_path(&other), &keys).unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("belongs to another database"), "{err}");
        std::fs::write(&keys, saved).unwrap();
        Store::open(&path).unwrap();
    }

    #[test]
    fn a_version_2_file_migrates_through_version_3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::DB_FILE);
        {
            let s = Store::open(&path).unwrap();
            let txn = s.write().unwrap();
            txn.delete_table(tables::GROUP_EVENTS).unwrap();
            txn.commit().unwrap();
            write_version(&s, 2).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(read_version(&s).unwrap(), Some(CURRENT_SCHEMA));
        let txn = s.read().unwrap();
        assert!(txn.open_table(tables::GROUP_EVENTS).is_ok());
    }

    #[test]
    fn newer_schema_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::DB_FILE);
        {
            let s = Store::open(&path).unwrap();
            write_version(&s, CURRENT_SCHEMA + 1).unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("newer ghostcache"), "{msg}");
    }
}
