//! Online backups: a consistent copy of the database, taken from one read snapshot while
//! the server keeps running (the server opens the file as redb's single writer, so other
//! processes may read it at the same time).
//!
//! The copy is logical: every row of every table is written into a new redb file. It
//! holds exactly what the live database holds — everything sensitive stays sealed — and
//! none of the stale bytes that free pages of the live file may still contain.
//!
//! Beside the copy goes a copy of the erasure key file (`<PATH>.keys`), read after the
//! snapshot was taken and holding only the keys that the snapshot's members name: every
//! key of a member in the copy was written before the snapshot began, and a member erased
//! since then is erased in the backup too (their key is gone from the live file).
//!
//! Restoring is a copy back: stop the service, replace `ghostcache.redb` and
//! `ghostcache.redb.keys` in the data directory with the two files of the backup, start
//! the service.

use std::collections::BTreeSet;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableHandle};

use super::erasure::{copy_named, keys_path};
use super::schema::named_slots_in;
use super::tables::{self, TableVisitor};
use super::{StoreError, open_read_only};

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0} already exists; choose a new path (a backup never overwrites a file)")]
    Exists(String),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the database holds table {0}, which this binary does not know; refusing to write an incomplete backup"
    )]
    UnknownTable(String),
}

struct Copy<'a> {
    src: &'a redb::ReadTransaction,
    dst: &'a redb::WriteTransaction,
    rows: u64,
    seen: BTreeSet<String>,
}

impl TableVisitor for Copy<'_> {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: redb::TableDefinition<'static, K, V>,
    ) -> Result<(), StoreError> {
        self.seen.insert(table.name().to_owned());
        let src = match self.src.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut dst = self.dst.open_table(table)?;
        for row in src.iter()? {
            let (k, v) = row?;
            dst.insert(k.value(), v.value())?;
            self.rows += 1;
        }
        Ok(())
    }
}

/// Copy the database at `source` into a new file at `dest`, and its erasure key file
/// into `<dest>.keys`.
pub fn backup(source: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let dest_keys = keys_path(dest);
    for path in [dest, dest_keys.as_path()] {
        if path.exists() {
            return Err(BackupError::Exists(path.display().to_string()));
        }
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| BackupError::Io { path, source }
    };
    let partial = dest.with_extension("partial");
    let partial_keys = keys_path(&partial);
    let _ = std::fs::remove_file(&partial);
    let _ = std::fs::remove_file(&partial_keys);
    // The backup is as private as the database: created 0600, never world-readable.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(io(&partial))?;
    let result = (|| {
        let src_db = open_read_only(source)?;
        let src = src_db.begin_read()?;
        let dst_db = redb::Database::builder()
            .create_with_backend(redb::backends::FileBackend::new(file)?)
            .map_err(StoreError::from)?;
        let mut dst = dst_db.begin_write()?;
        dst.set_two_phase_commit(true);
        let mut copy = Copy {
            src: &src,
            dst: &dst,
            rows: 0,
            seen: BTreeSet::new(),
        };
        tables::visit_all(&mut copy)?;
        let (rows, seen) = (copy.rows, copy.seen);
        for handle in src.list_tables()? {
            if !seen.contains(handle.name()) {
                return Err(BackupError::UnknownTable(handle.name().to_owned()));
            }
        }
        if src.list_multimap_tables()?.next().is_some() {
            return Err(BackupError::UnknownTable("(a multimap table)".into()));
        }
        // The keys, read now that the snapshot is taken: every key it names is on disk.
        copy_named(&keys_path(source), &partial_keys, &named_slots_in(&src)?)?;
        dst.commit().map_err(StoreError::from)?;
        Ok((seen.len(), rows))
    })();
    let (tables, rows) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(&partial_keys);
            return Err(e);
        }
    };
    std::fs::rename(&partial_keys, &dest_keys).map_err(io(&dest_keys))?;
    std::fs::rename(&partial, dest).map_err(io(dest))?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent))?;
    }
    let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
    Ok(BackupReport {
        tables,
        rows,
        bytes,
        elapsed: started.elapsed(),
    })
}

impl From<redb::DatabaseError> for BackupError {
    fn from(e: redb::DatabaseError) -> Self {
        BackupError::Store(e.into())
    }
}

impl From<redb::TransactionError> for BackupError {
    fn from(e: redb::TransactionError) -> Self {
        BackupError::Store(e.into())
    }
}

impl From<redb::StorageError> for BackupError {
    fn from(e: redb::StorageError) -> Self {
        BackupError::Store(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DB_FILE, Store};

    #[test]
    fn backup_copies_every_row_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let store = Store::open(&path).unwrap();
        let txn = store.write().unwrap();
        {
            let mut t = txn.open_table(tables::USERNAME_TO_USER).unwrap();
            for i in 0..100u8 {
                t.insert(format!("user{i}").as_str(), [i; 16]).unwrap();
            }
        }
        txn.commit().unwrap();
        drop(store);

        let out = dir.path().join("copy.redb");
        let report = backup(&path, &out).unwrap();
        assert_eq!(
            report.rows, 102,
            "100 names, the schema version and the key file's id"
        );
        assert!(keys_path(&out).exists(), "the key file goes with it");
        let copy = Store::open(&out).unwrap();
        let txn = copy.read().unwrap();
        let t = txn.open_table(tables::USERNAME_TO_USER).unwrap();
        assert_eq!(t.get("user42").unwrap().unwrap().value(), [42u8; 16]);
        drop(t);
        drop(txn);
        assert!(matches!(backup(&path, &out), Err(BackupError::Exists(_))));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
