//! File hosting over HTTP: upload and download throughput for a 50 MB file, and the
//! server's memory per concurrent download and per concurrent upload. The server runs in this process on a
//! loopback port; the client generates and checks bytes on the fly.
//!
//!     cargo bench --bench files
//!
//! Throughput is in MB/s (10^6 bytes of file per second), best of three. For memory, N
//! downloads are started at once and each reads 8 MB, then all pause mid-transfer while
//! the process's RSS is read: (RSS − RSS before) / N is what one open download holds.
//! Likewise for N uploads paused part-way (after 8 MB of a 20 MB file). The peak RSS
//! growth during each 50 MB transfer is sampled every 5 ms.
//! Under `cargo test` (no `--bench` argument) it runs one small round as a smoke test.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark binary: prints its figures and stops on the first failure"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

type AnyBody = BoxBody<Bytes, std::io::Error>;
const BOUNDARY: &str = "----ghostcache-bench";

#[derive(Clone)]
struct Browser {
    addr: SocketAddr,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    async fn send(&mut self, mut req: Request<AnyBody>) -> (StatusCode, Incoming) {
        let h = req.headers_mut();
        h.insert("host", self.addr.to_string().parse().unwrap());
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            h.insert("cookie", c.join("; ").parse().unwrap());
        }
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.unwrap();
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.insert(k.to_owned(), val.to_owned());
        }
        let status = resp.status();
        (status, resp.into_body())
    }

    async fn text(&mut self, req: Request<AnyBody>) -> (StatusCode, String) {
        let (status, body) = self.send(req).await;
        let bytes = body.collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn get(&mut self, path: &str) -> String {
        let req = Request::get(path).body(whole(Vec::new())).unwrap();
        self.text(req).await.1
    }

    async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, Incoming) {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let req = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(whole(body.join("&").into_bytes()))
            .unwrap();
        self.send(req).await
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn whole(bytes: Vec<u8>) -> AnyBody {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

fn attr(html: &str, selector: &str, name: &str) -> String {
    let doc = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse(selector).unwrap();
    doc.select(&sel)
        .next()
        .unwrap_or_else(|| panic!("{selector} not in page"))
        .value()
        .attr(name)
        .unwrap()
        .to_owned()
}

fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = ((offset + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
    }
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Samples this process's RSS every 5 ms until stopped; returns the peak.
struct Sampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl Sampler {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = rss();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss());
                std::thread::sleep(Duration::from_millis(5));
            }
            peak.max(rss())
        });
        Self { stop, handle }
    }

    fn peak(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Where an upload stops part-way: after `at` bytes it waits at `paused`, then at
/// `release`.
struct Pause {
    at: u64,
    paused: Arc<tokio::sync::Barrier>,
    release: Arc<tokio::sync::Barrier>,
}

/// Upload `size` bytes through the form (pausing once if asked); returns MB/s, the file's
/// page and its key.
async fn upload(b: &mut Browser, size: u64, pause: Option<Pause>) -> (f64, String, String) {
    let page = b.get("/file/upload").await;
    let csrf = attr(
        &page,
        "form[action=\"/file/upload\"] input[name=csrf]",
        "value",
    );
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"expiry_days\"\r\n\r\n1\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    let tail = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
    let length = head.len() as u64 + size + tail.len() as u64;
    const PIECE: u64 = 64 * 1024;
    let pieces = futures_util::stream::unfold((0u64, pause), move |(sent, pause)| async move {
        if sent >= size {
            return None;
        }
        let pause = match pause {
            Some(p) if sent >= p.at => {
                p.paused.wait().await;
                p.release.wait().await;
                None
            }
            other => other,
        };
        let mut buf = vec![0u8; PIECE.min(size - sent) as usize];
        pattern(sent, &mut buf);
        let n = buf.len() as u64;
        Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (sent + n, pause)))
    });
    let stream = futures_util::stream::iter([Ok(Bytes::from(head))])
        .chain(pieces)
        .chain(futures_util::stream::iter([Ok(Bytes::from(tail))]))
        .map(|r| r.map(Frame::data));
    let req = Request::post("/file/upload")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("content-length", length)
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap();
    let started = Instant::now();
    let (status, html) = b.text(req).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(status, StatusCode::OK, "{html}");
    let key = attr(&html, "input.key", "value");
    let path = attr(&html, "main a[href^=\"/file/\"]", "href");
    (size as f64 / secs / 1e6, path, key)
}

/// Start a download; returns its body once the headers are in.
async fn start_download(b: &mut Browser, path: &str, key: &str) -> Incoming {
    let page = b.get(path).await;
    let action = format!("{path}/download");
    let csrf = attr(
        &page,
        &format!("form[action=\"{action}\"] input[name=csrf]"),
        "value",
    );
    let (status, body) = b.post_form(&action, &[("csrf", &csrf), ("key", key)]).await;
    assert_eq!(status, StatusCode::OK);
    body
}

/// Read up to `limit` bytes of a download, checking them; returns the count.
async fn read(body: &mut Incoming, limit: u64) -> u64 {
    let mut offset = 0;
    let mut expected = Vec::new();
    while offset < limit {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        expected.resize(data.len(), 0);
        pattern(offset, &mut expected);
        assert!(data[..] == expected[..], "corrupt download at {offset}");
        offset += data.len() as u64;
    }
    offset
}

/// Wait until every transfer in `tasks` is paused (at `paused`), give the server
/// `settle`, read RSS, let them finish (at `release`) and print what each one held.
async fn print_held(
    before: u64,
    what: &str,
    settle: Duration,
    paused: &tokio::sync::Barrier,
    release: &tokio::sync::Barrier,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) {
    let n = tasks.len();
    paused.wait().await;
    tokio::time::sleep(settle).await;
    let during = rss();
    release.wait().await;
    for t in tasks {
        t.await.unwrap();
    }
    let grown = during.saturating_sub(before) as f64 / 1048576.0;
    println!(
        "  {n:>2} at once: RSS +{grown:.1} MiB in all, {:.2} MiB per {what}",
        grown / n as f64
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(bench));
}

async fn run(bench: bool) {
    let size: u64 = if bench { 50_000_000 } else { 2_000_000 };
    let rounds = if bench { 3 } else { 1 };
    let dir = tempfile::tempdir().unwrap();
    let mut config = ghostcache::config::Config {
        data_dir: Some(dir.path().join("data")),
        ..Default::default()
    };
    config.server.listen = Some("127.0.0.1:0".parse().unwrap());
    config.server.no_tor = true;
    config.crypto.rsa_bits = 2048;
    // No key pool: its key generations in the background would take a core from the
    // transfers measured here.
    config.crypto.rsa_pool_size = 0;
    config.rate_limits.uploads_per_member_per_minute = 1000;
    config.files.quota_bytes_per_member = 10_000_000_000;
    let options = ghostcache::app::StartOptions {
        clock: ghostcache::clock::Clock::system(),
        danger_fast_kdf: true,
    };
    let app = ghostcache::app::start(config, options).await.unwrap();
    let mut b = Browser {
        addr: app.listen_addr.unwrap(),
        cookies: BTreeMap::new(),
    };
    let page = b.get("/register").await;
    let csrf = attr(&page, "input[name=csrf]", "value");
    let fields = [
        ("csrf", csrf.as_str()),
        ("username", "bench"),
        ("password", "correct horse battery"),
        ("d_pass", "destroy everything now"),
    ];
    assert_eq!(
        b.post_form("/register", &fields).await.0,
        StatusCode::SEE_OTHER
    );
    let page = b.get("/login").await;
    let csrf = attr(&page, "input[name=csrf]", "value");
    let fields = [
        ("csrf", csrf.as_str()),
        ("username", "bench"),
        ("password", "correct horse battery"),
    ];
    assert_eq!(
        b.post_form("/login", &fields).await.0,
        StatusCode::SEE_OTHER
    );

    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("file of {size} bytes over HTTP on loopback, {build} build, best of {rounds}:");
    let mut best_up = 0f64;
    let mut best_down = 0f64;
    let mut best_raw = 0f64;
    let mut file = (String::new(), String::new());
    let mut peak_up = 0u64;
    let mut peak_down = 0u64;
    for _ in 0..rounds {
        let before = rss();
        let sampler = Sampler::start();
        let (up, path, key) = upload(&mut b, size, None).await;
        peak_up = peak_up.max(sampler.peak().saturating_sub(before));
        best_up = best_up.max(up);
        let before = rss();
        let sampler = Sampler::start();
        let started = Instant::now();
        let mut body = start_download(&mut b, &path, &key).await;
        assert_eq!(read(&mut body, u64::MAX).await, size);
        best_down = best_down.max(size as f64 / started.elapsed().as_secs_f64() / 1e6);
        peak_down = peak_down.max(sampler.peak().saturating_sub(before));
        let started = Instant::now();
        let req = Request::get(format!("{path}/raw"))
            .body(whole(Vec::new()))
            .unwrap();
        let (status, mut raw) = b.send(req).await;
        assert_eq!(status, StatusCode::OK);
        let mut blob = 0u64;
        while let Some(frame) = raw.frame().await {
            if let Ok(d) = frame.unwrap().into_data() {
                blob += d.len() as u64;
            }
        }
        best_raw = best_raw.max(blob as f64 / started.elapsed().as_secs_f64() / 1e6);
        file = (path, key);
    }
    println!("  upload (encrypt + store):      {best_up:7.1} MB/s");
    println!("  download (load + decrypt):     {best_down:7.1} MB/s");
    println!("  raw blob download:             {best_raw:7.1} MB/s of blob");
    println!(
        "  peak RSS growth during one transfer: upload {:.1} MiB, download {:.1} MiB",
        peak_up as f64 / 1048576.0,
        peak_down as f64 / 1048576.0
    );

    let counts: &[usize] = if bench { &[1, 4, 16] } else { &[2] };
    let partial = if bench { 8_000_000 } else { 500_000 };
    println!("memory per concurrent download (each paused after {partial} bytes):");
    for &n in counts {
        // Page views first, so that only the downloads differ.
        let before = rss();
        let barrier = Arc::new(tokio::sync::Barrier::new(n + 1));
        let release = Arc::new(tokio::sync::Barrier::new(n + 1));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (mut b, file, barrier, release) =
                (b.clone(), file.clone(), barrier.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                let mut body = start_download(&mut b, &file.0, &file.1).await;
                assert!(read(&mut body, partial).await >= partial);
                barrier.wait().await;
                release.wait().await;
                drop(body);
            }));
        }
        let settle = Duration::from_millis(300);
        print_held(before, "download", settle, &barrier, &release, tasks).await;
    }

    let upload_counts: &[usize] = if bench { &[1, 4] } else { &[2] };
    let upload_size = if bench { 20_000_000 } else { 1_000_000 };
    println!("memory per concurrent upload (each paused after {partial} of {upload_size} bytes):");
    for &n in upload_counts {
        let before = rss();
        let paused = Arc::new(tokio::sync::Barrier::new(n + 1));
        let release = Arc::new(tokio::sync::Barrier::new(n + 1));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (mut b, paused, release) = (b.clone(), paused.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                let pause = Pause {
                    at: partial,
                    paused,
                    release,
                };
                upload(&mut b, upload_size, Some(pause)).await;
            }));
        }
        // Time for the server to seal and write what it was sent.
        let settle = Duration::from_millis(500);
        print_held(before, "upload", settle, &paused, &release, tasks).await;
    }
    app.shutdown().await;
}
