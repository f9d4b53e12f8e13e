//! Figures for accounts:
//!
//! 1. argon2id cost: one derivation at several memory/iteration settings, alone and four
//!    at a time (p50, p99), to choose the default (the largest whose four-at-a-time p99
//!    stays within 250 ms on this machine);
//! 2. the server's PBKDF2 of a login without JavaScript (the login secret), at 210 000
//!    and 600 000 iterations;
//! 3. a whole login over HTTP with the default cost, one at a time and four at a time
//!    (p50, p99), with the password (no JavaScript) and with the login secret (JavaScript),
//!    and the destruction password against a wrong one (same work: the same time);
//! 4. what erasure costs: the background erasure of a member with a connection, messages
//!    and a file, and how the database and the key file grow per member.
//!
//!     cargo bench --bench accounts
//!
//! `GC_BENCH_PARTS=kdf,pbkdf2,login,erasure,growth` runs only some parts; `GC_BENCH_ARGON2=
//! "19456x2,32768x2"` chooses the costs of part 1 (KiB x passes).
//!
//! Under `cargo test` (no `--bench` argument) it runs a small round of each.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark binary: prints its figures and stops on the first failure"
)]

#[allow(
    dead_code,
    reason = "the shared helpers offer more than this benchmark uses"
)]
mod common;
#[allow(
    dead_code,
    reason = "the shared helpers offer more than this benchmark uses"
)]
#[path = "common/setup.rs"]
mod setup;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};

use common::{FORM, PASSWORD, login, login_attempt, login_attempt_with, request, text};
use ghostcache::accounts::{self, Username};
use ghostcache::crypto::rsa_keys::RsaPrivate;
use ghostcache::crypto::{KdfParams, MasterKey};
use setup::report;

const DESTRUCTION: &str = "bench destruction 0002";

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // `GC_BENCH_PARTS=kdf,pbkdf2,login,erasure,growth` runs only those parts.
    let parts = std::env::var("GC_BENCH_PARTS").unwrap_or_default();
    let part = |name: &str| parts.is_empty() || parts.split(',').any(|p| p.trim() == name);
    if part("kdf") {
        kdf_table(full);
    }
    if part("pbkdf2") {
        pbkdf2_table(if full { 20 } else { 1 });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if part("login") {
        rt.block_on(http_logins(if full { 60 } else { 2 }));
    }
    if part("erasure") {
        rt.block_on(erasure(
            if full { 5 } else { 1 },
            if full { 100 } else { 5 },
        ));
    }
    if part("growth") {
        file_growth(if full { 2000 } else { 20 });
    }
}

/// The server's PBKDF2 for a login without JavaScript (one 32-byte block: the login
/// secret), at the default count and at OWASP's current figure for SHA-256.
fn pbkdf2_table(rounds: usize) {
    println!("PBKDF2-HMAC-SHA256, the login secret's block alone (aws-lc), one at a time:");
    for iterations in [accounts::secret::ITERATIONS, 600_000] {
        let times: Vec<Duration> = (0..rounds)
            .map(|i| {
                let started = Instant::now();
                let out = accounts::secret::derive(b"bench password", &[i as u8; 16], iterations);
                assert_ne!(*out, [0u8; 32]);
                started.elapsed()
            })
            .collect();
        report(&format!("  {iterations} iterations"), times);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// `rounds` derivations on each of `threads` threads at once.
fn derive_times(params: KdfParams, threads: usize, rounds: usize) -> Vec<Duration> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut out = Vec::with_capacity(rounds);
                for r in 0..rounds {
                    let pw = format!("password {t} {r}");
                    let started = Instant::now();
                    MasterKey::derive(pw.as_bytes(), &[7u8; 16], params).unwrap();
                    out.push(started.elapsed());
                }
                out
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// The argon2id costs to measure: `GC_BENCH_ARGON2="19456x2,32768x2"` (KiB x passes), or
/// a default list.
fn candidates(full: bool) -> Vec<(u32, u32)> {
    if let Ok(list) = std::env::var("GC_BENCH_ARGON2") {
        return list
            .split(',')
            .map(|c| {
                let (m, t) = c.trim().split_once('x').expect("KiBxPASSES");
                (m.parse().unwrap(), t.parse().unwrap())
            })
            .collect();
    }
    if full {
        vec![
            (19_456, 2),
            (24_576, 2),
            (32_768, 2),
            (19_456, 3),
            (40_960, 2),
            (47_104, 2),
            (65_536, 2),
        ]
    } else {
        vec![(19_456, 2)]
    }
}

fn kdf_table(full: bool) {
    let candidates = candidates(full);
    let rounds = if full { 20 } else { 2 };
    println!(
        "argon2id, one derivation (p = 1), {} alone and {}×4 at once, on {} cores:",
        rounds,
        rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (memory_kib, iterations) in candidates {
        let params = KdfParams {
            memory_kib,
            iterations,
            parallelism: 1,
        };
        let label = format!("  m={memory_kib:>6} KiB t={iterations}");
        report(&format!("{label}, alone"), derive_times(params, 1, rounds));
        report(
            &format!("{label}, 4 at once"),
            derive_times(params, 4, rounds),
        );
    }
}

/// A server with the production cost (the configuration's defaults).
async fn server(dir: &std::path::Path) -> ghostcache::app::RunningApp {
    let mut config = ghostcache::config::Config {
        data_dir: Some(dir.join("data")),
        ..Default::default()
    };
    config.server.listen = Some("127.0.0.1:0".parse().unwrap());
    config.server.no_tor = true;
    config.crypto.rsa_bits = 2048;
    config.rate_limits.login_per_username_per_minute = 1_000_000;
    config.rate_limits.register_per_minute = 1_000_000;
    config.rate_limits.messages_per_minute = 1_000_000;
    config.rate_limits.connection_requests_per_minute = 1_000_000;
    config.rate_limits.uploads_per_member_per_minute = 1_000_000;
    // `GC_BENCH_LOGIN_ARGON2=47104x2`: measure logins at another cost than the default.
    if let Ok(cost) = std::env::var("GC_BENCH_LOGIN_ARGON2") {
        let (m, t) = cost.split_once('x').expect("KiBxPASSES");
        config.crypto.argon2_memory_kib = m.parse().unwrap();
        config.crypto.argon2_iterations = t.parse().unwrap();
    }
    ghostcache::app::start(config, ghostcache::app::StartOptions::default())
        .await
        .unwrap()
}

/// Members registered through the library (one delivery key for all), with the server's
/// own cost and pepper.
async fn register(app: &ghostcache::app::RunningApp, names: Vec<String>) {
    let state = Arc::clone(&app.state);
    let der = RsaPrivate::generate(2048)
        .unwrap()
        .to_der()
        .unwrap()
        .to_vec();
    let now = state.clock.now();
    state
        .store
        .clone()
        .run(move |store| {
            for name in &names {
                accounts::create_account(
                    store,
                    &state.accounts,
                    &Username::parse(name).unwrap(),
                    &ghostcache::accounts::secret::Presented::password(PASSWORD.as_bytes()),
                    &ghostcache::accounts::secret::Presented::password(DESTRUCTION.as_bytes()),
                    RsaPrivate::from_der(&der).unwrap(),
                    now,
                )?
                .unwrap();
            }
            Ok(())
        })
        .await
        .unwrap();
}

/// One login attempt through the form, timed from the POST to its answer.
async fn timed_login(addr: SocketAddr, name: &str, password: &str) -> (StatusCode, Duration) {
    let (status, _, took) = login_attempt(addr, name, password).await;
    (status, took)
}

async fn http_logins(n: usize) {
    let dir = private_dir();
    let app = server(dir.path()).await;
    let addr = app.listen_addr.unwrap();
    let kdf = app.state.accounts.kdf;
    let mut names: Vec<String> = (0..4).map(|i| format!("login{i}")).collect();
    let doomed: Vec<String> = (0..n).map(|i| format!("doomed{i:03}")).collect();
    names.extend(doomed.iter().cloned());
    register(&app, names).await;
    println!(
        "a whole login over HTTP on loopback, argon2id m={} KiB t={} p={}:",
        kdf.memory_kib, kdf.iterations, kdf.parallelism
    );
    let mut alone = Vec::new();
    for _ in 0..n {
        let (status, t) = timed_login(addr, "login0", PASSWORD).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        alone.push(t);
    }
    let mut four = Vec::new();
    for _ in 0..n.div_ceil(4).max(1) {
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                tokio::spawn(async move { timed_login(addr, &format!("login{i}"), PASSWORD).await })
            })
            .collect();
        for t in tasks {
            let (status, t) = t.await.unwrap();
            assert_eq!(status, StatusCode::SEE_OTHER);
            four.push(t);
        }
    }
    report("  right password, one at a time", alone);
    report("  right password, four at a time", four);
    // What a browser with JavaScript sends: the login secret, so the server runs no
    // PBKDF2 (it does for the password above, to derive the same secret).
    let store = app.state.store.clone();
    let iterations = app.state.accounts.login_iterations;
    let secrets: Vec<String> = (0..4)
        .map(|i| {
            let name = format!("login{i}");
            let salt = accounts::secret::salt(
                &accounts::secret::installation_secret(&store).unwrap(),
                &name,
            );
            ghostcache::crypto::b64url(&*accounts::secret::derive(
                PASSWORD.as_bytes(),
                &salt,
                iterations,
            ))
        })
        .collect();
    let mut js_alone = Vec::new();
    for _ in 0..n {
        let (status, _, t) =
            login_attempt_with(addr, "login0", "password_secret", &secrets[0]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        js_alone.push(t);
    }
    let mut js_four = Vec::new();
    for _ in 0..n.div_ceil(4).max(1) {
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let s = secrets[i].clone();
                tokio::spawn(async move {
                    login_attempt_with(addr, &format!("login{i}"), "password_secret", &s).await
                })
            })
            .collect();
        for t in tasks {
            let (status, _, t) = t.await.unwrap();
            assert_eq!(status, StatusCode::SEE_OTHER);
            js_four.push(t);
        }
    }
    report("  login secret (JavaScript), one at a time", js_alone);
    report("  login secret (JavaScript), four at a time", js_four);
    let (mut wrong, mut destroy) = (Vec::new(), Vec::new());
    for (i, name) in doomed.iter().enumerate() {
        // In turns, each first half the time (what follows a destruction shares the
        // machine with its background erasure).
        for which in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            if which == 0 {
                let (status, t) = timed_login(addr, "login1", "not the password").await;
                assert_eq!(status, StatusCode::FORBIDDEN);
                wrong.push(t);
            } else {
                let (status, t) = timed_login(addr, name, DESTRUCTION).await;
                assert_eq!(status, StatusCode::FORBIDDEN);
                destroy.push(t);
            }
        }
    }
    report("  wrong password", wrong);
    report("  destruction password", destroy);
    app.shutdown().await;
}

/// A member with a connection, `messages` messages each way and a 5 MB file, destroyed;
/// the time of the answer and of the erasure that follows in the background.
async fn erasure(rounds: usize, messages: usize) {
    let dir = private_dir();
    let app = server(dir.path()).await;
    let addr = app.listen_addr.unwrap();
    let names: Vec<String> = (0..rounds)
        .flat_map(|r| [format!("gone{r}"), format!("peer{r}")])
        .collect();
    register(&app, names).await;
    let store = app.state.store.clone();
    let mut answers = Vec::new();
    let mut erasures = Vec::new();
    for r in 0..rounds {
        let (gone, peer) = (format!("gone{r}"), format!("peer{r}"));
        let (g_cookie, g_csrf) = login(addr, &gone).await;
        let (p_cookie, p_csrf) = login(addr, &peer).await;
        let form = format!("csrf={g_csrf}&username={peer}");
        let (status, _, _) = request(
            addr,
            Method::POST,
            "/connect",
            &g_cookie,
            &[],
            Some((FORM, form)),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (_, _, body) = request(addr, Method::GET, "/connections", &p_cookie, &[], None).await;
        let page = text(body).await;
        let at = page.find("/connect/accept/").unwrap();
        let action = &page[at..at + page[at..].find('"').unwrap()];
        let (status, headers, _) = request(
            addr,
            Method::POST,
            action,
            &p_cookie,
            &[],
            Some((FORM, format!("csrf={p_csrf}"))),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let chat = headers
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        for i in 0..messages {
            for (cookie, csrf) in [(&g_cookie, &g_csrf), (&p_cookie, &p_csrf)] {
                let form = format!("csrf={csrf}&message=message+{i}&timer=");
                let (status, _, _) =
                    request(addr, Method::POST, &chat, cookie, &[], Some((FORM, form))).await;
                assert_eq!(status, StatusCode::SEE_OTHER);
            }
        }
        upload(addr, &g_cookie, &g_csrf, 5_000_000).await;
        let (status, t) = timed_login(addr, &gone, DESTRUCTION).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        answers.push(t);
        let started = Instant::now();
        let name = Username::parse(&gone).unwrap();
        while accounts::find_user(&store, &name)
            .unwrap()
            .unwrap()
            .1
            .erasing
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        erasures.push(started.elapsed());
    }
    println!(
        "destroying a member with a connection, {} messages each way and a 5 MB file:",
        messages
    );
    report("  the answer (decoy in place, durable)", answers);
    report("  the erasure that follows (background)", erasures);
    app.shutdown().await;
}

async fn upload(addr: SocketAddr, cookie: &str, csrf: &str, size: usize) {
    let boundary = "bench-boundary-2f1c";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"expiry_days\"\r\n\r\n30\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend((0..size).map(|i| (i % 251) as u8));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/file/upload")
        .header("host", addr.to_string())
        .header("cookie", cookie)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "upload");
}

/// Bytes of rows stored in the database.
fn stored_bytes(store: &ghostcache::store::Store) -> u64 {
    let txn = store.write().unwrap();
    let stats = txn.stats().unwrap();
    txn.abort().unwrap();
    stats.stored_bytes()
}

/// How the database and the key file grow with members.
fn file_growth(members: usize) {
    let dir = private_dir();
    let path = dir.path().join(ghostcache::store::DB_FILE);
    let store = ghostcache::store::Store::open(&path).unwrap();
    let keys = ghostcache::store::erasure::keys_path(&path);
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    let (rows0, keys0) = (stored_bytes(&store), size(&keys));
    let policy = accounts::Policy::new(
        KdfParams::DANGER_FAST,
        None,
        30,
        ghostcache::app::member_cascade(),
    )
    .unwrap();
    let der = RsaPrivate::generate(2048)
        .unwrap()
        .to_der()
        .unwrap()
        .to_vec();
    let mut ids = Vec::with_capacity(members);
    let mut record_bytes = 0;
    for i in 0..members {
        let name = Username::parse(&format!("grow{i:05}")).unwrap();
        let id = accounts::create_account(
            &store,
            &policy,
            &name,
            &ghostcache::accounts::secret::Presented::password(PASSWORD.as_bytes()),
            &ghostcache::accounts::secret::Presented::password(DESTRUCTION.as_bytes()),
            RsaPrivate::from_der(&der).unwrap(),
            0,
        )
        .unwrap()
        .unwrap();
        let (_, record) = accounts::find_user(&store, &name).unwrap().unwrap();
        record_bytes += record.credentials_sealed.len();
        ids.push(id);
    }
    let (rows1, keys1) = (stored_bytes(&store), size(&keys));
    let started = Instant::now();
    for id in &ids {
        accounts::depart(&store, &policy, id).unwrap();
    }
    let per_departure = started.elapsed() / u32::try_from(members).unwrap();
    let (rows2, keys2) = (stored_bytes(&store), size(&keys));
    let per = |a: u64, b: u64| (b as f64 - a as f64) / members as f64;
    println!("{members} members (no data), through the library:");
    println!(
        "  rows stored: {:.0} bytes per member, of which {:.0} are the sealed credentials; key \
         file: {:.1} bytes per member ({keys0} → {keys1} bytes)",
        per(rows0, rows1),
        record_bytes as f64 / members as f64,
        per(keys0, keys1),
    );
    println!(
        "  all departed (decoys): rows {:+.0} bytes per member, key file {keys2} bytes; {:.2} ms \
         per departure (decoy, erasure and cascade, each durable), file size {} bytes",
        per(rows1, rows2),
        ms(per_departure),
        size(&path)
    );
}
