//! Chat send and accept benchmark (issue 11's targets), over HTTP as a browser does.
//!
//! 1. **Send**: `POST /chat/<id>` (the chat page's form, with its CSRF field; answered
//!    303), the message rate limit raised, from one member to one connection: messages/s
//!    and latency (p50, p99) with 16 requests in flight, then with one in flight.
//! 0. **Login**: `GET /login` (the page), and `POST /login` with the production argon2id
//!    cost (the configuration's defaults), one at a time.
//! 2. **Accept**: `POST /connect/accept/<id>` (303) with an empty key pool (each side's
//!    fresh RSA key generated on the spot) and with the pool warm (keys ready).
//!
//! ```sh
//! cargo bench --bench chat_send                       # RSA-PSS-3072 signers
//! GC_BENCH_SCHEME=dsa cargo bench --bench chat_send   # both members sign with DSA
//! GC_BENCH_MESSAGES=4000 GC_BENCH_CONCURRENCY=32 cargo bench --bench chat_send
//! ```
//!
//! Knobs (environment): `GC_BENCH_MESSAGES` (default 2000 at 16 in flight; a fifth of it
//! one at a time), `GC_BENCH_CONCURRENCY` (16), `GC_BENCH_ACCEPTS` (8 of each kind),
//! `GC_BENCH_RSA_BITS` (3072), `GC_BENCH_SCHEME` (`rsa` or `dsa`).
//!
//! One process: the server (in-process, plain-HTTP door on loopback) and its clients
//! share the cores, so the figures are an upper bound for the server side. Accounts are
//! made through the library with the fast test KDF and one pre-generated delivery key
//! (generating one per account would take minutes and is not what is measured). Under
//! `cargo test --all-targets` it runs as a small smoke test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a benchmark binary: failing loudly is what it should do, and it reports on stdout"
)]

#[allow(
    dead_code,
    reason = "the stream reader is for the benchmarks that open streams"
)]
mod common;
#[allow(
    dead_code,
    reason = "the shared helpers offer more than this benchmark uses"
)]
#[path = "common/setup.rs"]
mod setup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};

use ghostcache::accounts::{self, Username};
use ghostcache::app::{self, StartOptions};
use ghostcache::clock::Clock;
use ghostcache::config::Config;
use ghostcache::crypto::b64url;
use ghostcache::crypto::rsa_keys::RsaPrivate;
use ghostcache::store::{Id, Store};

use common::{FORM, PASSWORD, env_or, login, request};

const DESTRUCTION: &str = "bench destroy 000001";

struct Settings {
    messages: usize,
    concurrency: usize,
    accepts: usize,
    rsa_bits: usize,
    dsa: bool,
    smoke: bool,
}

impl Settings {
    fn from_env() -> Self {
        let smoke = !std::env::args().any(|a| a == "--bench");
        let (messages, accepts) = if smoke { (20, 1) } else { (2000, 8) };
        Self {
            messages: env_or("GC_BENCH_MESSAGES", messages).max(1),
            concurrency: env_or("GC_BENCH_CONCURRENCY", 16).max(1),
            accepts: env_or("GC_BENCH_ACCEPTS", accepts).max(1),
            rsa_bits: env_or("GC_BENCH_RSA_BITS", if smoke { 2048 } else { 3072 }),
            dsa: std::env::var("GC_BENCH_SCHEME").is_ok_and(|v| v == "dsa"),
            smoke,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut v: Vec<Duration>, wall: Option<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let rate = wall.map_or(String::new(), |w| {
        format!("  {:>6.0}/s", v.len() as f64 / w.as_secs_f64())
    });
    println!(
        "{name:<40} n={:<5} p50={:>8.2} ms  p99={:>8.2} ms  max={:>8.2} ms{rate}",
        v.len(),
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(*v.last().unwrap())
    );
}

fn main() {
    let s = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "chat send benchmark: RSA {} bits, signers {}{}",
            s.rsa_bits,
            if s.dsa { "DSA 2048/256" } else { "RSA-PSS" },
            if s.smoke { " (smoke run)" } else { "" }
        );
        login_cost(&s).await;
        send(&s).await;
        accept(&s, false).await;
        accept(&s, true).await;
    });
}

/// A server for one part of the benchmark (the fast test KDF unless `production_kdf`).
async fn server(
    s: &Settings,
    pool: usize,
    production_kdf: bool,
) -> (app::RunningApp, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut config = Config {
        data_dir: Some(dir.path().join("data")),
        ..Config::default()
    };
    config.server.listen = Some("127.0.0.1:0".parse().unwrap());
    config.server.no_tor = true;
    config.crypto.rsa_bits = s.rsa_bits;
    config.crypto.rsa_pool_size = pool;
    config.rate_limits.messages_per_minute = 1_000_000;
    config.rate_limits.login_per_username_per_minute = 1_000_000;
    config.rate_limits.connection_requests_per_minute = 1_000_000;
    let options = StartOptions {
        clock: Clock::system(),
        danger_fast_kdf: !production_kdf,
    };
    (app::start(config, options).await.unwrap(), dir)
}

/// `n` accounts named `{prefix}{i:03}` (one shared delivery key), and the
/// installation's DSA parameters and every member's choice of DSA when `dsa`.
async fn members(store: &Store, prefix: &str, n: usize, bits: usize, dsa: bool) -> Vec<Id> {
    let prefix = prefix.to_owned();
    let delivery = tokio::task::spawn_blocking(move || {
        RsaPrivate::generate(bits)
            .unwrap()
            .to_der()
            .unwrap()
            .to_vec()
    })
    .await
    .unwrap();
    store
        .run(move |store| {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let (user_id, _) =
                    setup::create_member(store, &format!("{prefix}{i:03}"), &delivery)?;
                if dsa {
                    ghostcache::chat::signing::set_scheme(
                        store,
                        &user_id,
                        ghostcache::connections::keys::SignatureScheme::Dsa,
                    )?;
                }
                out.push(user_id);
            }
            Ok(out)
        })
        .await
        .unwrap()
}

/// The CSRF token of the form posting to `action` on page `path`.
async fn page_csrf(addr: SocketAddr, cookie: &str, path: &str, action: &str) -> String {
    let (status, _, body) = request(addr, Method::GET, path, cookie, &[], None).await;
    assert_eq!(status, StatusCode::OK, "{path}");
    let html = common::text(body).await;
    let form = html
        .find(&format!("action=\"{action}\""))
        .unwrap_or_else(|| panic!("no form to {action}"));
    common::csrf_of(&html[form..])
}

/// Accept a request over HTTP (the connections page's form).
async fn accept_over_http(addr: SocketAddr, cookie: &str, connection: &Id) -> Duration {
    let action = format!("/connect/accept/{}", b64url(connection));
    let csrf = page_csrf(addr, cookie, "/connections", &action).await;
    let start = Instant::now();
    let (status, _, _) = request(
        addr,
        Method::POST,
        &action,
        cookie,
        &[],
        Some((FORM, format!("csrf={csrf}"))),
    )
    .await;
    let took = start.elapsed();
    assert_eq!(status, StatusCode::SEE_OTHER, "accept");
    took
}

async fn login_cost(s: &Settings) {
    let (app, _dir) = server(s, 1, true).await;
    let addr = app.listen_addr.unwrap();
    let policy = app.state.accounts.clone();
    let kdf = policy.kdf;
    let now = app.state.clock.now();
    let bits = s.rsa_bits;
    app.state
        .store
        .run(move |store| {
            let delivery = RsaPrivate::generate(bits).unwrap();
            accounts::create_account(
                store,
                &policy,
                &Username::parse("login000").unwrap(),
                &ghostcache::accounts::secret::Presented::password(PASSWORD.as_bytes()),
                &ghostcache::accounts::secret::Presented::password(DESTRUCTION.as_bytes()),
                delivery,
                now,
            )?
            .unwrap();
            Ok(())
        })
        .await
        .unwrap();
    let n = if s.smoke { 3 } else { 200 };
    let mut page = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let (status, _, body) = request(addr, Method::GET, "/login", "", &[], None).await;
        common::text(body).await;
        page.push(start.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    report("GET /login", page, None);
    let n = if s.smoke { 2 } else { 20 };
    let mut cost = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, _, took) = common::login_attempt(addr, "login000", PASSWORD).await;
        cost.push(took);
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
    report(
        &format!(
            "POST /login (argon2id {} KiB, {} passes)",
            kdf.memory_kib, kdf.iterations
        ),
        cost,
        None,
    );
    app.shutdown().await;
}

async fn send(s: &Settings) {
    let (app, _dir) = server(s, 2, false).await;
    let addr = app.listen_addr.unwrap();
    let store = app.state.store.clone();
    let ids = members(&store, "sender", 2, s.rsa_bits, s.dsa).await;
    let (a, b) = (ids[0], ids[1]);
    let conn = store
        .run(move |st| Ok(ghostcache::connections::request(st, &a, "sender001", 0)?.unwrap()))
        .await
        .unwrap();
    let (cookie_b, _) = login(addr, "sender001").await;
    accept_over_http(addr, &cookie_b, &conn).await;
    let _ = b;
    let (cookie, _) = login(addr, "sender000").await;
    let path = format!("/chat/{}", b64url(&conn));
    let csrf = page_csrf(addr, &cookie, &path, &path).await;
    let post = Arc::new((path, cookie, csrf));
    let one = move |n: usize| {
        let post = Arc::clone(&post);
        async move {
            let form = format!("csrf={}&message=bench+message+{n}&timer=", post.2);
            let start = Instant::now();
            let (status, _, _) = request(
                addr,
                Method::POST,
                &post.0,
                &post.1,
                &[],
                Some((FORM, form)),
            )
            .await;
            assert_eq!(status, StatusCode::SEE_OTHER);
            start.elapsed()
        }
    };
    // Warm up: keys re-sealed on first use, caches.
    for n in 0..5 {
        one(n).await;
    }

    // `concurrency` in flight: each worker sends its share back to back.
    let per = s.messages.div_ceil(s.concurrency);
    let wall = Instant::now();
    let mut workers = Vec::new();
    for w in 0..s.concurrency {
        let one = one.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per);
            for i in 0..per {
                out.push(one(w * per + i).await);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    report(
        &format!("POST /chat/<id>, {} in flight", s.concurrency),
        all,
        Some(wall.elapsed()),
    );

    let single = (s.messages / 5).max(1);
    let wall = Instant::now();
    let mut all = Vec::with_capacity(single);
    for n in 0..single {
        all.push(one(n).await);
    }
    report("POST /chat/<id>, one in flight", all, Some(wall.elapsed()));
    app.shutdown().await;
}

async fn accept(s: &Settings, warm: bool) {
    let n = s.accepts;
    // Empty: no pool at all, every key is made on the spot. Warm: enough for every side.
    let (app, _dir) = server(s, if warm { 2 * n } else { 0 }, false).await;
    let addr = app.listen_addr.unwrap();
    let store = app.state.store.clone();
    let prefix = if warm { "warm" } else { "cold" };
    let ids = members(&store, prefix, n + 1, s.rsa_bits, s.dsa).await;
    let receiver = ids[0];
    let requesters: Vec<Id> = ids[1..].to_vec();
    let name = format!("{prefix}000");
    let conns = store
        .run(move |st| {
            let mut out = Vec::new();
            for r in &requesters {
                out.push(ghostcache::connections::request(st, r, &name, 0)?.unwrap());
            }
            Ok(out)
        })
        .await
        .unwrap();
    let _ = receiver;
    if s.dsa {
        // Generated once per installation (seconds): not part of an accept.
        app.state.dsa_params().await.unwrap();
    }
    if warm && !s.dsa {
        let t = Instant::now();
        while app.state.keypool.ready() < 2 * n {
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "the pool never filled"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (cookie, _) = login(addr, &format!("{prefix}000")).await;
    let mut all = Vec::new();
    for c in &conns {
        all.push(accept_over_http(addr, &cookie, c).await);
        if warm {
            // The next accept meets a full pool again, as a quiet server would.
            while !s.dsa && app.state.keypool.ready() < 2 * n {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    report(
        if warm {
            "accept, key pool warm"
        } else {
            "accept, key pool empty"
        },
        all,
        None,
    );
    app.shutdown().await;
}
