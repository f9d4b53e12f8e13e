//! Operations status without names: what `ghostcache status` prints.
//!
//! The running server writes a small `status.json` beside the database (process id,
//! start time, Tor bootstrap state) when it starts, when Tor's state changes and every
//! minute; `ghostcache status` combines it with counts read from a read-only snapshot of
//! the database. Neither holds a username, address or anything else about members.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::app::AppState;

/// File name of the runtime status, in the data directory.
pub const STATUS_FILE: &str = "status.json";

/// What the server reports about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeStatus {
    pub pid: u32,
    /// Unix time the server started.
    pub started_at: i64,
    /// "disabled (--no-tor)", or arti's last bootstrap line.
    pub tor_bootstrap: String,
    /// Whether the onion service is launched, and its state.
    pub onion_service: String,
}

/// Write the runtime status (atomically: temp file, then rename).
pub fn write_runtime(state: &AppState, started_at: i64) {
    let tor = state.onion_status.lock().clone();
    let status = RuntimeStatus {
        pid: std::process::id(),
        started_at,
        tor_bootstrap: if state.config.server.no_tor {
            "disabled (--no-tor)".into()
        } else if tor.bootstrap.is_empty() {
            "starting".into()
        } else {
            tor.bootstrap
        },
        onion_service: if state.config.server.no_tor {
            "none".into()
        } else if tor.launched {
            format!(
                "launched ({})",
                if tor.service_state.is_empty() {
                    "starting"
                } else {
                    &tor.service_state
                }
            )
        } else {
            "not launched yet".into()
        },
    };
    let dir = state.config.resolved_data_dir();
    let tmp = dir.join(format!("{STATUS_FILE}.tmp"));
    let Ok(json) = serde_json::to_vec_pretty(&status) else {
        return;
    };
    if std::fs::write(&tmp, json).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(STATUS_FILE));
    }
}

/// Remove the runtime status at shutdown.
pub fn clear_runtime(state: &AppState) {
    let _ = std::fs::remove_file(state.config.resolved_data_dir().join(STATUS_FILE));
}

/// Read the runtime status, if a server wrote one and that process is still alive.
pub fn read_runtime(data_dir: &Path) -> Option<RuntimeStatus> {
    let bytes = std::fs::read(data_dir.join(STATUS_FILE)).ok()?;
    let status: RuntimeStatus = serde_json::from_slice(&bytes).ok()?;
    Path::new(&format!("/proc/{}", status.pid))
        .exists()
        .then_some(status)
}

/// Counts from a read-only snapshot of the database.
#[derive(Debug, Clone)]
pub struct Counts {
    /// (what, how many), e.g. ("members", 12).
    pub rows: Vec<(&'static str, u64)>,
    pub file_bytes: u64,
}

/// Count members (and other objects) in the database at `path`.
pub fn counts(path: &Path) -> Result<Counts, crate::store::StoreError> {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let db = crate::store::open_read_only(path)?;
    let txn = db.begin_read()?;
    let rows = vec![
        (
            "members",
            txn.open_table(crate::store::tables::USERS)?.len()?,
        ),
        ("files", txn.open_table(crate::store::tables::FILES)?.len()?),
        (
            "file chunks",
            txn.open_table(crate::store::tables::FILE_CHUNKS)?.len()?,
        ),
    ];
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(Counts { rows, file_bytes })
}
