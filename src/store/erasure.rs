//! Erasure keys: one random 32-byte key per member, in a file of fixed slots beside the
//! database (`ghostcache.redb.keys`), overwritten in place and synced when the member goes.
//!
//! The member's credentials (salt, verifiers, wrapped data key) are stored in redb sealed
//! under that key. redb never overwrites a page it frees, so every copy of those sealed
//! credentials that redb ever wrote may linger in the file; once the slot holds zeros, each
//! of them is ciphertext under a key that exists nowhere, and with the credentials goes
//! every way to the member's data key, and so to everything sealed under it. A sealed
//! credentials record is never rewritten under the same key: a change (password, pepper,
//! departure) takes a new slot and erases the old one.
//!
//! Layout: a 32-byte header (`MAGIC`, a 16-byte file id that the database's `meta` table
//! names too, 8 zero bytes), then slots of 32 bytes. A slot of zeros is free. Slot 0 holds
//! a key that belongs to nobody: failed logins for unknown names rewrite it, so that they
//! do the same work as failed logins for real names. The file grows by `GROWTH` slots at a
//! time and never shrinks.
//!
//! Writes are `pwrite` + `fdatasync` under one lock. The file and redb are two files, so
//! every change is ordered to be safe at any crash point: a key is written (and synced)
//! before the record that names it commits, and erased only after the record that named it
//! has gone. A key no record names is erased at start-up ([`ErasureKeys::collect_garbage`]).

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use zeroize::Zeroizing;

use super::StoreError;
use crate::crypto::{SecretKey, random_bytes};

const MAGIC: &[u8; 8] = b"gckeys01";
const HEADER: u64 = 32;
const SLOT: u64 = 32;
/// Slots added when the file runs out.
const GROWTH: u32 = 64;
/// Free slots kept in reserve, so that a departure never has to grow the file (which
/// would make it take longer than a failed login).
const RESERVE: usize = 8;

/// The slot that belongs to nobody (see the module documentation).
pub const DUMMY_SLOT: u32 = 0;

/// The key file's path for a database at `db`: the database's file name plus `.keys`.
pub fn keys_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".keys");
    PathBuf::from(name)
}

/// The open key file.
pub struct ErasureKeys {
    path: PathBuf,
    id: [u8; 16],
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    slots: u32,
    free: BTreeSet<u32>,
}

impl std::fmt::Debug for ErasureKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasureKeys").finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Keys(format!("{}: {e}", path.display()))
}

fn offset(slot: u32) -> u64 {
    HEADER + u64::from(slot) * SLOT
}

impl ErasureKeys {
    /// Create a new key file (refusing to replace one).
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        let id: [u8; 16] = random_bytes();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io(path))?;
        let mut header = Vec::with_capacity(HEADER as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&id);
        header.resize(HEADER as usize, 0);
        file.write_all_at(&header, 0).map_err(io(path))?;
        let dummy = Zeroizing::new(random_bytes::<32>());
        file.write_all_at(dummy.as_ref(), offset(DUMMY_SLOT))
            .map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        let keys = Self {
            path: path.to_owned(),
            id,
            inner: Mutex::new(Inner {
                file,
                slots: 1,
                free: BTreeSet::new(),
            }),
        };
        keys.ensure_reserve()?;
        Ok(keys)
    }

    /// Open an existing key file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let (id, slots, free) = read_layout(&file, path)?;
        Ok(Self {
            path: path.to_owned(),
            id,
            inner: Mutex::new(Inner { file, slots, free }),
        })
    }

    /// The file's id (also stored in the database it belongs to).
    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key in `slot`; `None` when the slot is erased (or beyond the file).
    pub fn read(&self, slot: u32) -> Result<Option<SecretKey>, StoreError> {
        let inner = self.inner.lock();
        if slot >= inner.slots {
            return Ok(None);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        inner
            .file
            .read_exact_at(key.as_mut(), offset(slot))
            .map_err(io(&self.path))?;
        if key.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        Ok(Some(SecretKey::from_bytes(&key)))
    }

    /// Write a fresh random key into a free slot and sync it. The caller then commits the
    /// record that names the slot, or [`ErasureKeys::erase`]s it if that fails.
    pub fn allocate(&self) -> Result<(u32, SecretKey), StoreError> {
        let mut inner = self.inner.lock();
        if inner.free.is_empty() {
            grow(&mut inner, &self.path)?;
        }
        let slot = inner
            .free
            .pop_first()
            .ok_or_else(|| StoreError::Keys("no free slot after growing".into()))?;
        let key = Zeroizing::new(random_bytes::<32>());
        let written = inner
            .file
            .write_all_at(key.as_ref(), offset(slot))
            .and_then(|()| inner.file.sync_data());
        if let Err(e) = written {
            inner.free.insert(slot);
            return Err(io(&self.path)(e));
        }
        Ok((slot, SecretKey::from_bytes(&key)))
    }

    /// Overwrite `slot` with zeros in place and sync: every record sealed under its key is
    /// unreadable from now on.
    pub fn erase(&self, slot: u32) -> Result<(), StoreError> {
        if slot == DUMMY_SLOT {
            return Ok(());
        }
        let mut inner = self.inner.lock();
        if slot >= inner.slots {
            return Ok(());
        }
        inner
            .file
            .write_all_at(&[0u8; SLOT as usize], offset(slot))
            .and_then(|()| inner.file.sync_data())
            .map_err(io(&self.path))?;
        inner.free.insert(slot);
        Ok(())
    }

    /// Rewrite `slot` with the bytes it holds and sync: the work of [`ErasureKeys::erase`]
    /// or [`ErasureKeys::allocate`] without changing anything (failed logins do it, so that
    /// their time does not tell them from a destruction).
    pub fn rewrite(&self, slot: u32) -> Result<(), StoreError> {
        let inner = self.inner.lock();
        let slot = if slot < inner.slots { slot } else { DUMMY_SLOT };
        let mut bytes = Zeroizing::new([0u8; 32]);
        inner
            .file
            .read_exact_at(bytes.as_mut(), offset(slot))
            .and_then(|()| inner.file.write_all_at(bytes.as_ref(), offset(slot)))
            .and_then(|()| inner.file.sync_data())
            .map_err(io(&self.path))
    }

    /// Keep `RESERVE` free slots, growing the file if needed (outside any timed path).
    pub fn ensure_reserve(&self) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        while inner.free.len() < RESERVE {
            grow(&mut inner, &self.path)?;
        }
        Ok(())
    }

    /// Erase every slot that holds a key no record names (left by a crash between writing
    /// a key and committing its record, or between a departure's commit and its erasure).
    /// Returns how many were erased.
    pub fn collect_garbage(&self, named: &HashSet<u32>) -> Result<usize, StoreError> {
        let mut erased = 0;
        let slots = self.inner.lock().slots;
        for slot in 1..slots {
            if named.contains(&slot) {
                continue;
            }
            let in_use = !self.inner.lock().free.contains(&slot);
            if in_use {
                self.erase(slot)?;
                erased += 1;
            }
        }
        Ok(erased)
    }

    /// Size of the file in bytes.
    pub fn file_bytes(&self) -> u64 {
        offset(self.inner.lock().slots)
    }
}

/// Append `GROWTH` free slots.
fn grow(inner: &mut Inner, path: &Path) -> Result<(), StoreError> {
    let start = inner.slots;
    let zeros = vec![0u8; (GROWTH as usize) * (SLOT as usize)];
    inner
        .file
        .write_all_at(&zeros, offset(start))
        .and_then(|()| inner.file.sync_data())
        .map_err(io(path))?;
    inner.slots = start.saturating_add(GROWTH);
    inner.free.extend(start..inner.slots);
    Ok(())
}

/// Check the header; count the slots and find the free ones.
fn read_layout(file: &File, path: &Path) -> Result<([u8; 16], u32, BTreeSet<u32>), StoreError> {
    let len = file.metadata().map_err(io(path))?.len();
    let mut header = [0u8; HEADER as usize];
    if len < HEADER + SLOT || file.read_exact_at(&mut header, 0).is_err() {
        return Err(StoreError::Keys(format!(
            "{} is not a ghostcache key file (too short)",
            path.display()
        )));
    }
    let (Some(magic), Some(id)) = (header.get(..8), header.get(8..24)) else {
        return Err(StoreError::Keys("short header".into()));
    };
    if magic != MAGIC {
        return Err(StoreError::Keys(format!(
            "{} is not a ghostcache key file",
            path.display()
        )));
    }
    let id: [u8; 16] = id
        .try_into()
        .map_err(|_| StoreError::Keys("short header".into()))?;
    let slots = u32::try_from((len - HEADER) / SLOT)
        .map_err(|_| StoreError::Keys(format!("{} is too large", path.display())))?;
    let mut all = Zeroizing::new(vec![0u8; (u64::from(slots) * SLOT) as usize]);
    file.read_exact_at(&mut all, HEADER).map_err(io(path))?;
    let free = all
        .chunks_exact(SLOT as usize)
        .enumerate()
        .skip(1)
        .filter(|(_, slot)| slot.iter().all(|b| *b == 0))
        .filter_map(|(i, _)| u32::try_from(i).ok())
        .collect();
    Ok((id, slots, free))
}

/// Copy the key file at `source` to a new file at `dest` (mode 0600), keeping only the
/// keys of `named` slots (and the dummy): a backup's key file, consistent with the
/// database snapshot that names those slots.
pub fn copy_named(source: &Path, dest: &Path, named: &HashSet<u32>) -> Result<u64, StoreError> {
    let file = File::open(source).map_err(io(source))?;
    let (_, slots, _) = read_layout(&file, source)?;
    let len = offset(slots);
    let mut bytes = Zeroizing::new(vec![0u8; usize::try_from(len).unwrap_or(0)]);
    file.read_exact_at(&mut bytes, 0).map_err(io(source))?;
    for slot in 1..slots {
        if named.contains(&slot) {
            continue;
        }
        let start = usize::try_from(offset(slot)).unwrap_or(0);
        if let Some(s) = bytes.get_mut(start..start + SLOT as usize) {
            s.fill(0);
        }
    }
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(io(dest))?;
    out.write_all_at(&bytes, 0)
        .and_then(|()| out.sync_all())
        .map_err(io(dest))?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_read_and_erased_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let keys = ErasureKeys::create(&path).unwrap();
        let (a, key_a) = keys.allocate().unwrap();
        let (b, _) = keys.allocate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a, DUMMY_SLOT);
        assert_eq!(keys.read(a).unwrap().unwrap().expose(), key_a.expose());
        let size = std::fs::metadata(&path).unwrap().len();
        let raw = std::fs::read(&path).unwrap();
        assert!(raw.windows(32).any(|w| w == key_a.expose()));
        keys.rewrite(a).unwrap();
        assert_eq!(keys.read(a).unwrap().unwrap().expose(), key_a.expose());
        keys.erase(a).unwrap();
        assert!(keys.read(a).unwrap().is_none());
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(32).any(|w| w == key_a.expose()));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            size,
            "erased in place"
        );
        drop(keys);

        // Reopened: the erased slot is free again, the other one is not.
        let keys = ErasureKeys::open(&path).unwrap();
        assert!(keys.read(b).unwrap().is_some());
        let (c, _) = keys.allocate().unwrap();
        assert_eq!(c, a, "the lowest free slot is reused");
        // Garbage: c is named by nobody.
        assert_eq!(keys.collect_garbage(&HashSet::from([b])).unwrap(), 1);
        assert!(keys.read(c).unwrap().is_none());
        assert!(keys.read(DUMMY_SLOT).unwrap().is_some(), "the dummy stays");
    }

    #[test]
    fn the_file_grows_in_steps_and_keeps_a_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let keys = ErasureKeys::create(&path).unwrap();
        assert_eq!(keys.file_bytes(), offset(1 + GROWTH));
        for _ in 0..GROWTH {
            keys.allocate().unwrap();
        }
        keys.ensure_reserve().unwrap();
        assert_eq!(keys.file_bytes(), offset(1 + 2 * GROWTH));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), keys.file_bytes());
    }

    #[test]
    fn a_copy_keeps_only_the_named_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let keys = ErasureKeys::create(&path).unwrap();
        let (a, key_a) = keys.allocate().unwrap();
        let (_, key_b) = keys.allocate().unwrap();
        let copy = dir.path().join("copy");
        copy_named(&path, &copy, &HashSet::from([a])).unwrap();
        let copied = ErasureKeys::open(&copy).unwrap();
        assert_eq!(copied.id(), keys.id());
        assert_eq!(copied.read(a).unwrap().unwrap().expose(), key_a.expose());
        let raw = std::fs::read(&copy).unwrap();
        assert!(!raw.windows(32).any(|w| w == key_b.expose()));
        assert!(
            copy_named(&path, &copy, &HashSet::new()).is_err(),
            "never overwrites"
        );
    }

    #[test]
    fn a_file_that_is_not_a_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, [1u8; 100]).unwrap();
        assert!(ErasureKeys::open(&path).is_err());
        assert!(ErasureKeys::create(&path).is_err(), "never replaced");
    }
}
