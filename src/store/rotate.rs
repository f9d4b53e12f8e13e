//! Scheduled backups: `ghostcache backup --into DIR --keep N` writes a new backup named
//! after the time (`ghostcache-YYYY-MM-DDTHHMMSSZ.redb`, UTC) into DIR and then removes
//! the oldest backups so that N remain, each with its erasure key file (`….redb.keys`).
//! Only files with exactly that name shape (and their key files) are ever removed;
//! anything else in DIR is left alone.

use std::path::{Path, PathBuf};

use super::backup::{BackupError, BackupReport, backup};
use super::erasure::keys_path;
use crate::clock::UnixTime;

const PREFIX: &str = "ghostcache-";
const SUFFIX: &str = ".redb";

/// What a rotation did.
#[derive(Debug)]
pub struct RotateReport {
    pub written: PathBuf,
    pub backup: BackupReport,
    pub removed: Vec<PathBuf>,
}

/// Why a rotation failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{0}")]
    Backup(#[from] BackupError),
    #[error("backup directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Private(#[from] crate::hardening::HardeningError),
    #[error("--keep must be at least 1")]
    Keep,
}

/// `ghostcache-<date>T<hhmmss>Z` for a time.
fn stem(now: UnixTime) -> String {
    let secs = now.rem_euclid(86_400);
    format!(
        "{PREFIX}{}T{:02}{:02}{:02}Z",
        crate::chat::views::date_of_day(now.div_euclid(86_400)),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The order key of a backup's file name, or `None` when the name is not one of ours:
/// (timestamp, sequence number for several in one second).
fn order_key(name: &str) -> Option<(String, u32)> {
    let middle = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (stamp, seq) = match middle.rsplit_once("Z-") {
        Some((stamp, seq)) => (stamp, seq.parse::<u32>().ok().filter(|n| *n > 0)?),
        None => (middle.strip_suffix('Z')?, 0),
    };
    // YYYY-MM-DDTHHMMSS
    let ok = stamp.len() == 17
        && stamp.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            _ => c.is_ascii_digit(),
        });
    ok.then(|| (stamp.to_owned(), seq))
}

/// Back up `source` into `dir` (created 0700 if missing; refused if others can read it)
/// and keep the newest `keep` backups there.
pub fn backup_and_rotate(
    source: &Path,
    dir: &Path,
    keep: usize,
    now: UnixTime,
) -> Result<RotateReport, RotateError> {
    if keep == 0 {
        return Err(RotateError::Keep);
    }
    let io = |source| RotateError::Dir {
        path: dir.display().to_string(),
        source,
    };
    crate::hardening::create_private_dir(dir).map_err(io)?;
    crate::hardening::check_private_dir(dir)?;
    let base = stem(now);
    let mut target = dir.join(format!("{base}{SUFFIX}"));
    let mut n = 0u32;
    while target.exists() || keys_path(&target).exists() {
        n += 1;
        target = dir.join(format!("{base}-{n}{SUFFIX}"));
    }
    let report = backup(source, &target)?;

    let mut ours = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(key) = name.to_str().and_then(order_key) else {
            continue;
        };
        if entry.file_type().map_err(io)?.is_file() {
            ours.push((key, entry.path()));
        }
    }
    ours.sort_by(|a, b| b.0.cmp(&a.0));
    let mut removed = Vec::new();
    for (_, path) in ours.into_iter().skip(keep) {
        // The key file first: a backup without it opens nothing, one without the
        // database is useless anyway.
        match std::fs::remove_file(keys_path(&path)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        std::fs::remove_file(&path).map_err(io)?;
        removed.push(path);
    }
    Ok(RotateReport {
        written: target,
        backup: report,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_then_sequence_and_strangers_are_ignored() {
        assert_eq!(stem(0), "ghostcache-1970-01-01T000000Z");
        assert_eq!(stem(86_400 + 3661), "ghostcache-1970-01-02T010101Z");
        let a = order_key("ghostcache-2026-12-07T010203Z.redb").unwrap();
        let b = order_key("ghostcache-2026-12-07T010203Z-1.redb").unwrap();
        let c = order_key("ghostcache-2026-12-07T010204Z.redb").unwrap();
        assert!(a < b && b < c);
        for stranger in [
            "ghostcache.redb",
            "ghostcache-2026-12-07T010203Z.partial",
            "ghostcache-2026-12-07T010203Z-0.redb",
            "ghostcache-2026-12-07T010203Z-x.redb",
            "ghostcache-2026-12-07T0102Z.redb",
            "notes.txt",
            "ghostcache-../../x.redb",
        ] {
            assert_eq!(order_key(stranger), None, "{stranger}");
        }
    }
}
