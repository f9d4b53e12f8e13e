//! Schema version and migrations.
//!
//! The `meta_v1` table holds `schema_version`. A file with a newer version is refused
//! with a clear message; an older one is migrated one step per transaction.

use super::{Store, StoreError, tables};

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
pub const CURRENT_SCHEMA: u32 = 5;

const VERSION_KEY: &str = "schema_version";

/// Read the schema version, refusing newer files, creating every table in a new file.
pub fn prepare(store: &Store) -> Result<(), StoreError> {
    let found = read_version(store)?;
    match found {
        Some(v) if v > CURRENT_SCHEMA => Err(StoreError::NewerSchema {
            found: v,
            supported: CURRENT_SCHEMA,
        }),
        Some(v) => {
            // Migrations from older versions, one transaction per step.
            let mut v = v;
            while v < CURRENT_SCHEMA {
                v = migrate_step(store, v)?;
            }
            create_tables(store)
        }
        None => {
            create_tables(store)?;
            write_version(store, CURRENT_SCHEMA)
        }
    }
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

    #[test]
    fn a_version_2_file_migrates_to_version_3() {
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
