//! Schema version and migrations.
//!
//! The `meta_v1` table holds `schema_version`. A file with a newer version is refused
//! with a clear message; an older one is migrated one step per transaction.

use super::{Store, StoreError, tables};

/// The schema this binary writes.
pub const CURRENT_SCHEMA: u32 = 1;

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
            // Migrations from older versions run here, one transaction per step. Version 1
            // is the first schema, so there is nothing older to migrate yet.
            if v < CURRENT_SCHEMA {
                return Err(StoreError::Corrupt(format!(
                    "unknown old schema version {v}"
                )));
            }
            create_tables(store)
        }
        None => {
            create_tables(store)?;
            write_version(store, CURRENT_SCHEMA)
        }
    }
}

/// The schema version stored in the file, if any.
pub fn read_version(store: &Store) -> Result<Option<u32>, StoreError> {
    let txn = store.read()?;
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

/// Open every table once so that read transactions never meet a missing table.
fn create_tables(store: &Store) -> Result<(), StoreError> {
    let txn = store.write()?;
    txn.open_table(tables::META)?;
    txn.open_table(tables::USERS)?;
    txn.open_table(tables::USERNAME_TO_USER)?;
    txn.open_table(tables::SKELETON_TO_USER)?;
    txn.open_table(tables::PAIRS)?;
    txn.open_table(tables::MEMBER_TO_PAIRED)?;
    txn.open_table(tables::CONNECTIONS)?;
    txn.open_table(tables::CONNECTION_SECRETS)?;
    txn.open_table(tables::MESSAGES)?;
    txn.open_table(tables::UNDELIVERED)?;
    txn.open_table(tables::CONVERSATION_TO_LAST_SEQ)?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
