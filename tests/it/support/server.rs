use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ghostcache::app::{self, AppState, RunningApp, StartOptions};
use ghostcache::clock::Clock;
use ghostcache::config::Config;

use super::Client;

/// A server running inside the test's runtime, on its own temporary data directory.
pub struct TestServer {
    app: Option<RunningApp>,
    pub addr: SocketAddr,
    pub clock: Clock,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with test defaults (fast argon2id, 2048-bit RSA, plain-HTTP door).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with test defaults changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(private_tempdir(), tweak).await
    }

    /// A server on an existing data directory (to test restarts).
    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_at(dir, Clock::system(), tweak).await
    }

    /// A server on an existing data directory whose clock is `clock` from the start (the
    /// sweeper's first pass at start-up already reads it).
    pub async fn start_at(
        dir: tempfile::TempDir,
        clock: Clock,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        // Server errors (with their request ids) show in the output of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_test_writer()
            .try_init();
        let mut config = test_config(dir.path().to_path_buf());
        tweak(&mut config);
        let options = StartOptions {
            clock: clock.clone(),
            danger_fast_kdf: true,
        };
        let app = app::start(config, options).await.unwrap();
        let addr = app.listen_addr.unwrap();
        Self {
            app: Some(app),
            addr,
            clock,
            dir,
        }
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.app.as_ref().unwrap().state
    }

    /// A fresh browser.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// Stop the server and keep its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        // Give the blocking pool a moment to drop its handles to the database.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.dir
    }

    /// Stop the server and compact its file, as the operator's `ghostcache compact` does
    /// (what was deleted is then nowhere in it). Returns the directory and the file's bytes.
    pub async fn stop_and_compact(self) -> (tempfile::TempDir, Vec<u8>) {
        let dir = self.stop().await;
        let db = dir.path().join(ghostcache::store::DB_FILE);
        // The stopped server's last tasks may hold the file for a moment longer.
        let mut compacted = ghostcache::store::compact(&db);
        for _ in 0..100 {
            if !matches!(compacted, Err(ghostcache::store::StoreError::Locked)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            compacted = ghostcache::store::compact(&db);
        }
        compacted.unwrap();
        let bytes = std::fs::read(&db).unwrap();
        (dir, bytes)
    }
}

/// The configuration every in-process test starts from.
pub fn test_config(data_dir: PathBuf) -> Config {
    let mut c = Config {
        data_dir: Some(data_dir),
        ..Config::default()
    };
    c.server.listen = Some("127.0.0.1:0".parse().unwrap());
    c.server.no_tor = true;
    c.crypto.rsa_bits = 2048;
    c.crypto.rsa_pool_size = 2;
    c.rate_limits.login_per_username_per_minute = 1000;
    c.rate_limits.register_per_minute = 1000;
    c.rate_limits.uploads_per_member_per_minute = 1000;
    c
}

/// A temporary directory only its owner can enter (the server refuses anything wider).
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// 32 random bytes, e.g. for a master key file.
pub fn random_key_material() -> [u8; 32] {
    ghostcache::crypto::random_bytes::<32>()
}
