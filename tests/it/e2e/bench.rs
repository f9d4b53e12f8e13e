//! The end-to-end benchmark (issue 14), a test that prints figures and asserts none:
//!
//! ```text
//! cargo test --release --test it -- --ignored e2e_bench --nocapture
//! # or a release server under the debug harness (no release build of the tests):
//! cargo build --release && GC_BENCH_SERVE_BIN=target/release/ghostcache \
//!     cargo test --test it -- --ignored e2e_bench --nocapture
//! ```
//!
//! It also prints what the login form's PBKDF2 costs in each browser (210 000 and 600 000
//! iterations).
//!
//! On one `ghostcache serve` process (the real binary, default configuration but for the
//! rate limits, on loopback without Tor):
//! - **server-sealed**: alice sends `GC_BENCH_MESSAGES` messages (default 200) one at a
//!   time through the chat page's JavaScript-free form (`POST /chat/<id>`) while bob holds
//!   the chat's live stream open, each awaited there;
//! - **end-to-end**, per browser (`GC_BENCH_BROWSERS`, default `chromium,firefox`): two
//!   members in two browsers of that kind with end-to-end mode on and a conversation end
//!   to end; the sender's page sends as many messages one at a time. Each is timed from
//!   the moment the send starts in the sender's page (just before the form's submit event)
//!   to the moment its text is in the other member's page (a `MutationObserver` there):
//!   both read `Date.now()`, the same machine's clock. The WebSocket allows 5 frames a
//!   second after a burst of 20, so sends start at least 250 ms apart.
//!
//! For each, the server's CPU time (user + system, `/proc/<pid>/stat`, in clock ticks of
//! 10 ms) over the messages, less what it spends idle for as long right after (the same
//! pages, streams and sockets open), per message. Firefox runs with Tor Browser's preferences at
//! "Standard", whose `privacy.resistFingerprinting` coarsens the clock pages read; the
//! resolution measured in each browser is printed with its figures.

use std::path::Path;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;

use super::{WAIT, enable, go_end_to_end, launch, log_in, texts, wait_ready, wait_text};
use crate::support::Client;
use crate::support::chat::{LiveStream, connect, say};
use crate::support::process::Serve;
use crate::support::webdriver::{Browser, Engine};

/// `ghostcache serve` on loopback without Tor, with its defaults (RSA-3072, the production
/// argon2id cost) but rate limits that let one member send this many messages.
fn serve(out: &Path) -> Serve {
    use std::os::unix::fs::PermissionsExt;
    let data = out.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = out.join("ghostcache.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[rate_limits]\nmessages_per_minute = 100000\n\
             connection_requests_per_minute = 1000\nsearches_per_minute = 1000\n",
            data.display()
        ),
    )
    .unwrap();
    // GC_BENCH_SERVE_BIN=target/release/ghostcache: a release server under a debug
    // harness (the server's CPU is what is measured; the browsers are native either way).
    let bin = std::env::var("GC_BENCH_SERVE_BIN")
        .unwrap_or_else(|_| crate::support::process::BIN.to_owned());
    Serve::start_bin(
        &bin,
        &[
            "--config",
            config.to_str().unwrap(),
            "--no-tor",
            "--listen",
            "127.0.0.1:0",
        ],
        &out.join("ghostcache.stderr"),
        None,
    )
}

/// CPU time (user + system) of process `pid` so far, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // "pid (comm) state ppid …": utime and stime are fields 14 and 15, the 12th and 13th
    // after the closing parenthesis.
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / ticks_per_sec()
}

fn ticks_per_sec() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The `p`-th percentile (nearest rank) of sorted `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one run measured: a name, the latencies in ms (sorted), the server's CPU seconds
/// over the run, and over as long a time idle with the same pages open.
struct Run {
    what: String,
    note: String,
    latencies_ms: Vec<f64>,
    cpu_secs: f64,
    idle_cpu_secs: f64,
    wall: Duration,
}

impl Run {
    /// Server CPU seconds per message, less what it spends idle in as long a time.
    fn cpu_per_message(&self) -> f64 {
        (self.cpu_secs - self.idle_cpu_secs) / self.latencies_ms.len() as f64
    }

    fn print(&self) {
        let n = self.latencies_ms.len();
        eprintln!(
            "{}{}: {n} messages in {:.1} s; send → shown p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             server CPU {:.0} ms (idle as long: {:.0} ms), {:.2} ms per message",
            self.what,
            self.note,
            self.wall.as_secs_f64(),
            percentile(&self.latencies_ms, 50.0),
            percentile(&self.latencies_ms, 99.0),
            self.latencies_ms.last().copied().unwrap_or(0.0),
            self.cpu_secs * 1000.0,
            self.idle_cpu_secs * 1000.0,
            self.cpu_per_message() * 1000.0,
        );
    }
}

/// Server-sealed: `n` messages from `a` through the form, each awaited in `b`'s live
/// stream of the chat.
async fn server_sealed(serve: &Serve, a: &mut Client, b: &Client, chat: &str, n: usize) -> Run {
    let addr = serve.http.unwrap();
    let mut live = LiveStream::open(addr, b, &format!("/chat/{chat}/live?after=0")).await;
    assert_eq!(live.status, StatusCode::OK);
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    let cpu = cpu_secs(serve.pid);
    for i in 0..n {
        let text = format!("bench-sealed-{i:06}.");
        let sent = Instant::now();
        let r = say(a, chat, &text).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
        live.wait_for(&text, WAIT)
            .await
            .unwrap_or_else(|| panic!("{text} never reached the live stream"));
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu = cpu_secs(serve.pid) - cpu;
    let wall = started.elapsed();
    latencies.sort_by(f64::total_cmp);
    Run {
        what: "server-sealed".into(),
        note: " (POST /chat/<id> → the other's live stream, HTTP client)".into(),
        latencies_ms: latencies,
        cpu_secs: cpu,
        idle_cpu_secs: idle_cpu(serve, wall),
        wall,
    }
}

/// The server's CPU seconds over `wall` with nothing sent (the pages, streams and sockets
/// of the run still open: their keep-alives and presence ticks are not the messages').
fn idle_cpu(serve: &Serve, wall: Duration) -> f64 {
    let cpu = cpu_secs(serve.pid);
    std::thread::sleep(wall);
    cpu_secs(serve.pid) - cpu
}

/// The step of `Date.now()` in a page of `b`, in ms (the clock's resolution there).
fn clock_step_ms(b: &Browser) -> f64 {
    let v = b
        .execute(
            "let steps = []; let last = Date.now(); const end = last + 400; \
             while (steps.length < 5) { const t = Date.now(); \
               if (t !== last) { steps.push(t - last); last = t; } if (t > end) break; } \
             return steps.length ? Math.min(...steps) : null;",
            &[],
        )
        .unwrap();
    v.as_f64().unwrap_or(f64::NAN)
}

/// End-to-end: `n` messages from `alice`'s page to `bob`'s, one at a time.
fn end_to_end(serve: &Serve, engine: Engine, alice: &Browser, bob: &Browser, n: usize) -> Run {
    // In bob's page: stamp every message as it is added to the list.
    bob.execute(
        "const list = document.getElementById('e2e-messages'); \
         new MutationObserver((records) => { const now = Date.now(); \
           for (const r of records) for (const node of r.addedNodes) \
             if (node.nodeType === 1 && !node.dataset.benchShown) node.dataset.benchShown = String(now); \
         }).observe(list, { childList: true }); return true",
        &[],
    )
    .unwrap();
    wait_ready(alice);
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    let cpu = cpu_secs(serve.pid);
    let mut next = Instant::now();
    for i in 0..n {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next = Instant::now() + Duration::from_millis(250);
        let text = format!("bench-e2e-{i:06}.");
        let sent_at = alice
            .execute(
                "document.getElementById('e2e-text').value = arguments[0]; \
                 const t = Date.now(); \
                 document.querySelector('#e2e-send button[type=submit]').click(); return t",
                &[json!(text)],
            )
            .unwrap()
            .as_f64()
            .unwrap();
        let mut shown_at = None;
        bob.wait_until(WAIT, |b| {
            let v = b.execute(
                "const li = Array.from(document.querySelectorAll('#e2e-messages li.msg')) \
                   .find((e) => { const t = e.querySelector('.text'); \
                                  return t && t.textContent === arguments[0]; }); \
                 return li ? Number(li.dataset.benchShown) : null",
                &[json!(text)],
            )?;
            shown_at = v.as_f64();
            Ok(shown_at.is_some())
        })
        .unwrap_or_else(|_| panic!("{text} never shown: {:?}", texts(bob, "#e2e-status")));
        latencies.push(shown_at.unwrap() - sent_at);
        // The sender's page clears the field on the server's ack; wait for it before the
        // next text goes in.
        wait_text(alice, "#e2e-status", "Sent.");
        alice
            .execute(
                "document.getElementById('e2e-status').textContent = ''; return true",
                &[],
            )
            .unwrap();
    }
    let cpu = cpu_secs(serve.pid) - cpu;
    let wall = started.elapsed();
    latencies.sort_by(f64::total_cmp);
    Run {
        what: format!("end-to-end in {engine:?}"),
        note: format!(
            " (page clock step {:.1} ms)",
            clock_step_ms(alice).max(clock_step_ms(bob))
        ),
        latencies_ms: latencies,
        cpu_secs: cpu,
        idle_cpu_secs: idle_cpu(serve, wall),
        wall,
    }
}

/// What a login with JavaScript costs the browser: the PBKDF2 of the login form (the 64
/// bytes: login secret and wrapping key) at the default count and at OWASP's current
/// figure for SHA-256; median of 5, in ms, timed here around each call (Firefox with Tor
/// Browser's preferences does not let a page time it: its clocks stand still or step by
/// 16 ms), so it includes one WebDriver round trip (about a millisecond on loopback).
fn pbkdf2_in(b: &Browser) -> Vec<(u64, f64)> {
    [210_000u64, 600_000]
        .into_iter()
        .map(|n| {
            // A new password each time: Firefox (NSS) caches a derivation it has made.
            let mut t: Vec<f64> = (0..5)
                .map(|i| {
                    let started = Instant::now();
                    let v = b
                        .execute_async(
                            "const done = arguments[arguments.length - 1];
                             GC.derive(arguments[1], 'AAAAAAAAAAAAAAAAAAAAAA', arguments[0])
                               .then((d) => done(d.login.length + d.wrap.length), (e) => done(String(e)));",
                            &[json!(n), json!(format!("bench password {n} {i}"))],
                        )
                        .unwrap();
                    assert_eq!(v, json!(64), "PBKDF2 in the browser: {v}");
                    started.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            t.sort_by(f64::total_cmp);
            (n, t[2])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints figures (cargo test --release --test it -- --ignored e2e_bench --nocapture)"]
async fn e2e_bench_send_to_shown_and_server_cpu() {
    let n: usize = env_or("GC_BENCH_MESSAGES", 200);
    let engines: Vec<Engine> = std::env::var("GC_BENCH_BROWSERS")
        .unwrap_or_else(|_| "chromium,firefox".into())
        .split(',')
        .map(|e| match e.trim() {
            "chromium" => Engine::Chromium,
            "firefox" => Engine::Firefox,
            other => panic!("GC_BENCH_BROWSERS: unknown browser {other:?}"),
        })
        .collect();
    let out = tempfile::tempdir().unwrap();
    let serve = serve(out.path());
    let addr = serve.http.unwrap();
    let origin = format!("http://{addr}");

    // A pair of members per browser, connected; the first pair also sends the
    // server-sealed messages, before its conversation moves to end-to-end.
    let mut pairs = Vec::new();
    for i in 0..engines.len() {
        let (sender, reader) = (format!("sender{i}"), format!("reader{i}"));
        let mut a = Client::new(addr);
        a.member(&sender).await;
        let mut b = Client::new(addr);
        b.member(&reader).await;
        let chat = connect(&mut a, &mut b, &reader).await;
        pairs.push((sender, reader, a, b, chat));
    }
    let mut runs = Vec::new();
    {
        let (_, _, a, b, chat) = &mut pairs[0];
        runs.push(server_sealed(&serve, a, b, chat, n).await);
    }
    let names: Vec<(String, String)> = pairs
        .iter()
        .map(|(s, r, ..)| (s.clone(), r.clone()))
        .collect();
    let e2e_runs = tokio::task::spawn_blocking(move || {
        let mut runs = Vec::new();
        let mut derivations = Vec::new();
        for (engine, (sender, reader)) in engines.into_iter().zip(names) {
            let (alice, bob) = (launch(engine, None), launch(engine, None));
            log_in(&alice, &origin, &sender);
            log_in(&bob, &origin, &reader);
            enable(&alice, &origin);
            enable(&bob, &origin);
            go_end_to_end(&alice, &bob, &reader, &origin);
            runs.push(end_to_end(&serve, engine, &alice, &bob, n));
            derivations.push((engine, pbkdf2_in(&alice)));
            drop((alice, bob));
        }
        (runs, serve, derivations)
    })
    .await
    .unwrap();
    let (e2e, serve, derivations) = e2e_runs;
    runs.extend(e2e);
    eprintln!(
        "e2e_bench: {n} messages each, one at a time, on one `ghostcache serve` ({}; harness: {} build)",
        std::env::var("GC_BENCH_SERVE_BIN")
            .unwrap_or_else(|_| crate::support::process::BIN.to_owned()),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for r in &runs {
        r.print();
    }
    let sealed = runs[0].cpu_per_message();
    for r in &runs[1..] {
        eprintln!(
            "server CPU per message, {} / server-sealed: {:.2}",
            r.what,
            r.cpu_per_message() / sealed
        );
    }
    for (engine, figures) in derivations {
        for (iterations, ms) in figures {
            eprintln!(
                "PBKDF2-SHA256 of a login form (64 bytes), {engine:?}, {iterations} iterations: median {ms:.0} ms"
            );
        }
    }
    drop(serve);
}
