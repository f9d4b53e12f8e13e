//! Chat load benchmark: many members online with open live streams, messages sent over
//! HTTP, and the time from the start of each send until the message appears in the
//! recipient's live stream. Two runs:
//!
//! 1. *saturated*: `GC_BENCH_CONCURRENCY` sends in flight all the time (closed loop): the
//!    messages/s the server sustains, and the latency when it is flat out;
//! 2. *steady*: half of that rate, sent on a clock whatever the answers (open loop, as
//!    independent members would): the latency of a busy but not overloaded server.
//!
//! ```sh
//! scripts/bench-chat.sh                      # 1000 members, 3000 messages (release)
//! GC_BENCH_MEMBERS=200 scripts/bench-chat.sh # smaller
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs as a quick smoke test
//! with a handful of members, so the code stays working.
//!
//! Everything runs in one process: the real server (in-process, plain-HTTP door on
//! loopback) and the clients (one TCP connection per live stream, one per send). So the
//! figures include the clients' own work on the same cores; they are an upper bound for
//! the server side.
//!
//! Setup shortcuts (they do not touch the measured path): accounts are created through
//! the library with the fast test KDF; connections are requested and accepted through the
//! library with per-connection key pairs copied from a few pre-generated ones (generating
//! a thousand RSA key pairs would take many minutes; the sign and verify costs, which are
//! measured, depend on the key size only). Members log in, open streams and send over
//! HTTP like browsers.
//!
//! Knobs (environment): `GC_BENCH_MEMBERS` (even, default 1000), `GC_BENCH_MESSAGES`
//! (default 3000), `GC_BENCH_CONCURRENCY` (sends in flight, default 32),
//! `GC_BENCH_RSA_BITS` (default 3072, the production default), `GC_BENCH_TIMEOUT_SECS`
//! (default 600).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a benchmark binary: failing loudly is what it should do, and it reports on stdout"
)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use tokio::sync::{Semaphore, mpsc};

use ghostcache::accounts::{self, Username};
use ghostcache::app::{self, StartOptions};
use ghostcache::clock::Clock;
use ghostcache::config::Config;
use ghostcache::connections::keys::SigningKey;
use ghostcache::crypto::b64url;
use ghostcache::crypto::rsa_keys::RsaPrivate;
use ghostcache::store::Id;

use common::{PASSWORD, env_or, login, read_stream, request};

const DESTRUCTION: &str = "bench destroy 000001";

struct Settings {
    members: usize,
    messages: usize,
    concurrency: usize,
    rsa_bits: usize,
    timeout: Duration,
    smoke: bool,
}

impl Settings {
    fn from_env() -> Self {
        // `cargo bench` passes --bench; `cargo test --all-targets` does not.
        let smoke = !std::env::args().any(|a| a == "--bench");
        let (members, messages) = if smoke { (10, 20) } else { (1000, 3000) };
        let members = env_or("GC_BENCH_MEMBERS", members).max(2) / 2 * 2;
        Self {
            members,
            messages: env_or("GC_BENCH_MESSAGES", messages),
            concurrency: env_or("GC_BENCH_CONCURRENCY", if smoke { 4 } else { 32 }).max(1),
            rsa_bits: env_or("GC_BENCH_RSA_BITS", if smoke { 2048 } else { 3072 }),
            timeout: Duration::from_secs(env_or("GC_BENCH_TIMEOUT_SECS", 600) as u64),
            smoke,
        }
    }
}

/// The soft limit on open files, from /proc (no unsafe code needed).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64)).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let s = Settings::from_env();
    let needed = 2 * s.members + 4 * s.concurrency + 256;
    if let Some(limit) = open_file_limit()
        && limit < needed
    {
        eprintln!(
            "chat_load: {} members need about {needed} open files, but the limit is {limit}. \
             Run scripts/bench-chat.sh (it raises the limit with `ulimit -n`), or `ulimit -n {needed}` first.",
            s.members
        );
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(s));
}

async fn run(s: Settings) {
    let t_setup = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // The server refuses a data directory others can enter.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let mut config = Config {
        // A directory the server creates itself (0700): it refuses one others can enter.
        data_dir: Some(dir.path().join("data")),
        ..Config::default()
    };
    config.server.listen = Some("127.0.0.1:0".parse().unwrap());
    config.server.no_tor = true;
    config.server.max_connections = needed_connections(&s);
    config.crypto.rsa_bits = s.rsa_bits;
    // No background key generation competing for the cores during the measurement.
    config.crypto.rsa_pool_size = 0;
    config.crypto.max_concurrent_hashes = 8;
    config.rate_limits.login_per_username_per_minute = 100;
    config.rate_limits.messages_per_minute = 1_000_000;
    config.chat.stream_lifetime_secs = 3600;
    config.chat.stream_keepalive_secs = 5;
    let server = app::start(
        config,
        StartOptions {
            clock: Clock::system(),
            danger_fast_kdf: true,
        },
    )
    .await
    .unwrap();
    let addr = server.listen_addr.unwrap();
    let state = Arc::clone(&server.state);
    let now = state.clock.now();

    // A few key pairs, copied for every connection side (see the module docs).
    let t_keys = Instant::now();
    let bits = s.rsa_bits;
    let templates: Vec<Vec<u8>> = tokio::task::spawn_blocking(move || {
        (0..4)
            .map(|_| {
                RsaPrivate::generate(bits)
                    .unwrap()
                    .to_der()
                    .unwrap()
                    .to_vec()
            })
            .collect()
    })
    .await
    .unwrap();
    let delivery_template = templates[0].clone();
    println!(
        "setup: {} RSA-{} key pairs generated in {:.1?}",
        templates.len(),
        s.rsa_bits,
        t_keys.elapsed()
    );

    // Accounts, through the library.
    let names: Vec<String> = (0..s.members).map(|i| format!("m{i:05}")).collect();
    let policy = std::sync::Arc::clone(&state.accounts);
    let ids: Vec<Id> = {
        let names = names.clone();
        state
            .store
            .run(move |store| {
                let mut ids = Vec::with_capacity(names.len());
                for name in &names {
                    let delivery = RsaPrivate::from_der(&delivery_template).unwrap();
                    let id = accounts::create_account(
                        store,
                        &policy,
                        &Username::parse(name).unwrap(),
                        &ghostcache::accounts::secret::Presented::password(PASSWORD.as_bytes()),
                        &ghostcache::accounts::secret::Presented::password(DESTRUCTION.as_bytes()),
                        delivery,
                        now,
                    )?
                    .unwrap();
                    ids.push(id);
                }
                Ok(ids)
            })
            .await
            .unwrap()
    };

    // Log everybody in over HTTP.
    let t_login = Instant::now();
    let limit = Arc::new(Semaphore::new(16));
    let mut logins = Vec::new();
    for name in &names {
        let name = name.clone();
        let limit = Arc::clone(&limit);
        logins.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            login(addr, &name).await
        }));
    }
    let mut sessions = Vec::with_capacity(s.members);
    for l in logins {
        sessions.push(l.await.unwrap());
    }
    println!(
        "setup: {} members created and logged in ({:.1?} for the logins)",
        s.members,
        t_login.elapsed()
    );

    // Pair member i with member i + n/2, through the library.
    let half = s.members / 2;
    let mut conversations: Vec<Id> = vec![[0; 16]; s.members];
    for i in 0..half {
        let (a, b) = (ids[i], ids[i + half]);
        let b_name = names[i + half].clone();
        let cookie_b = sessions[i + half].0.clone();
        let raw = cookie_b.strip_prefix("gc_session=").unwrap();
        let data_key = state
            .sessions
            .get(raw, state.clock.now())
            .unwrap()
            .data_key
            .clone();
        let k1 = templates[1 + (2 * i) % 3].clone();
        let k2 = templates[1 + (2 * i + 1) % 3].clone();
        let conn = state
            .store
            .run(move |store| {
                let conn = ghostcache::connections::request(store, &a, &b_name, now)?.unwrap();
                let ka = SigningKey::RsaPss(RsaPrivate::from_der(&k1).unwrap());
                let kb = SigningKey::RsaPss(RsaPrivate::from_der(&k2).unwrap());
                ghostcache::connections::accept(store, &conn, &b, &data_key, &ka, &kb, now)?
                    .unwrap();
                Ok(conn)
            })
            .await
            .unwrap();
        conversations[i] = conn;
        conversations[i + half] = conn;
    }

    // Open every live stream over HTTP.
    let t_streams = Instant::now();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (arrive_tx, arrive_rx) = mpsc::unbounded_channel();
    for (i, (cookie, _)) in sessions.iter().enumerate() {
        let path = format!("/chat/{}/live", b64url(&conversations[i]));
        let (status, _, body) = request(addr, Method::GET, &path, cookie, &[], None).await;
        assert_eq!(status, StatusCode::OK, "live stream of member {i}");
        tokio::spawn(read_stream(i, body, ready_tx.clone(), arrive_tx.clone()));
    }
    for _ in 0..s.members {
        ready_rx.recv().await.unwrap();
    }
    let open = state.hub.total_streams();
    let online = ids
        .iter()
        .filter(|id| state.hub.online(id, state.clock.now(), &state.sessions))
        .count();
    println!(
        "setup: {open} live streams open, {online} members online ({:.1?}); total setup {:.1?}",
        t_streams.elapsed(),
        t_setup.elapsed()
    );
    assert_eq!(open, s.members);
    assert_eq!(online, s.members);

    let mut rig = Rig {
        addr,
        half,
        members: s.members,
        sessions,
        receiver_ids: (0..s.members)
            .map(|i| b64url(&ids[partner(half, i)]))
            .collect(),
        arrivals: arrive_rx,
        next: 0,
        timeout: s.timeout,
    };
    println!();
    println!(
        "chat_load: {} members online with {open} live streams, RSA-{} signatures",
        s.members, s.rsa_bits
    );

    // 1. Throughput: `concurrency` sends in flight all the time.
    let saturated = rig.measure(s.messages, Pace::InFlight(s.concurrency)).await;
    saturated.report(&format!("saturated, {} sends in flight", s.concurrency));

    // 2. Latency at a steady rate: half of the throughput just measured, sent on a clock
    //    whatever the answers (an open loop, as independent members would).
    let rate = (saturated.per_second() / 2.0).max(1.0);
    let steady = rig.measure(s.messages / 2, Pace::PerSecond(rate)).await;
    steady.report(&format!("steady {rate:.0} messages/s offered"));

    server.shutdown().await;
    for r in [&saturated, &steady] {
        assert_eq!(r.send_errors, 0, "every send succeeds");
        assert_eq!(r.latencies.len(), r.count, "every message arrives");
    }
    if s.smoke {
        println!("(smoke run: use `cargo bench --bench chat_load` or scripts/bench-chat.sh)");
    }
}

/// Member `i`'s partner: members `i` and `i + n/2` are connected.
fn partner(half: usize, i: usize) -> usize {
    if i < half { i + half } else { i - half }
}

/// How sends are paced.
#[derive(Clone, Copy)]
enum Pace {
    /// Keep this many sends in flight (closed loop).
    InFlight(usize),
    /// Start this many sends per second, whatever the answers (open loop).
    PerSecond(f64),
}

/// Everything needed to send as the members and to see what arrives.
struct Rig {
    addr: SocketAddr,
    half: usize,
    members: usize,
    /// (session cookie, CSRF token) per member.
    sessions: Vec<(String, String)>,
    receiver_ids: Vec<String>,
    arrivals: mpsc::UnboundedReceiver<(usize, usize, Instant)>,
    /// Number of the next message (markers are unique across runs).
    next: usize,
    timeout: Duration,
}

/// What one run measured.
struct Run {
    count: usize,
    send_errors: usize,
    /// Sorted send → arrival times in the recipient's stream.
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn report(&self, what: &str) {
        let l = &self.latencies;
        println!("  {what}: {} messages", self.count);
        println!(
            "    send → arrival in the recipient's live stream: p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}",
            percentile(l, 50.0),
            percentile(l, 90.0),
            percentile(l, 99.0),
            l.last().copied().unwrap_or_default()
        );
        println!(
            "    throughput: {:.0} messages/s delivered ({} in {:.2?}); {} sends failed, {} not delivered",
            self.per_second(),
            l.len(),
            self.elapsed,
            self.send_errors,
            self.count - l.len()
        );
    }
}

impl Rig {
    /// Send `count` messages (message k from member k mod n to its partner) and wait for
    /// each to arrive in its recipient's stream (each also shows in the sender's own).
    async fn measure(&mut self, count: usize, pace: Pace) -> Run {
        let first = self.next;
        self.next += count;
        let sent_at: Arc<parking_lot::Mutex<HashMap<usize, Instant>>> =
            Arc::new(parking_lot::Mutex::new(HashMap::with_capacity(count)));
        let in_flight = Arc::new(Semaphore::new(match pace {
            Pace::InFlight(n) => n,
            Pace::PerSecond(_) => Semaphore::MAX_PERMITS,
        }));
        let mut ticker = match pace {
            Pace::PerSecond(rate) => {
                let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                Some(t)
            }
            Pace::InFlight(_) => None,
        };
        let start = Instant::now();
        let mut sends = Vec::with_capacity(count);
        for k in first..first + count {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
            let sender = k % self.members;
            let (cookie, csrf) = self.sessions[sender].clone();
            let body = format!(
                r#"{{"receiver_id":"{}","message":"bench:{k}: load test message"}}"#,
                self.receiver_ids[sender]
            );
            let sent_at = Arc::clone(&sent_at);
            let addr = self.addr;
            sends.push(tokio::spawn(async move {
                sent_at.lock().insert(k, Instant::now());
                let (status, _, body) = request(
                    addr,
                    Method::POST,
                    "/chat/send",
                    &cookie,
                    &[("x-csrf-token", csrf.as_str())],
                    Some(("application/json", body)),
                )
                .await;
                let _ = body.collect().await;
                drop(permit);
                status == StatusCode::CREATED
            }));
        }
        let mut send_errors = 0;
        for h in sends {
            if !h.await.unwrap() {
                send_errors += 1;
            }
        }
        let mut arrival: HashMap<usize, Instant> = HashMap::with_capacity(count);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut last = start;
        while arrival.len() < count - send_errors {
            let Ok(Some((member, k, at))) =
                tokio::time::timeout_at(deadline, self.arrivals.recv()).await
            else {
                break;
            };
            if (first..first + count).contains(&k) && member == partner(self.half, k % self.members)
            {
                arrival.insert(k, at);
                last = last.max(at);
            }
        }
        let sent_at = sent_at.lock();
        let mut latencies: Vec<Duration> = arrival
            .iter()
            .filter_map(|(k, at)| sent_at.get(k).map(|t| at.duration_since(*t)))
            .collect();
        latencies.sort();
        Run {
            count,
            send_errors,
            latencies,
            elapsed: last.duration_since(start),
        }
    }
}

fn needed_connections(s: &Settings) -> usize {
    s.members + 4 * s.concurrency + 64
}
