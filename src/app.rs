//! Application state and the lifecycle of the server: open the store, start the front
//! doors and background tasks, and stop them cleanly (zeroizing every session key).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::accounts::gate::LoginGate;
use crate::chat::hub::Hub;
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::KdfParams;
use crate::crypto::master::MasterSecret;
use crate::crypto::rsa_keys::KeyPool;
use crate::limits::Limits;
use crate::store::cascade::Cascade;
use crate::store::{DB_FILE, Id, Store, StoreError};
use crate::web::error::AppError;
use crate::web::session::Sessions;

/// Shared state of a running server. Passed to every handler; never a global.
pub struct AppState {
    pub config: Config,
    pub clock: Clock,
    pub store: Store,
    pub sessions: Sessions,
    pub limits: Limits,
    pub keypool: Arc<KeyPool>,
    /// Sequence numbers and group commit of chat messages.
    pub commits: crate::chat::commit::Committer,
    /// Live chat streams and online status.
    pub hub: Arc<Hub>,
    /// Password cost, pepper, inactivity limit and deletion cascade of accounts.
    pub accounts: Arc<crate::accounts::Policy>,
    /// The per-name login gate.
    pub gate: LoginGate,
    /// Bounds the argon2id computations running at once (each holds its memory cost).
    hash_permits: Semaphore,
    /// File uploads streaming right now (the sweeper leaves their rows alone).
    pub uploads: crate::files::LiveUploads,
    /// Progress of the onion service (empty with --no-tor).
    pub onion_status: Arc<Mutex<crate::onion::OnionStatus>>,
    /// When this process started serving (monotonic), for `status`.
    pub started: std::time::Instant,
    /// The installation's DSA domain parameters, once loaded (`chat::signing`).
    pub dsa_params: tokio::sync::OnceCell<Arc<crate::crypto::dsa_keys::DsaParams>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Errors that stop the server from starting. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("onion service: {0}")]
    Onion(#[from] crate::onion::OnionError),
    #[error("{0}")]
    MasterKey(#[from] crate::crypto::master::MasterKeyError),
    #[error("{0}")]
    Pepper(#[from] crate::accounts::departure::PepperError),
}

/// Every feature's eraser, in the order a member's deletion runs them. A feature that
/// keeps rows about members registers its eraser here (see `store::cascade`).
pub fn member_cascade() -> Cascade {
    Cascade::new()
        .with("files", crate::files::erase_member_in)
        .with("connections", crate::connections::erase_member_in)
        .with("groups", crate::groups::erase_member_in)
        .with("signature settings", crate::chat::signing::erase_member_in)
        .with("invitation codes", crate::invites::erase_member_in)
        .with("end-to-end", crate::e2e::store::erase_member_in)
}

/// Knobs that only tests turn. Nothing in the configuration file or CLI reaches them.
#[derive(Clone, Debug)]
pub struct StartOptions {
    pub clock: Clock,
    /// Use a trivially cheap argon2id cost (64 KiB, 1 pass) so that tests run fast.
    /// Never reachable from the configuration file, environment or command line.
    pub danger_fast_kdf: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            clock: Clock::system(),
            danger_fast_kdf: false,
        }
    }
}

impl AppState {
    /// Run a password-hashing job on the blocking pool, at most `max_concurrent_hashes`
    /// at a time. Waiting longer than 20 s for a turn answers "busy".
    pub async fn hash_job<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = tokio::time::timeout(Duration::from_secs(20), self.hash_permits.acquire())
            .await
            .map_err(|_| AppError::Busy)?
            .map_err(|_| AppError::Busy)?;
        let result = self.store.run(f).await;
        drop(permit);
        Ok(result?)
    }

    /// After a destruction (the decoy is in place): end the member's sessions at once, and
    /// erase their data in the background.
    pub fn destroyed(self: &Arc<Self>, id: Id) {
        self.sessions.remove_user(&id);
        let state = Arc::clone(self);
        tokio::spawn(async move {
            let policy = Arc::clone(&state.accounts);
            let done = state
                .store
                .run(move |store| crate::accounts::finish_departure(store, &policy, &id))
                .await;
            if let Err(e) = done {
                tracing::error!(error = %e, "erasing a departed account failed; it is retried at the next start");
            }
            state.forget_member(&id);
        });
    }

    /// Delete a member now, as their own deletion does: a decoy keeps the name, and
    /// everything of theirs is erased (see `accounts::departure`). The one entry point for
    /// every deletion a person asks for (the member, the operator).
    pub async fn delete_member(&self, id: Id) -> Result<(), StoreError> {
        self.sessions.remove_user(&id);
        let policy = Arc::clone(&self.accounts);
        self.store
            .run(move |store| crate::accounts::depart(store, &policy, &id).map(|_| ()))
            .await?;
        self.forget_member(&id);
        Ok(())
    }

    /// Drop a deleted member's in-memory state (sessions and their keys).
    pub fn forget_member(&self, id: &Id) {
        self.sessions.remove_user(id);
        self.hub.forget(id);
    }
}

/// A started server.
pub struct RunningApp {
    pub state: Arc<AppState>,
    /// Where the plain-HTTP listener is bound, if it is on.
    pub listen_addr: Option<SocketAddr>,
    /// The onion service, unless --no-tor.
    pub onion: Option<crate::onion::Onion>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningApp")
            .field("listen_addr", &self.listen_addr)
            .finish()
    }
}

/// Open the database and build the state (no listeners yet): check the master key against
/// the accounts (and pepper them if it is new), and finish departures a crash interrupted.
pub fn build_state(
    config: Config,
    options: &StartOptions,
    master: Option<&MasterSecret>,
) -> Result<Arc<AppState>, StartupError> {
    let dir = config.resolved_data_dir();
    crate::hardening::create_private_dir(&dir).map_err(|source| StartupError::DataDir {
        path: dir.clone(),
        source,
    })?;
    crate::hardening::check_private_dir(&dir).map_err(|e| StartupError::Config(e.to_string()))?;
    let path = dir.join(DB_FILE);
    let store = Store::open(&path).map_err(|source| StartupError::Store {
        path: path.clone(),
        source,
    })?;
    let kdf = if options.danger_fast_kdf {
        KdfParams::DANGER_FAST
    } else {
        KdfParams {
            memory_kib: config.crypto.argon2_memory_kib,
            iterations: config.crypto.argon2_iterations,
            parallelism: config.crypto.argon2_parallelism,
        }
    };
    let store_error = |source| StartupError::Store {
        path: path.clone(),
        source,
    };
    let pepper = master.map(MasterSecret::pepper);
    let peppered = crate::accounts::departure::prepare_pepper(&store, pepper.as_ref())
        .map_err(store_error)??;
    if peppered > 0 {
        tracing::info!(
            accounts = peppered,
            "accounts moved under the master key's pepper"
        );
    }
    if pepper.is_none() {
        tracing::warn!(
            "no master key configured (master_key_credential or master_key_file): a copy of \
             the database alone can test guessed passwords, and the onion identity key is \
             stored unsealed"
        );
    }
    let accounts = crate::accounts::Policy::new(
        kdf,
        pepper,
        config.accounts.inactivity_days,
        member_cascade(),
    )
    .map_err(store_error)?;
    let finished = crate::accounts::finish_departures(&store, &accounts).map_err(store_error)?;
    if !finished.is_empty() {
        tracing::info!(
            count = finished.len(),
            "finished erasing departed accounts after an interruption"
        );
    }
    let unopenable = crate::accounts::departure::count_unopenable(&store).map_err(store_error)?;
    if unopenable > 0 {
        tracing::warn!(
            count = unopenable,
            "accounts whose erasure key is missing cannot log in (was the key file restored \
             from the same backup as the database?)"
        );
    }
    Ok(Arc::new(AppState {
        sessions: Sessions::new(
            config.accounts.session_idle_timeout_secs,
            config.accounts.session_lifetime_secs,
        ),
        limits: Limits::new(&config.rate_limits, config.chat.max_group_members),
        gate: LoginGate::new(config.rate_limits.login_per_username_per_minute),
        keypool: KeyPool::new(config.crypto.rsa_bits, config.crypto.rsa_pool_size),
        hub: Hub::new(options.clock.clone(), &config.chat),
        hash_permits: Semaphore::new(config.crypto.max_concurrent_hashes),
        accounts: Arc::new(accounts),
        clock: options.clock.clone(),
        commits: crate::chat::commit::Committer::new(store.clone()),
        store,
        config,
        onion_status: Arc::new(Mutex::new(crate::onion::OnionStatus::default())),
        started: std::time::Instant::now(),
        uploads: crate::files::LiveUploads::default(),
        dsa_params: tokio::sync::OnceCell::new(),
    }))
}

/// Start the server: state, listener, sweeper.
pub async fn start(config: Config, options: StartOptions) -> Result<RunningApp, StartupError> {
    let master = MasterSecret::load(&config)?;
    let state = build_state(config, &options, master.as_ref())?;
    let onion_key = master.as_ref().map(MasterSecret::onion_key);
    drop(master);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    state.keypool.refill();

    let mut listen_addr = None;
    if let Some(addr) = state.config.server.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Listen { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| StartupError::Listen { addr, source })?;
        listen_addr = Some(bound);
        tracing::info!(%bound, "plain-HTTP listener ready");
        tasks.push(tokio::spawn(crate::web::server::serve_tcp(
            listener,
            Arc::clone(&state),
            shutdown_rx.clone(),
        )));
    }
    tasks.push(crate::sweeper::spawn(
        Arc::clone(&state),
        shutdown_rx.clone(),
    ));

    let onion = if state.config.server.no_tor {
        tracing::warn!("running without Tor (--no-tor): this server is not anonymous");
        None
    } else {
        Some(start_onion(&state, onion_key, shutdown_rx.clone()).await?)
    };
    // Operator commands (`member remove`, `client-auth`, `invite`) reach the server here.
    let control = crate::control::bind(&state.config.resolved_data_dir())
        .map_err(|e| StartupError::Config(e.to_string()))?;
    tasks.push(crate::control::spawn(
        control,
        Arc::clone(&state),
        onion.as_ref().map(crate::onion::Onion::handle),
        shutdown_rx,
    ));
    Ok(RunningApp {
        state,
        listen_addr,
        onion,
        shutdown,
        tasks,
    })
}

/// Load (or create) the identity key and launch the onion service.
async fn start_onion(
    state: &Arc<AppState>,
    master: Option<crate::crypto::SecretKey>,
    shutdown: watch::Receiver<bool>,
) -> Result<crate::onion::Onion, StartupError> {
    use crate::onion::{OnionError, key};
    // arti's TLS (rustls) needs a process-wide crypto provider; a second install in the
    // same process (tests) is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let identity = state
        .store
        .run(move |store| Ok(key::load_or_create(store, master.as_ref())))
        .await
        .map_err(|e| OnionError::Key(key::KeyError::Store(e)))?
        .map_err(OnionError::from)?;
    let onion = crate::onion::launch(
        Arc::clone(state),
        identity,
        Arc::clone(&state.onion_status),
        shutdown,
    )
    .await?;
    Ok(onion)
}

impl RunningApp {
    /// Stop accepting, let open requests finish (up to 5 s), end every session and
    /// zeroize the key pool.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        // End live streams now, or graceful shutdown would wait for them.
        self.state.hub.close();
        drop(self.onion.take());
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.state.sessions.clear();
        self.state.keypool.close();
        self.state.commits.close();
    }
}

/// Run until SIGINT or SIGTERM, telling systemd when we serve and when we stop.
#[allow(
    clippy::print_stdout,
    reason = "the operator is told the onion address once"
)]
pub async fn run(config: Config) -> Result<(), StartupError> {
    let started_at = Clock::system().now();
    let app = start(config, StartOptions::default()).await?;
    if let Some(onion) = &app.onion {
        println!(
            "ghostcache: onion service published at http://{}/",
            onion.address
        );
    }
    if let Some(addr) = app.listen_addr {
        println!("ghostcache: plain HTTP (not anonymous) at http://{addr}/");
    }
    crate::status::write_runtime(&app.state, started_at);
    crate::notify::ready();
    let status_state = Arc::clone(&app.state);
    let status_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            crate::status::write_runtime(&status_state, started_at);
        }
    });
    wait_for_signal().await;
    tracing::info!("shutting down");
    crate::notify::stopping();
    status_task.abort();
    crate::status::clear_runtime(&app.state);
    app.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let ctrl_c = tokio::signal::ctrl_c();
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = ctrl_c => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
