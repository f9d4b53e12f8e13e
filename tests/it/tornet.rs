//! A private Tor network on loopback, built from C `tor` processes.
//!
//! std only: no crates. 3 directory authorities, N relays (the first two are exits
//! to 127.0.0.0/8), and one C tor client with a SOCKS port and a control port.
//! Everything binds to 127.0.0.1. Every tor is killed by PID on `Drop`, and every
//! torrc carries `__OwningControllerProcess <our pid>` so that tor also exits by
//! itself if this process dies without unwinding (SIGKILL, abort).
//!
//! Voting interval: see [`VOTING_INTERVAL_SECS`].

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Voting interval of the authorities, in seconds (also the initial one).
///
/// C tor on a `TestingTorNetwork` makes the onion-service time period as long as one
/// shared-random protocol run, 24 voting rounds: 24 × 30 s = 720 s = 12 min, and offsets
/// period starts by half a run (12 × 30 s = 6 min). arti computes the same offset from
/// the consensus, and gets the length from the `hsdir_interval` net-param override.
/// 30 s keeps the first full consensus under ~1 min while giving a 12-minute period:
/// one prototype run (arti launch → last request, ≈ 1–3 min) fits in one period, and
/// [`TorNet::secs_until_time_period_change`] lets a caller wait out a boundary first.
/// 30 is a multiple of 5, so 24 × V / 60 is a whole number of minutes (C tor truncates).
pub const VOTING_INTERVAL_SECS: u64 = 30;
const VOTE_DELAY_SECS: u64 = 4;
const DIST_DELAY_SECS: u64 = 4;

/// Number of non-authority relays by default; the first two are exits.
pub const DEFAULT_RELAYS: usize = 4;
const N_AUTHORITIES: usize = 3;
const N_EXITS: usize = 2;

/// How long `start` waits for the client to bootstrap and see every node as HSDir.
const READY_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Authority,
    Exit,
    Relay,
    Client,
}

/// One tor process of the network.
#[derive(Debug, Clone)]
pub struct Node {
    pub nickname: String,
    pub role: Role,
    pub data_dir: PathBuf,
    /// 0 for the client.
    pub or_port: u16,
    /// 0 for the client.
    pub dir_port: u16,
    /// RSA identity fingerprint, 40 upper-case hex digits (empty for the client).
    pub rsa_fingerprint: String,
    /// ed25519 identity, unpadded base64 (empty for the client).
    pub ed25519_identity: String,
    /// v3 authority identity (authority_certificate fingerprint), authorities only.
    pub v3ident: Option<String>,
}

/// What arti needs to know about a fallback directory cache.
#[derive(Debug, Clone)]
pub struct FallbackInfo {
    pub rsa_fingerprint: String,
    pub ed25519_identity: String,
    pub or_addr: SocketAddr,
}

pub struct TorNet {
    base: PathBuf,
    nodes: Vec<Node>,
    socks_port: u16,
    control_port: u16,
    /// (nickname, child) of every tor we started.
    children: Vec<(String, Child)>,
    /// How long `start` took.
    pub ready_after: Duration,
    /// When each readiness stage was first reached, from the start of `start`:
    /// client bootstrapped 100 %, all relays HSDir in its consensus, all caches serve.
    pub stages: Vec<(&'static str, Duration)>,
    /// Nicknames of the caches that served a complete directory when we became ready.
    ready_caches: Vec<String>,
}

impl TorNet {
    /// Start a network with [`DEFAULT_RELAYS`] relays.
    pub fn start(base_dir: &Path) -> io::Result<TorNet> {
        Self::start_with(base_dir, DEFAULT_RELAYS)
    }

    /// Start a network under `base_dir` (created; must be empty or absent) and wait
    /// until the C tor client is bootstrapped and its consensus lists every relay and
    /// authority with the HSDir flag.
    pub fn start_with(base_dir: &Path, n_relays: usize) -> io::Result<TorNet> {
        let t0 = Instant::now();
        assert!(n_relays >= N_EXITS);
        fs::create_dir_all(base_dir)?;
        if fs::read_dir(base_dir)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not empty", base_dir.display()),
            ));
        }
        let base = base_dir.canonicalize()?;
        let defaults = base.join("torrc-defaults-empty");
        fs::write(&defaults, "")?;

        // Ports: hold all listeners at once so that they are distinct, then release.
        let n_nodes = N_AUTHORITIES + n_relays;
        let ports = free_ports(2 * n_nodes + 2)?;
        let mut ports = ports.into_iter();

        let mut nodes = Vec::new();
        for i in 0..n_nodes {
            let (role, nickname) = if i < N_AUTHORITIES {
                (Role::Authority, format!("auth{i}"))
            } else if i < N_AUTHORITIES + N_EXITS {
                (Role::Exit, format!("exit{}", i - N_AUTHORITIES))
            } else {
                (Role::Relay, format!("relay{}", i - N_AUTHORITIES))
            };
            let data_dir = base.join(&nickname);
            make_private_dir(&data_dir)?;
            nodes.push(Node {
                nickname,
                role,
                data_dir,
                or_port: ports.next().unwrap(),
                dir_port: ports.next().unwrap(),
                rsa_fingerprint: String::new(),
                ed25519_identity: String::new(),
                v3ident: None,
            });
        }

        // Keys. Authority certificates first (they need the DirPort), then identities.
        for n in nodes.iter_mut() {
            if n.role == Role::Authority {
                n.v3ident = Some(gen_authority_cert(n)?);
            }
            let (rsa, ed) = list_fingerprint(n)?;
            n.rsa_fingerprint = rsa;
            n.ed25519_identity = ed;
        }

        let socks_port = ports.next().unwrap();
        let control_port = ports.next().unwrap();
        let client_dir = base.join("client");
        make_private_dir(&client_dir)?;
        let client = Node {
            nickname: "client".into(),
            role: Role::Client,
            data_dir: client_dir,
            or_port: 0,
            dir_port: 0,
            rsa_fingerprint: String::new(),
            ed25519_identity: String::new(),
            v3ident: None,
        };

        let common = common_torrc(&nodes);
        let mut net = TorNet {
            base: base.clone(),
            nodes,
            socks_port,
            control_port,
            children: Vec::new(),
            ready_after: Duration::ZERO,
            stages: Vec::new(),
            ready_caches: Vec::new(),
        };
        // From here on, `net` owns the children: an error return drops it and kills them.
        for n in net.nodes.clone().iter().chain(std::iter::once(&client)) {
            let torrc = n.data_dir.join("torrc");
            let mut text = common.clone();
            text.push_str(&node_torrc(n, socks_port, control_port));
            fs::write(&torrc, text)?;
            let out = fs::File::create(n.data_dir.join("stdout.log"))?;
            let child = Command::new("tor")
                .arg("--defaults-torrc")
                .arg(&defaults)
                .arg("-f")
                .arg(&torrc)
                .stdin(Stdio::null())
                .stdout(Stdio::from(out.try_clone()?))
                .stderr(Stdio::from(out))
                .spawn()?;
            net.children.push((n.nickname.clone(), child));
        }
        net.nodes.push(client);

        net.wait_ready(t0, t0 + READY_TIMEOUT)?;
        net.ready_after = t0.elapsed();
        Ok(net)
    }

    fn wait_ready(&mut self, t0: Instant, deadline: Instant) -> io::Result<()> {
        const STAGES: [&str; 3] = [
            "client bootstrapped",
            "all relays HSDir",
            "authorities serve",
        ];
        let want_hsdirs = self.nodes.iter().filter(|n| n.role != Role::Client).count();
        let mut last_err = String::new();
        loop {
            self.check_alive()?;
            match self.probe_ready(want_hsdirs) {
                Ok(stage) => {
                    while self.stages.len() < stage {
                        self.stages.push((STAGES[self.stages.len()], t0.elapsed()));
                    }
                    if stage == STAGES.len() {
                        return Ok(());
                    }
                }
                Err(e) => last_err = e.to_string(),
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "tor network not ready in time (last error: {last_err}); logs under {}",
                        self.base.display()
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(1000));
        }
    }

    /// Ready when: the C tor client is bootstrapped to 100 %, every relay
    /// (authorities included) is in its consensus with the HSDir flag, and every
    /// authority serves a microdesc consensus listing every relay plus all of its
    /// microdescriptors. The relays that already do the same are remembered: only
    /// those and the authorities are handed to arti as fallbacks. (arti bootstraps
    /// from fallbacks only; relays lag behind the authorities by up to ~80 s, and a
    /// lagging fallback answers 404, which made arti back off for 4 s, once 43 s.)
    /// Returns how many stages are reached (0–3).
    fn probe_ready(&mut self, want_hsdirs: usize) -> io::Result<usize> {
        let mut c = self.control()?;
        let phase = c.cmd("GETINFO status/bootstrap-phase")?;
        if !phase.iter().any(|l| l.contains("PROGRESS=100")) {
            return Ok(0);
        }
        let ns = c.cmd("GETINFO ns/all")?;
        let hsdirs = ns
            .iter()
            .filter(|l| l.starts_with("s ") && l.split(' ').any(|f| f == "HSDir"))
            .count();
        if hsdirs < want_hsdirs {
            return Ok(1);
        }
        let mut ready = Vec::new();
        for n in self.nodes.iter().filter(|n| n.role != Role::Client) {
            if cache_ready(n.dir_port, want_hsdirs)? {
                ready.push(n.nickname.clone());
            } else if n.role == Role::Authority {
                return Ok(2);
            }
        }
        self.ready_caches = ready;
        Ok(3)
    }

    fn check_alive(&mut self) -> io::Result<()> {
        for (nick, child) in self.children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                let log = self.base.join(nick.as_str()).join("notice.log");
                let tail = fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(io::Error::other(format!(
                    "tor {nick} exited ({status}); last log lines:\n{}",
                    tail.join("\n")
                )));
            }
        }
        Ok(())
    }

    /// An authenticated control connection to the C tor client.
    pub fn control(&self) -> io::Result<ControlConn> {
        let cookie = fs::read(self.client().data_dir.join("control_auth_cookie"))?;
        let mut c = ControlConn::connect(SocketAddr::from(([127, 0, 0, 1], self.control_port)))?;
        let mut hex = String::new();
        for b in cookie {
            let _ = write!(hex, "{b:02X}");
        }
        c.cmd(&format!("AUTHENTICATE {hex}"))?;
        Ok(c)
    }

    /// `SIGNAL NEWNYM` on the client: new circuits, and it forgets which HSDirs failed.
    /// (C tor rate-limits NEWNYM to one per ~10 s; it still answers 250.)
    pub fn newnym(&self) -> io::Result<()> {
        self.control()?.cmd("SIGNAL NEWNYM").map(|_| ())
    }

    fn client(&self) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Client)
            .expect("client node")
    }

    pub fn socks_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.socks_port))
    }

    /// `n` more SOCKS ports on the client, each isolated from every other (tor never
    /// shares a circuit between streams from different listeners): one per browser, so
    /// that each gets its own rendezvous circuit, as each member's own Tor Browser would.
    /// The main port stays as it is.
    pub fn isolated_socks_addrs(&self, n: usize) -> io::Result<Vec<SocketAddr>> {
        let mut c = self.control()?;
        let current: Vec<String> = c
            .cmd("GETCONF SocksPort")?
            .iter()
            .filter_map(|l| l.split_once("SocksPort=").map(|(_, v)| v.trim().to_owned()))
            .collect();
        let ports = free_ports(n)?;
        let mut set = String::from("SETCONF");
        for p in current
            .iter()
            .cloned()
            .chain(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        {
            let _ = write!(set, " SocksPort=\"{p}\"");
        }
        c.cmd(&set)?;
        Ok(ports
            .into_iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect())
    }
    /// v3 identities (hex) of the authorities: arti's `authorities().set_v3idents`.
    pub fn authority_v3idents(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| n.v3ident.clone())
            .collect()
    }

    /// arti's fallback list: the authorities, plus the relays that already served a
    /// complete directory when the network became ready (all are directory caches).
    pub fn fallbacks(&self) -> Vec<FallbackInfo> {
        self.nodes
            .iter()
            .filter(|n| self.ready_caches.contains(&n.nickname))
            .map(|n| FallbackInfo {
                rsa_fingerprint: n.rsa_fingerprint.clone(),
                ed25519_identity: n.ed25519_identity.clone(),
                or_addr: SocketAddr::from(([127, 0, 0, 1], n.or_port)),
            })
            .collect()
    }

    /// Every ORPort in the network (authorities included), for an egress check.
    pub fn relay_or_addrs(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .filter(|n| n.role != Role::Client)
            .map(|n| SocketAddr::from(([127, 0, 0, 1], n.or_port)))
            .collect()
    }

    /// Same in minutes: the value of arti's `hsdir_interval` net-param override.
    pub fn hsdir_interval_minutes(&self) -> u32 {
        (24 * VOTING_INTERVAL_SECS / 60) as u32
    }

    /// Seconds until the onion-service time period changes, by C tor's rule:
    /// `period = (unix_minutes − offset) / length`, offset = 12 voting rounds.
    #[allow(
        clippy::disallowed_methods,
        reason = "tor's time periods follow the real clock"
    )]
    pub fn secs_until_time_period_change(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let len = self.hsdir_interval_minutes() as u64 * 60;
        let offset = (12 * VOTING_INTERVAL_SECS / 60) * 60;
        let since = (now - offset) % len;
        len - since
    }
}

impl TorNet {
    /// The `[tor.network]` section of a ghostcache configuration that joins this network.
    pub fn ghostcache_network_toml(&self) -> String {
        let mut t = String::from("[tor.network]\n");
        let quoted: Vec<String> = self
            .authority_v3idents()
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect();
        let _ = writeln!(t, "authorities = [{}]", quoted.join(", "));
        t.push_str("allow_local_addrs = true\n");
        // Every relay shares 127.0.0.1: no subnet families.
        t.push_str("ipv4_subnet_family_prefix = 33\nipv6_subnet_family_prefix = 129\n");
        let _ = writeln!(
            t,
            "net_params = {{ hsdir_interval = {}, \"guard-min-filtered-sample-size\" = 3 }}",
            self.hsdir_interval_minutes()
        );
        for f in self.fallbacks() {
            let _ = writeln!(
                t,
                "[[tor.network.fallbacks]]\nrsa_identity = \"{}\"\ned25519_identity = \"{}\"\norport = \"{}\"",
                f.rsa_fingerprint, f.ed25519_identity, f.or_addr
            );
        }
        t
    }
}

impl Drop for TorNet {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut() {
            let _ = child.kill(); // SIGKILL to this PID
        }
        for (_, child) in self.children.iter_mut() {
            let _ = child.wait();
        }
    }
}

/// A line-oriented control-port connection.
pub struct ControlConn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl ControlConn {
    fn connect(addr: SocketAddr) -> io::Result<Self> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(ControlConn {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// Send one command; return all reply lines. Error on a non-2xx final line.
    pub fn cmd(&mut self, line: &str) -> io::Result<Vec<String>> {
        self.w.write_all(line.as_bytes())?;
        self.w.write_all(b"\r\n")?;
        let mut lines = Vec::new();
        let mut in_data = false;
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "control closed",
                ));
            }
            let l = l.trim_end_matches(['\r', '\n']).to_string();
            if in_data {
                if l == "." {
                    in_data = false;
                } else {
                    lines.push(l);
                }
                continue;
            }
            let b = l.as_bytes();
            if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) {
                match b[3] {
                    b'+' => in_data = true,
                    b' ' => {
                        let ok = b[0] == b'2';
                        lines.push(l);
                        if ok {
                            return Ok(lines);
                        }
                        return Err(io::Error::other(format!("control: {}", lines.join(" | "))));
                    }
                    _ => {}
                }
            }
            lines.push(l);
        }
    }
}

/// Does the cache at this DirPort serve a microdesc consensus with `want` relays,
/// and every microdescriptor it lists?
fn cache_ready(dir_port: u16, want: usize) -> io::Result<bool> {
    let dbg = std::env::var_os("TORNET_DEBUG").is_some();
    let Some(cons) = http_get(dir_port, "/tor/status-vote/current/consensus-microdesc")? else {
        if dbg {
            eprintln!("tornet: {dir_port}: no consensus");
        }
        return Ok(false);
    };
    if dbg {
        let va = cons
            .lines()
            .find(|l| l.starts_with("valid-after"))
            .unwrap_or("");
        let r = cons.lines().filter(|l| l.starts_with("r ")).count();
        eprintln!("tornet: {dir_port}: {va}, {r} relays");
    }
    let digests: Vec<&str> = cons.lines().filter_map(|l| l.strip_prefix("m ")).collect();
    if cons.lines().filter(|l| l.starts_with("r ")).count() < want || digests.len() < want {
        return Ok(false);
    }
    let path = format!("/tor/micro/d/{}", digests.join("-"));
    let Some(mds) = http_get(dir_port, &path)? else {
        if dbg {
            eprintln!("tornet: {dir_port}: microdescs not served");
        }
        return Ok(false);
    };
    Ok(mds
        .lines()
        .filter(|l| l.starts_with("ntor-onion-key "))
        .count()
        >= digests.len())
}

/// Plain HTTP/1.0 GET on 127.0.0.1:port. `None` unless the status is 200.
fn http_get(port: u16, path: &str) -> io::Result<Option<String>> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let ok = text
        .lines()
        .next()
        .is_some_and(|l| l.split(' ').nth(1) == Some("200"));
    Ok(ok.then(|| {
        text.split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default()
    }))
}

fn make_private_dir(p: &Path) -> io::Result<()> {
    fs::create_dir_all(p)?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o700))
}

fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<_>>()?;
    ls.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn run(cmd: &mut Command, stdin: &[u8]) -> io::Result<String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(stdin)?;
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out)?;
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err)?;
    let status = child.wait()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({status}): {out}{err}"
        )));
    }
    Ok(out)
}

/// tor-gencert; returns the v3ident (the certificate's `fingerprint` line).
fn gen_authority_cert(n: &Node) -> io::Result<String> {
    let keys = n.data_dir.join("keys");
    make_private_dir(&keys)?;
    run(
        Command::new("tor-gencert")
            .arg("--create-identity-key")
            .args(["-m", "12"])
            .args(["-a", &format!("127.0.0.1:{}", n.dir_port)])
            .args(["--passphrase-fd", "0"])
            .arg("-i")
            .arg(keys.join("authority_identity_key"))
            .arg("-s")
            .arg(keys.join("authority_signing_key"))
            .arg("-c")
            .arg(keys.join("authority_certificate")),
        b"\n",
    )?;
    let cert = fs::read_to_string(keys.join("authority_certificate"))?;
    cert.lines()
        .find_map(|l| l.strip_prefix("fingerprint ").map(|f| f.trim().to_string()))
        .ok_or_else(|| io::Error::other("no fingerprint line in authority_certificate"))
}

/// `tor --list-fingerprint`: creates the identity keys; returns (RSA hex, ed25519 b64).
fn list_fingerprint(n: &Node) -> io::Result<(String, String)> {
    run(
        Command::new("tor")
            .arg("--list-fingerprint")
            .arg("--DataDirectory")
            .arg(&n.data_dir)
            .args(["--Nickname", &n.nickname])
            .args(["--ORPort", &format!("127.0.0.1:{}", n.or_port)])
            .args(["--Address", "127.0.0.1"])
            .args(["--TestingTorNetwork", "1"])
            .args([
                "--DirAuthority",
                "dummy 127.0.0.1:1 0000000000000000000000000000000000000000",
            ])
            .args(["--Log", "err stderr"]),
        b"",
    )?;
    let second_field = |file: &str| -> io::Result<String> {
        let s = fs::read_to_string(n.data_dir.join(file))?;
        s.split_whitespace()
            .nth(1)
            .map(str::to_string)
            .ok_or_else(|| io::Error::other(format!("bad {file}")))
    };
    Ok((
        second_field("fingerprint")?,
        second_field("fingerprint-ed25519")?,
    ))
}

fn common_torrc(nodes: &[Node]) -> String {
    let mut t = String::from(
        "TestingTorNetwork 1\n\
         AssumeReachable 1\n\
         PathsNeededToBuildCircuits 0.67\n\
         TestingDirAuthVoteExit *\n\
         TestingDirAuthVoteGuard *\n\
         TestingDirAuthVoteHSDir *\n\
         TestingMinExitFlagThreshold 0\n\
         V3AuthNIntervalsValid 2\n\
         OutboundBindAddress 127.0.0.1\n\
         ClientUseIPv6 0\n\
         RunAsDaemon 0\n\
         ShutdownWaitLength 0\n",
    );
    let _ = writeln!(t, "__OwningControllerProcess {}", std::process::id());
    for n in nodes.iter().filter(|n| n.role == Role::Authority) {
        let _ = writeln!(
            t,
            "DirAuthority {} orport={} no-v2 v3ident={} 127.0.0.1:{} {}",
            n.nickname,
            n.or_port,
            n.v3ident.as_deref().unwrap(),
            n.dir_port,
            n.rsa_fingerprint
        );
    }
    t
}

fn node_torrc(n: &Node, socks_port: u16, control_port: u16) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "Nickname {}", n.nickname);
    let _ = writeln!(t, "DataDirectory {}", n.data_dir.display());
    let _ = writeln!(
        t,
        "Log notice file {}",
        n.data_dir.join("notice.log").display()
    );
    if n.role == Role::Client {
        // ExtendedErrors: onion failures answer SOCKS5 codes 0xF0–0xF7 (e.g. 0xF4, client
        // authorization missing), which the restricted-discovery test tells apart.
        let _ = writeln!(t, "SocksPort 127.0.0.1:{socks_port} ExtendedErrors");
        let _ = writeln!(t, "ControlPort 127.0.0.1:{control_port}");
        t.push_str("CookieAuthentication 1\n");
        return t;
    }
    t.push_str("SocksPort 0\nAddress 127.0.0.1\nDirCache 1\n");
    // No DNS at all (as chutney does): otherwise exits open a UDP socket on 0.0.0.0
    // and run hijack tests against the host's resolver (here a 10.x address).
    t.push_str(
        "ServerDNSDetectHijacking 0\nServerDNSTestAddresses\nServerDNSResolvConfFile /dev/null\n",
    );
    let _ = writeln!(t, "ContactInfo proto-onion {}", n.nickname);
    let _ = writeln!(t, "ORPort 127.0.0.1:{}", n.or_port);
    let _ = writeln!(t, "DirPort 127.0.0.1:{}", n.dir_port);
    match n.role {
        Role::Authority => {
            let v = VOTING_INTERVAL_SECS;
            let (vd, dd) = (VOTE_DELAY_SECS, DIST_DELAY_SECS);
            let _ = write!(
                t,
                "AuthoritativeDirectory 1\n\
                 V3AuthoritativeDirectory 1\n\
                 AuthDirMaxServersPerAddr 0\n\
                 ExitRelay 0\n\
                 ExitPolicy reject *:*\n\
                 TestingV3AuthInitialVotingInterval {v}\n\
                 TestingV3AuthInitialVoteDelay {vd}\n\
                 TestingV3AuthInitialDistDelay {dd}\n\
                 V3AuthVotingInterval {v}\n\
                 V3AuthVoteDelay {vd}\n\
                 V3AuthDistDelay {dd}\n"
            );
        }
        Role::Exit => t.push_str(
            "ExitRelay 1\nExitPolicyRejectPrivate 0\n\
             ExitPolicy accept 127.0.0.0/8:*\nExitPolicy reject *:*\n",
        ),
        Role::Relay => t.push_str("ExitRelay 0\nExitPolicy reject *:*\n"),
        Role::Client => unreachable!(),
    }
    t
}

/// The one private network every onion test of this run shares, with a turn: tests that
/// use it run one after another, since they send NEWNYM and change the client's options,
/// which would cancel another test's descriptor fetches. Hold the guard for the test.
pub fn shared() -> (&'static TorNet, std::sync::MutexGuard<'static, ()>) {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (network(), turn)
}

/// The network itself: started by the first test that asks (≈ 40 s), under
/// `CARGO_TARGET_TMPDIR/tornet-shared`, and left running until the test binary exits
/// (each tor exits with it, `__OwningControllerProcess`).
fn network() -> &'static TorNet {
    static NET: std::sync::OnceLock<Result<TorNet, String>> = std::sync::OnceLock::new();
    let net = NET.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tornet-shared");
        let _ = fs::remove_dir_all(&dir);
        let net = TorNet::start(&dir).map_err(|e| e.to_string())?;
        if let Ok(log) = std::env::var("GC_TOR_CLIENT_LOG") {
            // Debugging a failed run: the client's info-level log, names unscrubbed.
            net.control()
                .and_then(|mut c| c.cmd(&format!("SETCONF Log=\"info file {log}\" SafeLogging=0")))
                .map_err(|e| e.to_string())?;
        }
        eprintln!(
            "tornet: shared network ready in {:.1} s under {}",
            net.ready_after.as_secs_f64(),
            dir.display()
        );
        Ok(net)
    });
    match net {
        Ok(net) => net,
        Err(e) => panic!("private Tor network: {e}"),
    }
}
