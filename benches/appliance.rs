//! Figures for the appliance as a whole:
//!
//! 1. the cost of one login with the production argon2id policy, for a right password, a
//!    wrong one, an unknown name and the destruction password (they must look alike);
//! 2. the resident memory of an idle `serve --no-tor`;
//! 3. the time `ghostcache backup` takes for a 1 GB database;
//! 4. over a private Tor network on 127.0.0.1: the time from `serve` to the first
//!    onion page (median of 5 starts), request latency over the onion (median, p90), and
//!    the resident memory of the process with arti running.
//!
//!     cargo bench --bench appliance
//!
//! Under `cargo test` (no `--bench` argument) it runs a small version of 1–3 and skips 4.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark binary: prints its figures and stops on the first failure"
)]

#[path = "../tests/it/support/socks.rs"]
mod socks;
#[path = "../tests/it/tornet.rs"]
#[allow(
    dead_code,
    reason = "the launcher offers more than this benchmark uses"
)]
mod tornet;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

const BIN: &str = env!("CARGO_BIN_EXE_ghostcache");
const PW: &str = "correct horse battery";
const DPW: &str = "destroy everything now";

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(login_cost(if full { 30 } else { 3 }));
    idle_rss(Duration::from_secs(if full { 20 } else { 2 }));
    backup_time(if full { 1_000_000_000 } else { 16_000_000 });
    if full {
        onion();
    } else {
        println!("onion figures: skipped under `cargo test` (run `cargo bench --bench appliance`)");
    }
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A cookie-keeping HTTP/1.1 client over TCP or a SOCKS tunnel.
struct Browser {
    addr: SocketAddr,
    host: String,
    socks: Option<SocketAddr>,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn tcp(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            socks: None,
            cookies: BTreeMap::new(),
        }
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        form: Option<String>,
    ) -> (StatusCode, String) {
        let stream = match self.socks {
            Some(s) => socks::connect(s, &self.host, 80).await.unwrap(),
            None => tokio::net::TcpStream::connect(self.addr).await.unwrap(),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", c.join("; "));
        }
        let body = match form {
            Some(f) => {
                req = req.header("content-type", "application/x-www-form-urlencoded");
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = sender.send_request(req.body(body).unwrap()).await.unwrap();
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
        let status = resp.status();
        let text = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
            .into_owned();
        (status, text)
    }

    async fn csrf(&mut self, page: &str) -> String {
        let (_, text) = self.send("GET", page, None).await;
        let at = text.find("name=\"csrf\" value=\"").unwrap() + 19;
        text[at..at + 43].to_owned()
    }

    async fn post(
        &mut self,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let csrf = self.csrf(page).await;
        let mut body = format!("csrf={csrf}");
        for (k, v) in fields {
            body.push_str(&format!("&{k}={}", v.replace(' ', "+")));
        }
        self.send("POST", action, Some(body)).await
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn login_cost(n: usize) {
    let dir = private_dir();
    let mut config = ghostcache::config::Config {
        data_dir: Some(dir.path().join("data")),
        ..Default::default()
    };
    config.server.listen = Some("127.0.0.1:0".parse().unwrap());
    config.server.no_tor = true;
    config.rate_limits.login_per_username_per_minute = 100_000;
    config.rate_limits.register_per_minute = 100_000;
    let app = ghostcache::app::start(config, ghostcache::app::StartOptions::default())
        .await
        .unwrap();
    let addr = app.listen_addr.unwrap();
    let mut b = Browser::tcp(addr);
    for i in 0..=n {
        let name = format!("bench{i}");
        let (s, _) = b
            .post(
                "/register",
                "/register",
                &[("username", &name), ("password", PW), ("d_pass", DPW)],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
    }
    let timed = |label: &'static str| (label, Vec::with_capacity(n));
    let (mut ok, mut wrong, mut unknown, mut destroy) = (
        timed("right password"),
        timed("wrong password"),
        timed("unknown name"),
        timed("destruction password"),
    );
    // bench0..bench{n-1} are destroyed one by one; bench{n} stays for the other cases.
    let keeper = format!("bench{n}");
    for i in 0..n {
        let name = format!("bench{i}");
        for (which, user, password, want) in [
            (
                &mut wrong,
                keeper.as_str(),
                "not the password",
                StatusCode::FORBIDDEN,
            ),
            (&mut unknown, "nobody-at-all", PW, StatusCode::FORBIDDEN),
            (&mut ok, keeper.as_str(), PW, StatusCode::SEE_OTHER),
            (&mut destroy, name.as_str(), DPW, StatusCode::FORBIDDEN),
        ] {
            let mut c = Browser::tcp(addr);
            let csrf = c.csrf("/login").await;
            let body = format!(
                "csrf={csrf}&username={user}&password={}",
                password.replace(' ', "+")
            );
            let started = Instant::now();
            let (status, _body) = c.send("POST", "/login", Some(body)).await;
            which.1.push(started.elapsed());
            assert_eq!(status, want, "{} {user}: {}", which.0, _body);
        }
    }
    let cost = ghostcache::config::CryptoConfig::default();
    println!(
        "login with argon2id m={} KiB t={} p={}, {n} of each, over HTTP on loopback:",
        cost.argon2_memory_kib, cost.argon2_iterations, cost.argon2_parallelism
    );
    for (label, mut v) in [ok, wrong, unknown, destroy] {
        println!(
            "  {label:<22} p50 {:6.1} ms   p90 {:6.1} ms",
            ms(percentile(&mut v, 0.5)),
            ms(percentile(&mut v, 0.9))
        );
    }
    app.shutdown().await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Start the binary and wait for a line starting with `prefix` on its stdout.
fn spawn_serve(args: &[&str], prefix: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .env_remove("GHOSTCACHE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = loop {
        let line = lines.next().expect("serve exited").unwrap();
        if let Some(rest) = line.strip_prefix(prefix) {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, line)
}

fn stop(mut child: Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let _ = child.wait();
}

fn idle_rss(settle: Duration) {
    let dir = private_dir();
    let data = dir.path().join("data");
    let (child, _) = spawn_serve(
        &[
            "--no-tor",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "ghostcache: plain HTTP (not anonymous) at http://",
    );
    // Let the RSA key pool fill, then measure at rest.
    std::thread::sleep(settle);
    println!(
        "idle `serve --no-tor`: RSS {:.1} MiB",
        rss_kib(child.id()) as f64 / 1024.0
    );
    stop(child);
}

fn backup_time(bytes: u64) {
    let dir = private_dir();
    let path = dir.path().join(ghostcache::store::DB_FILE);
    let store = ghostcache::store::Store::open(&path).unwrap();
    let chunk = vec![b'x'; 256 * 1024];
    let chunks = bytes / chunk.len() as u64;
    let per_txn = 256u64;
    let mut written = 0u64;
    while written < chunks {
        let txn = store.write().unwrap();
        {
            let mut t = txn
                .open_table(ghostcache::store::tables::FILE_CHUNKS)
                .unwrap();
            for i in written..(written + per_txn).min(chunks) {
                let id: [u8; 16] = ghostcache::crypto::random_bytes();
                t.insert((id, i as u32), chunk.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        written += per_txn;
    }
    drop(store);
    let size = std::fs::metadata(&path).unwrap().len();
    let out = dir.path().join("backup.redb");
    let started = Instant::now();
    let status = Command::new(BIN)
        .args([
            "backup",
            "--data-dir",
            dir.path().to_str().unwrap(),
            out.to_str().unwrap(),
        ])
        .env_remove("GHOSTCACHE_CONFIG")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let took = started.elapsed();
    assert!(status.success());
    println!(
        "backup of a {:.2} GB database: {:.2} s ({:.0} MB/s)",
        size as f64 / 1e9,
        took.as_secs_f64(),
        size as f64 / 1e6 / took.as_secs_f64()
    );
}

fn onion() {
    let dir = private_dir();
    let net = tornet::TorNet::start(&dir.path().join("net")).unwrap();
    println!(
        "private Tor network ready in {:.1} s",
        net.ready_after.as_secs_f64()
    );
    let left = net.secs_until_time_period_change();
    if left < 360 {
        std::thread::sleep(Duration::from_secs(left + 45));
    }
    let data = dir.path().join("data");
    let config = dir.path().join("gc.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[tor]\nintro_rate_per_sec = 0\n{}",
            data.display(),
            net.ghostcache_network_toml()
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut first_page = Vec::new();
    let mut latencies = Vec::new();
    let mut rss = 0;
    for round in 0..5 {
        let started = Instant::now();
        let (child, address) = spawn_serve(
            &["--config", config.to_str().unwrap()],
            "ghostcache: onion service published at http://",
        );
        let mut b = Browser {
            addr: net.socks_addr(),
            host: address.clone(),
            socks: Some(net.socks_addr()),
            cookies: BTreeMap::new(),
        };
        rt.block_on(async {
            loop {
                // Until the descriptor is published and fetched the SOCKS connect fails
                // (reply 1): probe with a bare stream first, then load the page.
                let reachable = tokio::time::timeout(
                    Duration::from_secs(30),
                    socks::connect(net.socks_addr(), &address, 80),
                )
                .await
                .is_ok_and(|r| r.is_ok());
                if reachable {
                    let attempt =
                        tokio::time::timeout(Duration::from_secs(30), b.send("GET", "/", None))
                            .await;
                    if let Ok((StatusCode::OK, _)) = attempt {
                        break;
                    }
                }
                assert!(
                    started.elapsed() < Duration::from_secs(240),
                    "onion unreachable"
                );
                let _ = net.newnym();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        first_page.push(started.elapsed());
        if round == 0 {
            rt.block_on(async {
                for _ in 0..50 {
                    let t = Instant::now();
                    let (s, _) = b.send("GET", "/login", None).await;
                    assert_eq!(s, StatusCode::OK);
                    latencies.push(t.elapsed());
                }
            });
            rss = rss_kib(child.id());
        }
        stop(child);
        let _ = net.newnym();
    }
    println!(
        "onion: serve → first page, median of 5 starts: {:.2} s (all: {})",
        percentile(&mut first_page.clone(), 0.5).as_secs_f64(),
        first_page
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "onion: GET /login, 50 requests, new stream each: median {:.0} ms, p90 {:.0} ms",
        ms(percentile(&mut latencies, 0.5)),
        ms(percentile(&mut latencies, 0.9))
    );
    println!(
        "onion: RSS of serve with arti running: {:.1} MiB",
        rss as f64 / 1024.0
    );
}
