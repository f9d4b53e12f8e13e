//! The real `ghostcache` binary as a child process, for what only a process shows:
//! start-up refusals, signals, crashes, backups from another process, the onion service.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ghostcache");

/// A running `ghostcache serve`.
pub struct Serve {
    child: Child,
    /// Process id of ghostcache itself (the child, or the child's child under strace).
    pub pid: u32,
    /// The plain-HTTP listener, when `--listen` was given.
    pub http: Option<SocketAddr>,
    /// The onion address, when the onion service was published.
    pub onion: Option<String>,
    pub started: Instant,
    stderr_path: PathBuf,
}

impl Serve {
    /// Start `ghostcache serve ARGS`, optionally under `strace -o TRACE`, and wait until it
    /// has printed every address it serves on.
    pub fn start(args: &[&str], stderr_path: &Path, strace: Option<&Path>) -> Self {
        Self::start_bin(BIN, args, stderr_path, strace)
    }

    /// [`Serve::start`] with another build of the binary (a benchmark's release build).
    pub fn start_bin(bin: &str, args: &[&str], stderr_path: &Path, strace: Option<&Path>) -> Self {
        let started = Instant::now();
        let stderr = std::fs::File::create(stderr_path).unwrap();
        let mut cmd = match strace {
            Some(trace) => {
                let mut c = Command::new("strace");
                c.args([
                    "-f",
                    "-qq",
                    "-e",
                    "trace=socket,connect,sendto,sendmsg,openat",
                    "-o",
                ])
                .arg(trace)
                .arg("--")
                .arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .arg("serve")
            .args(args)
            .env_remove("GHOSTCACHE_CONFIG")
            // TEST_GHOSTCACHE_LOG=info,tor_hsservice=debug looks inside arti when a test
            // over the private network fails.
            .env(
                "GHOSTCACHE_LOG",
                std::env::var("TEST_GHOSTCACHE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let wants_http = args.contains(&"--listen");
        let wants_onion = !args.contains(&"--no-tor");
        let (mut http, mut onion) = (None, None);
        while (wants_http && http.is_none()) || (wants_onion && onion.is_none()) {
            match rx.recv_timeout(Duration::from_secs(180)) {
                Ok(line) => {
                    if let Some(rest) =
                        line.strip_prefix("ghostcache: plain HTTP (not anonymous) at http://")
                    {
                        http = Some(rest.trim_end_matches('/').parse().unwrap());
                    }
                    if let Some(rest) =
                        line.strip_prefix("ghostcache: onion service published at http://")
                    {
                        onion = Some(rest.trim_end_matches('/').to_owned());
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(stderr_path).unwrap_or_default();
                    panic!("ghostcache did not come up ({e}):\n{log}");
                }
            }
        }
        let pid = if strace.is_some() {
            child_of(child.id()).expect("ghostcache under strace")
        } else {
            child.id()
        };
        Self {
            child,
            pid,
            http,
            onion,
            started,
            stderr_path: stderr_path.to_owned(),
        }
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.pid).unwrap()).unwrap();
        let _ = rustix::process::kill_process(pid, signal);
    }

    /// SIGTERM, as systemd stops it; returns its exit status (waiting up to 30 s).
    pub fn stop(mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ghostcache did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash or a power cut would stop it.
    pub fn kill(mut self) {
        self.signal(rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(rustix::process::Signal::KILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The first child process of `parent`.
fn child_of(parent: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let path = format!("/proc/{parent}/task/{parent}/children");
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        {
            return Some(pid);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `ghostcache ARGS` to completion.
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("GHOSTCACHE_CONFIG")
        .output()
        .unwrap()
}

/// A configuration of `ghostcache serve` on the private Tor network `net`, written to
/// `out/<name>`: its data in `out/data`, its master key in `out/master.key` (made the first
/// time), RSA keys of 2048 bits (fast to make) and no rate limit at the introduction
/// points (tests reconnect often); `server` and `tor` are more lines for those sections.
pub fn onion_config(
    net: &crate::tornet::TorNet,
    out: &Path,
    name: &str,
    server: &str,
    tor: &str,
) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let master = out.join("master.key");
    if !master.exists() {
        std::fs::write(&master, super::server::random_key_material()).unwrap();
        std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let path = out.join(name);
    let text = format!(
        "data_dir = \"{}\"\n[server]\n{server}[crypto]\nrsa_bits = 2048\n\
         [tor]\nmaster_key_file = \"{}\"\nintro_rate_per_sec = 0\n{tor}{}",
        out.join("data").display(),
        master.display(),
        net.ghostcache_network_toml()
    );
    std::fs::write(&path, text).unwrap();
    path
}
