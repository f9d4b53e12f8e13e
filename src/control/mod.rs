//! The control socket: how operator commands that change state (`member remove`,
//! `client-auth add|remove`, `invite`) reach a running server.
//!
//! The server opens the database as redb's single writer, so another process cannot
//! write to it while the service runs. Instead the server listens on a Unix socket,
//! `control.sock` in the data directory, and carries the command out itself, through the
//! same entry points a member's own actions use (`AppState::delete_member` for removal).
//! The socket is as private as the database: the data directory is 0700, the socket 0600,
//! and every connection's peer credentials are checked (the service's own user or root).
//!
//! When no server listens, the command opens the database itself and runs the very same
//! [`execute`] in-process. Either way the answer is the same [`Reply`].
//!
//! One JSON object per line: the client sends a [`Request`] and reads one [`Reply`].
//! Secrets never cross the socket: the CLI makes client key pairs and invitation codes
//! itself and sends only the public key or the code's hash.

pub mod commands;
pub mod members;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::accounts::Username;
use crate::app::AppState;
use crate::onion::ServiceHandle;
use crate::onion::client_auth::{self, ClientName};

/// File name of the socket inside the data directory.
pub const SOCKET_FILE: &str = "control.sock";

/// Longest request line accepted.
const MAX_REQUEST_BYTES: u64 = 16 * 1024;

/// How long one connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A command for the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    MemberList,
    MemberRemove {
        name: String,
    },
    ClientAuthAdd {
        name: String,
        /// `descriptor:x25519:<base32>`.
        public_key: String,
    },
    ClientAuthList,
    ClientAuthRemove {
        name: String,
    },
    InviteCreate {
        /// SHA-256 of the normalised code, hex.
        code_hash: String,
        uses: u32,
        days: u32,
    },
}

/// One member as `member list` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberRow {
    pub name: String,
    /// Day number (Unix time / 86400) of the last login.
    pub last_login_day: i64,
}

/// One authorized client as `client-auth list` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientRow {
    pub name: String,
    /// `descriptor:x25519:<base32>`.
    pub public_key: String,
    pub added_day: i64,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Members { members: Vec<MemberRow> },
    Clients { clients: Vec<ClientRow> },
    Done { message: String },
    Error { message: String },
}

fn error(message: impl std::fmt::Display) -> Reply {
    Reply::Error {
        message: message.to_string(),
    }
}

/// Carry out a request. `running` is the onion service of the server doing it (none when
/// the command runs in its own process, or the server runs without Tor).
pub async fn execute(
    state: &Arc<AppState>,
    onion: Option<&ServiceHandle>,
    serving: bool,
    request: Request,
) -> Reply {
    match request {
        Request::MemberList => match state.store.run(members::list).await {
            Ok(members) => Reply::Members { members },
            Err(e) => error(e),
        },
        Request::MemberRemove { name } => members::remove(state, &name).await,
        Request::ClientAuthAdd { name, public_key } => {
            let parsed = ClientName::parse(&name)
                .and_then(|n| client_auth::parse_public(&public_key).map(|k| (n, k)));
            let (name, key) = match parsed {
                Ok(v) => v,
                Err(e) => return error(e),
            };
            let now = state.clock.now();
            let done = format!("client {} is authorized", name.as_str());
            change_clients(state, onion, serving, done, move |s| {
                client_auth::add(s, &name, key, now)
            })
            .await
        }
        Request::ClientAuthList => match state.store.run(client_auth::list).await {
            Ok(list) => Reply::Clients {
                clients: list
                    .into_iter()
                    .map(|(name, r)| ClientRow {
                        name,
                        public_key: client_auth::format_public(&r.public_key),
                        added_day: r.added_day,
                    })
                    .collect(),
            },
            Err(e) => error(e),
        },
        Request::ClientAuthRemove { name } => {
            let name = match ClientName::parse(&name) {
                Ok(n) => n,
                Err(e) => return error(e),
            };
            let done = format!("client {} is no longer authorized", name.as_str());
            change_clients(state, onion, serving, done, move |s| {
                client_auth::remove(s, &name)
            })
            .await
        }
        Request::InviteCreate {
            code_hash,
            uses,
            days,
        } => crate::invites::create_by_operator(state, &code_hash, uses, days).await,
    }
}

/// Change the client list in the store; then hand the new list to the running onion
/// service and say what happens next.
async fn change_clients(
    state: &Arc<AppState>,
    onion: Option<&ServiceHandle>,
    serving: bool,
    done: String,
    change: impl FnOnce(&crate::store::Store) -> Result<(), client_auth::ClientAuthError>
    + Send
    + 'static,
) -> Reply {
    match state.store.run(move |s| Ok(change(s))).await {
        Ok(Ok(())) => apply_clients(state, onion, serving, done).await,
        Ok(Err(e)) => error(e),
        Err(e) => error(e),
    }
}

/// After a change to the client list: hand the new list to the running onion service and
/// say what happens next.
async fn apply_clients(
    state: &Arc<AppState>,
    onion: Option<&ServiceHandle>,
    serving: bool,
    done: String,
) -> Reply {
    let tor = &state.config.tor;
    let next = if !tor.restricted_discovery {
        "restricted discovery is off (tor.restricted_discovery = false): anyone with the \
         address can reach the service, and the list applies once it is turned on and the \
         service restarted"
            .to_owned()
    } else if let Some(handle) = onion {
        let clients = match state.store.run(client_auth::list).await {
            Ok(c) => c,
            Err(e) => return error(e),
        };
        if let Err(e) = handle.set_clients(tor, &clients) {
            return error(format_args!(
                "{done} in the database, but the running onion service refused the new list \
                 ({e}); it applies at the next restart"
            ));
        }
        tracing::info!(
            clients = clients.len(),
            "restricted discovery: client list changed"
        );
        reapply_clients_later(Arc::clone(state), handle.clone());
        "the running service publishes a new descriptor within about two minutes; sessions \
         and open connections are kept"
            .to_owned()
    } else if serving {
        "the server runs without Tor (--no-tor): the list applies to the onion service \
         when it runs"
            .to_owned()
    } else {
        "the service is not running: the list applies when it starts".to_owned()
    };
    Reply::Done {
        message: format!("{done}; {next}"),
    }
}

/// When the client list is handed to arti again after a change.
///
/// arti (0.47) can lose a change: when it arrives while a descriptor built before it is
/// still being uploaded, that upload's result marks the new descriptor as published too
/// (the TODO about #1098 in tor-hsservice's publisher), and the old list stays on the
/// directories until the next scheduled upload, an hour or two later. The list built
/// again is always a change (fresh throw-away keys, see [`client_auth::keys_for_arti`]),
/// so arti builds and uploads a new descriptor. The first time comes after any upload on
/// a working network has ended; the last one after arti's limit on any upload (five
/// minutes), so the current list is on the directories by then whatever happened.
const REAPPLY_AFTER: [Duration; 2] = [Duration::from_secs(90), Duration::from_secs(330)];

/// Hand arti the client list as it is in the database again, at each of
/// [`REAPPLY_AFTER`]. A task ends early if the list cannot be read or is refused (the
/// command that caused the change already said so, or a later one will).
fn reapply_clients_later(state: Arc<AppState>, handle: ServiceHandle) {
    tokio::spawn(async move {
        let mut waited = Duration::ZERO;
        for at in REAPPLY_AFTER {
            tokio::time::sleep(at - waited).await;
            waited = at;
            let Ok(clients) = state.store.run(client_auth::list).await else {
                return;
            };
            if let Err(e) = handle.set_clients(&state.config.tor, &clients) {
                tracing::warn!(error = %e, "restricted discovery: handing the list again failed");
                return;
            }
            tracing::debug!("restricted discovery: client list handed to arti again");
        }
    });
}

/// Look up a member by the name an operator typed. Names that cannot exist get the
/// username rules' own message.
pub fn parse_member_name(raw: &str) -> Result<Username, String> {
    Username::parse(raw).map_err(|e| {
        let shown: String = raw.chars().take(40).collect();
        format!("{shown:?} is not a username: {e}")
    })
}

/// Path of the control socket for a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "the control socket path {0} is longer than a Unix socket address allows (107 bytes); \
         use a shorter data_dir"
    )]
    PathTooLong(String),
    #[error("cannot open the control socket {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Bind the socket, owner-only. The caller holds the database (redb's lock), so no other
/// server uses this directory and a socket file left by a crash can be replaced.
pub fn bind(data_dir: &Path) -> Result<tokio::net::UnixListener, ControlError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    let shown = path.display().to_string();
    if path.as_os_str().as_bytes().len() > 107 {
        return Err(ControlError::PathTooLong(shown));
    }
    let io = |source| ControlError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    // The directory is 0700 (checked at start), so nobody else can reach the socket
    // between bind and chmod.
    let listener = tokio::net::UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serve the socket until `shutdown`, one connection at a time (operator commands are
/// rare; this keeps them from racing each other).
pub fn spawn(
    listener: tokio::net::UnixListener,
    state: Arc<AppState>,
    onion: Option<ServiceHandle>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            let Ok((stream, _)) = accepted else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            serve_one(stream, &state, onion.as_ref()).await;
        }
        let path = socket_path(&state.config.resolved_data_dir());
        let _ = std::fs::remove_file(path);
    })
}

/// Whether `uid` may use the socket: the user the service runs as, or root.
fn peer_allowed(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

async fn serve_one(
    stream: tokio::net::UnixStream,
    state: &Arc<AppState>,
    onion: Option<&ServiceHandle>,
) {
    let (read, mut write) = stream.into_split();
    let peer = read.as_ref().peer_cred().map(|c| c.uid());
    let reply = match peer {
        Ok(uid) if peer_allowed(uid) => {
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST_BYTES));
            match tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await {
                Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim_end()) {
                    Ok(request) => {
                        tracing::info!(op = op_name(&request), "control command");
                        execute(state, onion, true, request).await
                    }
                    Err(_) => error("malformed request"),
                },
                Ok(Err(_)) => error("the request is not UTF-8 text"),
                Err(_) => error("no request within 10 seconds"),
            }
        }
        Ok(uid) => {
            tracing::warn!(
                uid,
                "control socket: refused a connection from another user"
            );
            error("refused: the control socket answers only the user the service runs as, and root")
        }
        Err(_) => error("refused: cannot read the caller's credentials"),
    };
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ = tokio::time::timeout(READ_TIMEOUT, write.write_all(text.as_bytes())).await;
    }
}

/// The operation's name, for the log (never its arguments).
fn op_name(request: &Request) -> &'static str {
    match request {
        Request::MemberList => "member list",
        Request::MemberRemove { .. } => "member remove",
        Request::ClientAuthAdd { .. } => "client-auth add",
        Request::ClientAuthList => "client-auth list",
        Request::ClientAuthRemove { .. } => "client-auth remove",
        Request::InviteCreate { .. } => "invite",
    }
}

/// Send a request to the server of `data_dir`. `Ok(None)` when no server listens there
/// (no socket, or one left by a stopped server).
pub fn send(data_dir: &Path, request: &Request) -> Result<Option<Reply>, String> {
    use std::io::{BufRead, Read, Write};
    let path = socket_path(data_dir);
    let stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(format!(
                "cannot reach the server at {}: {e}",
                path.display()
            ));
        }
    };
    let broken =
        |e: std::io::Error| format!("the server at {} stopped answering: {e}", path.display());
    // Deleting a member with many files can take a while; nothing waits forever.
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(broken)?;
    let mut text = serde_json::to_string(request).map_err(|e| e.to_string())?;
    text.push('\n');
    (&stream).write_all(text.as_bytes()).map_err(broken)?;
    let mut line = String::new();
    std::io::BufReader::new(Read::take(&stream, 16 * 1024 * 1024))
        .read_line(&mut line)
        .map_err(broken)?;
    serde_json::from_str(line.trim_end())
        .map(Some)
        .map_err(|_| {
            format!(
                "the server at {} gave an answer this version does not understand",
                path.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_fields_are_refused() {
        let r = Request::MemberRemove {
            name: "alice".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"op":"member_remove","name":"alice"}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        assert!(
            serde_json::from_str::<Request>(r#"{"op":"member_remove","name":"a","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"drop_tables"}"#).is_err());
    }

    #[test]
    fn only_the_same_user_or_root_may_connect() {
        assert!(peer_allowed(rustix::process::geteuid().as_raw()));
        assert!(peer_allowed(0));
        let other = rustix::process::geteuid().as_raw().wrapping_add(1).max(1);
        assert!(!peer_allowed(other) || other == 0);
    }
}
