//! The store: one redb file, `ghostcache.redb`, holding all state, and beside it the
//! small file of per-member erasure keys, `ghostcache.redb.keys` (see [`erasure`]).
//!
//! redb calls block, so request handlers reach the store through [`Store::run`], which
//! moves the work to tokio's blocking pool and re-raises a panic there as a panic here.

pub mod backup;
pub mod cascade;
pub mod erasure;
pub mod records;
pub mod rotate;
pub mod schema;
pub mod tables;

use std::path::Path;
use std::sync::Arc;

use redb::{ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, WriteTransaction};

pub use erasure::ErasureKeys;
pub use records::{CredentialScheme, Credentials, Record, UserRecord};
pub use tables::Id;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "ghostcache.redb";

/// redb's page cache (read cache and write buffer together). redb's default is 1 GiB,
/// which a large upload or download would fill with file chunks; metadata needs little.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Errors from the storage layer. The detail is for logs, never for pages.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("database file is in use by another ghostcache process")]
    Locked,
    #[error("no database at {0}")]
    Missing(String),
    #[error(
        "the database was written by a newer ghostcache (schema {found}; this binary understands \
         up to {supported}); refusing to open it. Upgrade ghostcache, or restore a backup made by \
         this version"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("encoding record: {0}")]
    Encode(String),
    #[error("blocking task failed: {0}")]
    Join(String),
    #[error("erasure key file {0}")]
    Keys(String),
    #[error(
        "the erasure key file {0} is missing. It holds the keys without which no account can \
         log in, and must be restored together with the database (see \"Backups and restore\" \
         in the README)"
    )]
    KeysMissing(String),
    #[error(
        "the erasure key file {0} belongs to another database: restore the key file that was \
         backed up with this database"
    )]
    KeysMismatch(String),
}

macro_rules! redb_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
redb_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Handle to the open database and its erasure keys. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    keys: Arc<ErasureKeys>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Open (or create) the database at `path`, refuse a newer schema, migrate an older one.
    ///
    /// The file is opened as the single writer: other processes (`ghostcache backup`,
    /// `status`, `onion-address`) may open it read-only at the same time and read
    /// consistent snapshots; a second writer is refused.
    ///
    /// The erasure key file beside it (`<path>.keys`) is opened too, or created for a new
    /// database (and for one written before erasure keys existed, whose accounts are then
    /// moved under erasure keys and the file compacted, so that no copy of their old
    /// credentials stays in free pages). A database that names a key file refuses to open
    /// without that very file. Keys that no record names are erased.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = match Database::builder()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .set_cache_size(CACHE_BYTES)
            .create(path)
        {
            Ok(db) => db,
            Err(e) => return Err(map_open_error(e)),
        };
        let keys = schema::open_keys(&db, &erasure::keys_path(path))?;
        let mut store = Self {
            db: Arc::new(db),
            keys: Arc::new(keys),
        };
        let prepared = schema::prepare(&store)?;
        if prepared.compact {
            // Nothing else holds the database yet: compaction needs it to itself.
            if let Some(db) = Arc::get_mut(&mut store.db) {
                while db
                    .compact()
                    .map_err(|e| StoreError::Db(redb::Error::from(e)))?
                {}
            }
        }
        store.keys.collect_garbage(&schema::named_slots(&store)?)?;
        store.keys.ensure_reserve()?;
        Ok(store)
    }

    /// The erasure keys.
    pub fn keys(&self) -> &ErasureKeys {
        &self.keys
    }

    /// Begin a write transaction. Every commit is durable (fsync) and uses redb's two-phase
    /// commit, so a power cut leaves either the old or the new state.
    pub fn write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_two_phase_commit(true);
        Ok(txn)
    }

    /// Begin a read transaction (a consistent snapshot).
    pub fn read(&self) -> Result<ReadTransaction, StoreError> {
        use redb::ReadableDatabase;
        Ok(self.db.begin_read()?)
    }

    /// Run blocking store work on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Join(e.to_string())),
        }
    }

    /// Access to the database for backups and statistics.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// File sizes around a compaction.
#[derive(Debug, Clone, Copy)]
pub struct CompactReport {
    pub before: u64,
    pub after: u64,
}

/// Compact the database at `path`, which no process may have open (the server must be
/// stopped; redb's lock refuses otherwise). redb frees the pages of deleted rows without
/// overwriting them; compaction moves live pages into the free ones and truncates the
/// file, so that deleted ciphertext does not linger in it.
pub fn compact(path: &Path) -> Result<CompactReport, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing(path.display().to_string()));
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = size(path);
    {
        let mut db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .set_cache_size(CACHE_BYTES)
            .open(path)
            .map_err(map_open_error)?;
        {
            use redb::ReadableDatabase;
            let txn = db.begin_read()?;
            if let Some(v) = schema::read_version_in(&txn)?
                && v > schema::CURRENT_SCHEMA
            {
                return Err(StoreError::NewerSchema {
                    found: v,
                    supported: schema::CURRENT_SCHEMA,
                });
            }
        }
        while db
            .compact()
            .map_err(|e| StoreError::Db(redb::Error::from(e)))?
        {}
    }
    Ok(CompactReport {
        before,
        after: size(path),
    })
}

/// Open an existing database read-only, alongside a running server if there is one.
pub fn open_read_only(path: &Path) -> Result<ReadOnlyDatabase, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing(path.display().to_string()));
    }
    let db = Database::builder()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .open_read_only(path)
        .map_err(map_open_error)?;
    {
        use redb::ReadableDatabase;
        let txn = db.begin_read()?;
        let version = schema::read_version_in(&txn)?;
        if let Some(v) = version
            && v > schema::CURRENT_SCHEMA
        {
            return Err(StoreError::NewerSchema {
                found: v,
                supported: schema::CURRENT_SCHEMA,
            });
        }
    }
    Ok(db)
}

fn map_open_error(e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            StoreError::Locked
        }
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let _a = Store::open(&path).unwrap();
        // redb locks the file; within one process it reports the database as already open.
        assert!(Store::open(&path).is_err());
    }
}
