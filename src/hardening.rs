//! In-process hardening applied at start: no core dumps, not dumpable (so other processes
//! of the same user cannot ptrace us or read /proc/<pid>/mem), and refusal to run with a
//! data directory or secret file that others can read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Why hardening refused to go on. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    #[error("cannot disable core dumps: {0}")]
    Core(String),
    #[error("cannot make the process non-dumpable: {0}")]
    Dumpable(String),
    #[error(
        "{path} is accessible to other users (mode {mode:o}); it holds private data. \
         Fix it with: chmod {fix:o} {path}"
    )]
    Permissions { path: String, mode: u32, fix: u32 },
    #[error("cannot inspect {path}: {source}")]
    Stat {
        path: String,
        source: std::io::Error,
    },
}

/// Disable core dumps and make the process non-dumpable. Under the systemd unit
/// (`LimitCORE=0`) the limit is already zero and `setrlimit` is not called, since the
/// unit's system-call filter forbids it.
pub fn harden_process() -> Result<(), HardeningError> {
    use rustix::process::{
        DumpableBehavior, Resource, Rlimit, getrlimit, set_dumpable_behavior, setrlimit,
    };
    let core = getrlimit(Resource::Core);
    if core.current != Some(0) || core.maximum != Some(0) {
        setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )
        .map_err(|e| HardeningError::Core(e.to_string()))?;
    }
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| HardeningError::Dumpable(e.to_string()))
}

/// Whether core dumps are off and the process is non-dumpable.
pub fn process_is_hardened() -> bool {
    use rustix::process::{DumpableBehavior, Resource, dumpable_behavior, getrlimit};
    let core = getrlimit(Resource::Core);
    core.current == Some(0)
        && core.maximum == Some(0)
        && matches!(dumpable_behavior(), Ok(DumpableBehavior::NotDumpable))
}

/// Refuse a directory that group or others can enter, read or write.
pub fn check_private_dir(path: &Path) -> Result<(), HardeningError> {
    check_mode(path, 0o077, 0o700)
}

/// Refuse a secret file that group or others can read or write.
pub fn check_private_file(path: &Path) -> Result<(), HardeningError> {
    check_mode(path, 0o077, 0o600)
}

fn check_mode(path: &Path, forbidden: u32, fix: u32) -> Result<(), HardeningError> {
    let meta = std::fs::metadata(path).map_err(|source| HardeningError::Stat {
        path: path.display().to_string(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(HardeningError::Permissions {
            path: path.display().to_string(),
            mode,
            fix,
        });
    }
    Ok(())
}

/// Create a directory readable by its owner only (and its parents as needed).
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_or_world_access_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = check_private_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("chmod 700"), "{e}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        check_private_dir(dir.path()).unwrap();

        let f = dir.path().join("key");
        std::fs::write(&f, b"k").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_private_file(&f).is_err());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        check_private_file(&f).unwrap();
    }

    #[test]
    fn private_dirs_are_created_0700() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        create_private_dir(&d).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
