//! Encrypted file hosting over HTTP, as a browser would use it: upload with the key shown
//! once, downloads with the key, the raw blob decrypted offline (Python `cryptography`
//! and `ghostcache decrypt`), memory during 200 MB transfers, expiry, access rules,
//! hostile names, limits, aborted uploads, what is left at rest, account deletion, CSRF.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};

use crate::support::client::{
    AnyBody, BOUNDARY, Part, Resp, generated, multipart, part_head, whole,
};
use crate::support::{Client, PW, TestServer};
use ghostcache::files::{self, RowCounts};

mod transfers;

const DAY: i64 = 86_400;

/// Held by the tests that measure this process's memory, and by those that move tens of
/// megabytes, so that the ones do not measure the others.
pub(crate) static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const MB: u64 = 1_000_000;

fn rows(server: &TestServer) -> RowCounts {
    files::count_rows(&server.state().store).unwrap()
}

/// Deterministic, incompressible-looking content: byte `offset` of the stream is a
/// function of the offset, so a test can check a download piece by piece.
fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let n = offset + i as u64;
        let mut z = (n / 8).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        *b = (z >> ((n % 8) * 8)) as u8;
    }
}

pub(crate) fn content(len: usize, marker: &str) -> Vec<u8> {
    let mut v = vec![0u8; len];
    pattern(0, &mut v);
    v[..marker.len()].copy_from_slice(marker.as_bytes());
    let mid = len / 2;
    v[mid..mid + marker.len()].copy_from_slice(marker.as_bytes());
    v
}

/// The key shown on the upload result page.
pub(crate) fn key_of(r: &Resp) -> String {
    let sel = scraper::Selector::parse("input.key").unwrap();
    let doc = r.html();
    let input = doc
        .select(&sel)
        .next()
        .unwrap_or_else(|| panic!("no key on {}", r.text()));
    input.value().attr("value").unwrap().to_owned()
}

/// The file's page, from the upload result page.
pub(crate) fn file_path(r: &Resp) -> String {
    let sel = scraper::Selector::parse("main a[href^=\"/file/\"]").unwrap();
    r.html()
        .select(&sel)
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .to_owned()
}

async fn upload_ok(c: &mut Client, name: &str, bytes: &[u8]) -> (String, String) {
    let r = c.upload(name, bytes, "365").await;
    assert_eq!(r.status, StatusCode::OK, "upload failed: {}", r.text());
    (file_path(&r), key_of(&r))
}

pub(crate) async fn download(c: &mut Client, path: &str, key: &str) -> Resp {
    c.submit(path, &format!("{path}/download"), &[("key", key)])
        .await
}

/// The start of an upload written by hand on a raw connection: the request head
/// (declaring 40 MB, so the server keeps reading) and the valid `csrf` part.
async fn raw_upload_start(c: &mut Client) -> Vec<u8> {
    let csrf = c.get("/file/upload").await.form_csrf("/file/upload");
    let cookie: Vec<String> = c.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut start = format!(
        "POST /file/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 40000000\r\n\r\n",
        cookie.join("; ")
    )
    .into_bytes();
    start.extend(part_head("csrf", None, None));
    start.extend_from_slice(csrf.as_bytes());
    start.extend_from_slice(b"\r\n");
    start
}

/// The download form's request, to send with `send_streaming` and read piece by piece.
async fn download_request(c: &mut Client, path: &str, key: &str) -> Request<AnyBody> {
    let csrf = c.get(path).await.form_csrf(&format!("{path}/download"));
    let form = crate::support::client::encode_form(&[("csrf", &csrf), ("key", key)]);
    Request::builder()
        .method(Method::POST)
        .uri(format!("{path}/download"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(whole(form.into_bytes()))
        .unwrap()
}

pub(crate) async fn share(c: &mut Client, path: &str, username: &str) -> Resp {
    c.submit(path, &format!("{path}/share"), &[("username", username)])
        .await
}

fn random_file_path() -> String {
    format!(
        "/file/{}",
        files::id_to_url(&ghostcache::crypto::random_bytes::<16>())
    )
}

/// Resident memory of this process (server and client both), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Samples RSS every 10 ms until stopped; returns the peak.
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = rss_bytes();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(rss_bytes())
        });
        Self { stop, handle }
    }

    fn peak(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_download_with_the_key_shown_once() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("alice").await;
    let data = content(700_000, "Marker-Round-Trip-3e9d");

    let up = c.upload("report.pdf", &data, "30").await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text());
    let key = key_of(&up);
    assert_eq!(key.len(), 44);
    assert!(key.ends_with('='));
    assert_eq!(
        up.text().matches(&key).count(),
        1,
        "the key is on the page once"
    );
    assert!(up.text().contains("only time the key is shown"));
    assert_eq!(up.texts("p.notice strong"), vec!["report.pdf"]);
    let path = file_path(&up);
    assert_eq!(path.len(), "/file/".len() + 22);
    assert_eq!(
        rows(&server),
        RowCounts {
            files: 1,
            chunks: 3, // 700 000 bytes in 256 KiB chunks
            owner_index: 1,
            grants: 0,
            grantee_index: 0,
        }
    );

    // Never again: not on the file page, not on the list.
    let page = c.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.texts("h1"), vec!["report.pdf"]);
    assert!(!page.text().contains(&key));
    let list = c.get("/files").await;
    assert_eq!(list.texts("td.name a"), vec!["report.pdf"]);
    assert!(!list.text().contains(&key));

    let got = download(&mut c, &path, &key).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        got.header("content-disposition"),
        Some("attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf")
    );
    assert_eq!(got.header("content-length"), Some("700000"));
    assert!(got.body == data, "downloaded bytes differ");

    // A wrong key (a valid one, of nothing) and a malformed one: a page, no file bytes.
    let wrong = ghostcache::crypto::SecretKey::generate()
        .to_base64()
        .to_string();
    let r = download(&mut c, &path, &wrong).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text().contains("This key does not open this file."));
    assert!(!r.text().contains("Marker-Round-Trip"));
    assert!(r.header("content-disposition").is_none());
    for bad in ["", "not a key", &key[..43], &format!("{key}A")] {
        let r = download(&mut c, &path, bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(r.text().contains("That is not a key."));
    }

    // An empty file round-trips too.
    let (empty_path, empty_key) = upload_ok(&mut c, "empty.txt", b"").await;
    let r = download(&mut c, &empty_path, &empty_key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());

    // Logged out, the pages are not there.
    let mut stranger = server.client();
    assert_eq!(stranger.get("/files").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        stranger.get("/file/upload").await.status,
        StatusCode::SEE_OTHER
    );
}

/// The Python example of README.md's "Files" section, verbatim.
fn readme_python_example() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```python\n")
        .expect("README has a python example")
        + 10;
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_owned()
}

/// Write `key` and `blob` into `dir`, then decrypt the blob offline with Python's
/// `cryptography` (README's example as written) and with `ghostcache decrypt --key-file`:
/// both must give back `plain`. Returns what `ghostcache decrypt` wrote to standard error.
pub(crate) fn decrypts_offline(
    dir: &std::path::Path,
    key: &str,
    blob: &[u8],
    plain: &[u8],
) -> String {
    std::fs::write(dir.join("key.txt"), format!("{key}\n")).unwrap();
    std::fs::write(dir.join("file.blob"), blob).unwrap();
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg(readme_python_example())
        .current_dir(dir)
        .output()
        .expect("python3 is installed (scripts/test.sh installs python3-cryptography)");
    assert!(
        py.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(std::fs::read(dir.join("file.out")).unwrap() == plain);
    let out = dir.join("cli.out");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ghostcache"))
        .args(["decrypt", "--key-file"])
        .arg(dir.join("key.txt"))
        .arg(dir.join("file.blob"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == plain);
    String::from_utf8_lossy(&run.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raw_blob_decrypts_with_python_and_ghostcache_decrypt() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("bea").await;
    let data = content(600_000, "Marker-Raw-Blob-77c1");
    let (path, key) = upload_ok(&mut c, "data.bin", &data).await;

    let raw = c.get(&format!("{path}/raw")).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        raw.header("content-disposition"),
        Some("attachment; filename=\"data.bin.fernet\"; filename*=UTF-8''data.bin.fernet")
    );
    assert_eq!(
        raw.header("content-length").unwrap(),
        raw.body.len().to_string()
    );
    let blob = raw.body.to_vec();
    assert!(blob.ends_with(b"\n"));
    let lines: Vec<&[u8]> = blob[..blob.len() - 1].split(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        // Version byte 0x80, then the chunk's place where the time would be: 2 × index,
        // plus 1 on the last chunk (0, 2, 5 here).
        use base64::Engine;
        let mut head = [0x80u8; 9];
        head[1..].copy_from_slice(&files::chunk_stamp(i as u32, i == 2).to_be_bytes());
        let prefix = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(head);
        assert!(line.starts_with(prefix.as_bytes()), "a Fernet token");
        assert!(
            line.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(b))
        );
    }
    assert!(!blob.windows(10).any(|w| w == b"Marker-Raw"));

    let dir = tempfile::tempdir().unwrap();
    let stderr = decrypts_offline(dir.path(), &key, &blob, &data);
    assert!(!stderr.contains(&key));

    // ghostcache decrypt, the key from standard input.
    let bin = env!("CARGO_BIN_EXE_ghostcache");
    let stdin_out = dir.path().join("stdin.out");
    let mut child = std::process::Command::new(bin)
        .args(["decrypt", "--key-file", "-"])
        .arg(dir.path().join("file.blob"))
        .arg(&stdin_out)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(key.as_bytes()).unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert!(std::fs::read(&stdin_out).unwrap() == data);

    // A wrong key and a damaged blob: clear errors, OUT not written, no partial file left.
    let wrong = ghostcache::crypto::SecretKey::generate()
        .to_base64()
        .to_string();
    std::fs::write(dir.path().join("wrong.txt"), wrong).unwrap();
    let mut damaged = blob.clone();
    let second_line = lines[0].len() + 1 + 100;
    damaged[second_line] = if damaged[second_line] == b'A' {
        b'B'
    } else {
        b'A'
    };
    std::fs::write(dir.path().join("damaged.blob"), &damaged).unwrap();
    for (key_file, blob_file, expect) in [
        ("wrong.txt", "file.blob", "the key does not open this blob"),
        (
            "key.txt",
            "damaged.blob",
            "token 2 of the blob does not verify",
        ),
        ("file.blob", "file.blob", "does not hold a file key"),
    ] {
        let target = dir.path().join("never.out");
        let run = std::process::Command::new(bin)
            .args(["decrypt", "--key-file"])
            .arg(dir.path().join(key_file))
            .arg(dir.path().join(blob_file))
            .arg(&target)
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains(expect), "{stderr}");
        assert!(!target.exists());
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_and_download_keep_the_server_memory_flat() {
    const SIZE: u64 = 200 * 1024 * 1024;
    const LIMIT: u64 = 64 * 1024 * 1024;
    let _alone = MEMORY.lock().await;
    let server = TestServer::start_with(|c| {
        c.files.max_upload_bytes = 250 * MB;
        c.files.quota_bytes_per_member = 1000 * MB;
    })
    .await;
    let mut c = server.client();
    c.member("big").await;
    let csrf = c.get("/file/upload").await.form_csrf("/file/upload");

    // Upload: the body is generated as it is sent; the test holds 64 KiB of it at a time.
    let mut head = part_head("csrf", None, None);
    head.extend_from_slice(csrf.as_bytes());
    head.extend_from_slice(b"\r\n");
    head.extend(part_head("expiry_days", None, None));
    head.extend_from_slice(b"7\r\n");
    head.extend(part_head(
        "file",
        Some("big.bin"),
        Some("application/octet-stream"),
    ));
    let tail = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
    let length = head.len() as u64 + SIZE + tail.len() as u64;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/file/upload")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("content-length", length)
        .body(generated(head, SIZE, pattern, tail))
        .unwrap();
    let before = rss_bytes();
    let sampler = RssSampler::start();
    let started = Instant::now();
    let up = c.send_any(req).await;
    let up_secs = started.elapsed().as_secs_f64();
    let up_growth = sampler.peak().saturating_sub(before);
    assert_eq!(up.status, StatusCode::OK, "{}", up.text());
    let path = file_path(&up);
    let key = key_of(&up);

    // Download: checked piece by piece as it arrives, never held whole.
    let req = download_request(&mut c, &path, &key).await;
    let before = rss_bytes();
    let sampler = RssSampler::start();
    let started = Instant::now();
    let resp = c.send_streaming(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    let mut body = resp.body;
    let mut offset = 0u64;
    let mut expected = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        expected.resize(data.len(), 0);
        pattern(offset, &mut expected);
        assert!(data[..] == expected[..], "mismatch near byte {offset}");
        offset += data.len() as u64;
    }
    let down_secs = started.elapsed().as_secs_f64();
    let down_growth = sampler.peak().saturating_sub(before);
    assert_eq!(offset, SIZE);

    eprintln!(
        "200 MiB: upload {:.1} s, peak RSS growth {:.1} MiB; download {:.1} s, peak RSS growth {:.1} MiB",
        up_secs,
        up_growth as f64 / 1048576.0,
        down_secs,
        down_growth as f64 / 1048576.0
    );
    assert!(up_growth < LIMIT, "upload grew RSS by {up_growth} bytes");
    assert!(
        down_growth < LIMIT,
        "download grew RSS by {down_growth} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_days_outside_1_to_365_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("cleo").await;
    for bad in ["0", "366", "-1", "abc", "", "1.5"] {
        let r = c.upload("x.txt", b"some bytes", bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(r.text().contains(files::EXPIRY_MESSAGE), "{bad:?}");
        assert_eq!(r.texts("h1"), vec!["Upload a file"], "the form again");
        assert!(rows(&server).is_empty(), "{bad:?} stored something");
    }

    // `expiry_days` after the file (a hand-made client): honoured, and a bad value then
    // discards what was already stored.
    let data = content(400_000, "after");
    let upload_with_expiry_last = |csrf: String, days: &str| {
        multipart(&[
            Part::Text("csrf".into(), csrf),
            Part::File {
                name: "file".into(),
                filename: "late.bin".into(),
                content_type: "application/octet-stream".into(),
                bytes: data.clone(),
            },
            Part::Text("expiry_days".into(), days.into()),
        ])
    };
    let csrf = c.get("/file/upload").await.form_csrf("/file/upload");
    let r = c
        .post_multipart("/file/upload", upload_with_expiry_last(csrf.clone(), "400"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(rows(&server).is_empty());
    let now = server.clock.now();
    let r = c
        .post_multipart("/file/upload", upload_with_expiry_last(csrf, "2"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let page = c.get(&file_path(&r)).await;
    let expected = [now, now + 5].map(|t| files::views::utc(files::expires_at(t, 2)));
    assert!(
        expected.iter().any(|e| page.text().contains(e.as_str())),
        "expiry in two days"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_files_vanish_at_once_and_the_sweeper_removes_every_row() {
    let server = TestServer::start().await;
    let mut bob = server.client();
    bob.member("bob").await;
    let mut c = server.client();
    c.member("dana").await;
    let (short, _) = {
        let r = c.upload("short.bin", &content(600_000, "short"), "1").await;
        assert_eq!(r.status, StatusCode::OK);
        (file_path(&r), key_of(&r))
    };
    assert_eq!(
        share(&mut c, &short, "bob").await.status,
        StatusCode::SEE_OTHER
    );
    let (long, long_key) = upload_ok(&mut c, "long.bin", &content(300_000, "long")).await;
    assert_eq!(
        rows(&server),
        RowCounts {
            files: 2,
            chunks: 5,
            owner_index: 2,
            grants: 1,
            grantee_index: 1,
        }
    );

    // Not yet.
    server.clock.advance(DAY - 2 * 3600);
    assert_eq!(
        ghostcache::sweeper::sweep(server.state())
            .await
            .unwrap()
            .files_deleted,
        0
    );

    server.clock.advance(2 * 3600);
    // Sessions idled out meanwhile: log in again. The expired file is gone for everyone
    // before any sweep.
    assert_eq!(c.login("dana", PW).await.status, StatusCode::SEE_OTHER);
    assert_eq!(bob.login("bob", PW).await.status, StatusCode::SEE_OTHER);
    assert_eq!(c.get(&short).await.status, StatusCode::NOT_FOUND);
    assert_eq!(bob.get(&short).await.status, StatusCode::NOT_FOUND);
    assert!(!c.get("/files").await.text().contains("short.bin"));

    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(report.files_deleted, 1);
    assert_eq!(report.uploads_discarded, 0);
    assert_eq!(
        rows(&server),
        RowCounts {
            files: 1,
            chunks: 2,
            owner_index: 1,
            grants: 0,
            grantee_index: 0,
        }
    );
    // The other file is intact.
    let r = download(&mut c, &long, &long_key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), 300_000);

    // A year later everything is gone (the account too, after 30 days idle).
    server.clock.advance(366 * DAY);
    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(report.accounts_deleted, 2);
    assert!(rows(&server).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_and_listed_members_learn_that_a_file_exists() {
    let server = TestServer::start().await;
    let mut alice = server.client();
    alice.member("alice").await;
    let mut bob = server.client();
    bob.member("bob").await;
    let mut carol = server.client();
    carol.member("carol").await;
    let mut stranger = server.client();
    let data = content(10_000, "Marker-Access");
    let (path, key) = upload_ok(&mut alice, "plans.txt", &data).await;
    let random = random_file_path();

    // Every route, for a member not on the list and for a stranger: the real file answers
    // exactly like a random id.
    let carol_csrf = carol.get("/files").await.csrf();
    for viewer in [&mut carol, &mut stranger] {
        for suffix in ["", "/raw"] {
            let real = viewer.get(&format!("{path}{suffix}")).await;
            let fake = viewer.get(&format!("{random}{suffix}")).await;
            assert_eq!(real.status, StatusCode::NOT_FOUND, "GET {suffix}");
            assert_eq!((real.status, real.text()), (fake.status, fake.text()));
        }
        for (action, fields) in [
            ("download", vec![("key", key.as_str())]),
            ("delete", vec![]),
            ("share", vec![("username", "carol")]),
            ("revoke", vec![("username", "bob")]),
        ] {
            let mut f = fields.clone();
            f.push(("csrf", carol_csrf.as_str()));
            let real = viewer.post_form(&format!("{path}/{action}"), &f).await;
            let fake = viewer.post_form(&format!("{random}/{action}"), &f).await;
            assert_eq!(
                (real.status, real.text()),
                (fake.status, fake.text()),
                "{action}"
            );
        }
    }
    // Carol's posts were valid forms, so hers were 404s (a stranger's were "log in").
    let r = carol
        .post_form(
            &format!("{path}/download"),
            &[("csrf", &carol_csrf), ("key", &key)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!carol.get("/u/alice").await.text().contains("plans.txt"));
    assert!(!carol.get("/files").await.text().contains("plans.txt"));

    // Listed: bob sees it under alice's profile and in his list, and can download it.
    assert_eq!(
        share(&mut alice, &path, "bob").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        share(&mut alice, &path, "BOB").await.status,
        StatusCode::SEE_OTHER,
        "idempotent"
    );
    assert_eq!(rows(&server).grants, 1);
    let profile = bob.get("/u/alice").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert_eq!(profile.texts("td.name a"), vec!["plans.txt"]);
    let list = bob.get("/files").await;
    assert_eq!(list.texts("table.shared td.name a"), vec!["plans.txt"]);
    assert_eq!(
        alice.get("/files").await.texts("td a[href=\"/u/bob\"]"),
        vec!["bob"]
    );
    let page = bob.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("Shared by"));
    assert!(
        !page.text().contains("/delete"),
        "no owner controls for a grantee"
    );
    let got = download(&mut bob, &path, &key).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body == data);
    assert_eq!(bob.get(&format!("{path}/raw")).await.status, StatusCode::OK);
    // Only the owner deletes or shares.
    let csrf = bob.get(&path).await.csrf();
    for (action, fields) in [("delete", vec![]), ("share", vec![("username", "carol")])] {
        let mut f = fields;
        f.push(("csrf", csrf.as_str()));
        let r = bob.post_form(&format!("{path}/{action}"), &f).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{action}");
        assert!(r.text().contains("Only the member who uploaded this file"));
    }
    assert_eq!(rows(&server).files, 1);
    assert_eq!(rows(&server).grants, 1);

    // Sharing with nobody or with oneself is refused clearly.
    for (name, msg) in [
        ("nobody-here", "No member has that name."),
        ("alice", "That is you"),
    ] {
        let r = share(&mut alice, &path, name).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text().contains(msg), "{name}");
    }

    // Revoking removes it from bob's view entirely.
    let r = alice
        .submit(&path, &format!("{path}/revoke"), &[("username", "bob")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(rows(&server).grants, 0);
    assert_eq!(rows(&server).grantee_index, 0);
    let gone = bob.get(&path).await;
    let fake = bob.get(&random).await;
    assert_eq!((gone.status, gone.text()), (fake.status, fake.text()));
    assert!(!bob.get("/u/alice").await.text().contains("plans.txt"));
    assert!(!bob.get("/files").await.text().contains("plans.txt"));
    // Revoking by the id the file page sends works too.
    share(&mut alice, &path, "bob").await;
    let page = alice.get(&path).await;
    let sel = scraper::Selector::parse("input[name=grantee]").unwrap();
    let grantee = page
        .html()
        .select(&sel)
        .next()
        .unwrap()
        .value()
        .attr("value")
        .unwrap()
        .to_owned();
    let r = alice
        .submit(&path, &format!("{path}/revoke"), &[("grantee", &grantee)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(rows(&server).grants, 0);
    // Profiles of unknown names are the plain 404.
    let r = bob.get("/u/nobody-here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.text(), bob.get("/no/such/page").await.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_file_names_are_sealed_escaped_and_give_one_safe_header() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("eve").await;
    let long = format!("{}.txt", "n".repeat(10_240));
    // (the filename parameter as a browser sends it, the name shown afterwards)
    let cases: Vec<(String, String)> = vec![
        ("../../etc/passwd".into(), "_.._etc_passwd".into()),
        (
            "%22<script>%22 & 'x'.html".into(),
            "\"<script>\" & 'x'.html".into(),
        ),
        (
            "in%0D%0AX-Injected: yes%0D%0A.txt".into(),
            "inX-Injected: yes.txt".into(),
        ),
        ("invoice\u{202E}fdp.exe".into(), "invoicefdp.exe".into()),
        (
            long.clone(),
            files::display_name(&files::received_name(&long)),
        ),
    ];
    for (sent, shown) in &cases {
        let data = content(1000, "hostile");
        let up = c.upload(sent, &data, "1").await;
        assert_eq!(up.status, StatusCode::OK, "{sent:.40}: {}", up.text());
        assert!(!up.text().contains("<script>"));
        assert_eq!(&up.texts("p.notice strong")[0], shown);
        let path = file_path(&up);
        let key = key_of(&up);
        assert_eq!(&c.get(&path).await.texts("h1")[0], shown);

        let got = download(&mut c, &path, &key).await;
        assert_eq!(got.status, StatusCode::OK);
        let values: Vec<_> = got.headers.get_all("content-disposition").iter().collect();
        assert_eq!(values.len(), 1, "one header");
        let v = values[0].to_str().unwrap();
        assert!(v.bytes().all(|b| (0x20..0x7f).contains(&b)), "{v:?}");
        assert!(got.headers.get("x-injected").is_none());
        assert!(v.starts_with("attachment; filename=\""));
        let star = v.split("filename*=UTF-8''").nth(1).unwrap();
        assert_eq!(&percent_decode(star), shown);
        assert!(got.body == data);
    }
    let list = c.get("/files").await;
    assert!(!list.text().contains("<script>"));
    let mut names = list.texts("td.name a");
    names.sort();
    let mut expected: Vec<String> = cases.iter().map(|(_, s)| s.clone()).collect();
    expected.sort();
    assert_eq!(names, expected);

    // A NUL (or a raw CR/LF) cannot even be sent inside a multipart header: the form is
    // refused as malformed and nothing is stored.
    let before = rows(&server);
    for raw in ["nul\0byte.txt", "raw\r\nbreak.txt"] {
        let r = c.upload(raw, b"x", "1").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{raw:?}");
        assert_eq!(rows(&server), before);
    }

    // Sealed at rest: none of the names is in the file.
    let dir = server.stop().await;
    let bytes = std::fs::read(dir.path().join(ghostcache::store::DB_FILE)).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for needle in [
        "etc/passwd",
        "<script>",
        "X-Injected",
        "invoice",
        "fdp.exe",
        &"n".repeat(64),
    ] {
        assert!(!contains(needle.as_bytes()), "{needle:.20} at rest");
    }
    assert!(contains(b"eve"), "sanity: the scan sees the file");
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_limit_get_413_and_leave_no_rows() {
    let server = TestServer::start_with(|c| c.files.max_upload_bytes = MB).await;
    let mut c = server.client();
    c.member("finn").await;
    let csrf = c.get("/file/upload").await.form_csrf("/file/upload");

    // Declared too large: refused before a byte is read.
    let cookie: Vec<String> = c.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let req = format!(
        "POST /file/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n--{BOUNDARY}\r\n",
        cookie.join("; ")
    );
    let resp =
        crate::support::client::raw(server.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 413 "), "{resp:.200}");
    assert!(resp.contains("larger than 1.0 MB"));
    assert!(rows(&server).is_empty());

    // Streamed without a length, growing past the limit part-way: rows were written and
    // are gone by the time the 413 arrives.
    let mut head = part_head("csrf", None, None);
    head.extend_from_slice(csrf.as_bytes());
    head.extend_from_slice(b"\r\n");
    head.extend(part_head(
        "file",
        Some("big.bin"),
        Some("application/octet-stream"),
    ));
    let tail = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/file/upload")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(generated(head, 3 * MB, pattern, tail))
        .unwrap();
    let r = c.send_any(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().contains("larger than 1.0 MB"));
    assert!(rows(&server).is_empty());

    // Exactly at the limit is fine.
    let (_, _) = upload_ok(&mut c, "exact.bin", &content(MB as usize, "exact")).await;
    assert_eq!(rows(&server).files, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_upload_leaves_no_rows() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("gus").await;
    let mut start = raw_upload_start(&mut c).await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    start.extend(part_head(
        "file",
        Some("partial.bin"),
        Some("application/octet-stream"),
    ));
    s.write_all(&start).await.unwrap();
    // Send until the server has stored chunks, then vanish.
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    while rows(&server).chunks == 0 {
        assert!(sent < 30 * MB, "the server never stored a chunk");
        pattern(sent, &mut buf);
        s.write_all(&buf).await.unwrap();
        sent += buf.len() as u64;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(rows(&server).files == 1);
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rows(&server).is_empty() {
        assert!(Instant::now() < deadline, "rows left: {:?}", rows(&server));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A sweep has nothing left to do.
    assert_eq!(
        ghostcache::sweeper::sweep(server.state())
            .await
            .unwrap()
            .uploads_discarded,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_uploads_left_by_a_crash_are_swept_at_start_up() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("hana").await;
    let owner = {
        let now = server.clock.now();
        server
            .state()
            .sessions
            .get(c.session().unwrap(), now)
            .unwrap()
            .user_id
    };
    // What a crash mid-upload leaves: an incomplete record with a chunk.
    let store = server.state().store.clone();
    let key = ghostcache::crypto::SecretKey::generate();
    ghostcache::files::store::write_batch(
        &store,
        ghostcache::files::store::Batch {
            file_id: [7; 16],
            owner,
            new_record: Some(ghostcache::files::FileRecord {
                owner,
                meta_sealed: String::new(),
                size: 0,
                chunks: 0,
                blob_bytes: 0,
                expires_at: server.clock.now() + DAY,
                complete: false,
            }),
            first_index: 0,
            tokens: vec![files::seal_chunk(&key, &[1u8; 1000], 0, false).unwrap()],
            plain_bytes: 1000,
            finish: None,
            quota: u64::MAX,
        },
    )
    .unwrap()
    .unwrap();
    // Make it durable, as any later commit would.
    ghostcache::store::schema::write_version(&store, ghostcache::store::schema::CURRENT_SCHEMA)
        .unwrap();
    drop(store);
    assert_eq!(rows(&server).chunks, 1);
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rows(&server).is_empty() {
        assert!(
            Instant::now() < deadline,
            "start-up sweep left {:?}",
            rows(&server)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_a_file_is_readable_at_rest() {
    let server = TestServer::start().await;
    let mut bob = server.client();
    bob.member("ivan").await;
    let mut c = server.client();
    c.member("jade").await;
    let marker = "Marker-Content-51f0c";
    let name = "Marker-Name-9a2b.txt";
    let mut data = Vec::new();
    for _ in 0..2000 {
        data.extend_from_slice(marker.as_bytes());
    }
    let (path, key) = upload_ok(&mut c, name, &data).await;
    assert_eq!(
        share(&mut c, &path, "ivan").await.status,
        StatusCode::SEE_OTHER
    );
    let raw_key = ghostcache::crypto::SecretKey::from_base64(&key).unwrap();
    let key_bytes = *raw_key.expose();
    let dir = server.stop().await;
    let bytes = std::fs::read(dir.path().join(ghostcache::store::DB_FILE)).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(marker.as_bytes()), "file content");
    assert!(!contains(b"Marker-"), "any part of the marker");
    assert!(!contains(name.as_bytes()), "file name");
    assert!(!contains(key.as_bytes()), "base64 key");
    assert!(!contains(&key_bytes), "raw key");
    assert!(
        !contains(&key_bytes[..16]) && !contains(&key_bytes[16..]),
        "half of the key"
    );
    assert!(contains(b"jade"), "sanity: the scan sees the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_deletes_its_files_chunks_and_grants() {
    let server = TestServer::start().await;
    let mut kim = server.client();
    kim.member("kim").await;
    let mut leo = server.client();
    leo.member("leo").await;
    let (kim_a, _) = upload_ok(&mut kim, "a.bin", &content(600_000, "a")).await;
    upload_ok(&mut kim, "b.bin", &content(1000, "b")).await;
    share(&mut kim, &kim_a, "leo").await;
    let (leo_file, leo_key) = upload_ok(&mut leo, "mine.bin", &content(1000, "m")).await;
    share(&mut leo, &leo_file, "kim").await;
    assert_eq!(rows(&server).files, 3);
    assert_eq!(rows(&server).grants, 2);

    let r = kim
        .submit("/settings", "/settings/delete", &[("current_password", PW)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // Kim's files go; leo's share with kim stays while a decoy holds kim's name (see
    // tests/it/decoy.rs): to leo, kim simply never answers. The name in that grant is
    // sealed to a delivery key whose private half is gone.
    assert_eq!(
        rows(&server),
        RowCounts {
            files: 1,
            chunks: 1,
            owner_index: 1,
            grants: 1,
            grantee_index: 1,
        }
    );
    // Leo's views lose kim's files without errors.
    let list = leo.get("/files").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.texts("td.name a"), vec!["mine.bin"]);
    assert!(!list.text().contains("a.bin"));
    assert_eq!(leo.get(&kim_a).await.status, StatusCode::NOT_FOUND);
    let profile = leo.get("/u/kim").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert!(!profile.text().contains("a.bin"));
    let page = leo.get(&leo_file).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.texts("ul.grantees li a"), vec!["kim"]);
    assert_eq!(
        download(&mut leo, &leo_file, &leo_key).await.status,
        StatusCode::OK
    );
    // The destruction password takes the files too (and the share of leo's file with
    // kim's decoy with them).
    let mut again = server.client();
    let _ = again.login("leo", crate::support::DPW).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rows(&server).is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", rows(&server));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_form_needs_its_csrf_token() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("mia").await;
    let mut other = server.client();
    other.member("ned").await;
    let foreign = other.get("/files").await.csrf();
    let (path, key) = upload_ok(&mut c, "kept.bin", &content(1000, "k")).await;
    share(&mut c, &path, "ned").await;
    let before = rows(&server);

    // Upload: missing, wrong, foreign token, or the token not first.
    let file = || Part::File {
        name: "file".into(),
        filename: "new.bin".into(),
        content_type: "application/octet-stream".into(),
        bytes: content(300_000, "new"),
    };
    let own = c.get("/file/upload").await.form_csrf("/file/upload");
    let bodies = [
        multipart(&[Part::Text("expiry_days".into(), "1".into()), file()]),
        multipart(&[Part::Text("csrf".into(), "wrong".into()), file()]),
        multipart(&[Part::Text("csrf".into(), foreign.clone()), file()]),
        multipart(&[file(), Part::Text("csrf".into(), own)]),
    ];
    for body in bodies {
        let r = c.post_multipart("/file/upload", body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.text().contains("Form expired"));
        assert_eq!(rows(&server), before);
    }

    let posts: [(&str, Vec<(&str, &str)>); 4] = [
        ("download", vec![("key", key.as_str())]),
        ("delete", vec![]),
        ("share", vec![("username", "ned")]),
        ("revoke", vec![("username", "ned")]),
    ];
    for (action, fields) in &posts {
        for token in [None, Some("wrong"), Some(foreign.as_str())] {
            let mut f = fields.clone();
            if let Some(t) = token {
                f.push(("csrf", t));
            }
            let r = c.post_form(&format!("{path}/{action}"), &f).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{action} with {token:?}");
            assert!(r.header("content-disposition").is_none());
            assert_eq!(rows(&server), before);
        }
    }
    assert_eq!(
        other.get(&path).await.status,
        StatusCode::OK,
        "still shared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_gives_a_clear_error_and_keeps_nothing() {
    let server = TestServer::start_with(|c| {
        c.files.max_upload_bytes = MB;
        c.files.quota_bytes_per_member = MB + 500_000;
    })
    .await;
    let mut c = server.client();
    c.member("olga").await;
    upload_ok(&mut c, "first.bin", &content(900_000, "1")).await;
    let before = rows(&server);
    let r = c.upload("second.bin", &content(900_000, "2"), "1").await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().contains("Your storage is full"), "{}", r.text());
    assert_eq!(rows(&server), before);
    // What fits still fits.
    upload_ok(&mut c, "third.bin", &content(600_000, "3")).await;
    let r = c.upload("fourth.bin", b"x", "1").await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(rows(&server).files, 2);
    assert!(
        c.get("/files")
            .await
            .text()
            .contains("1.5 MB of your 1.5 MB")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_rate_limited_per_member() {
    let server = TestServer::start_with(|c| c.rate_limits.uploads_per_member_per_minute = 2).await;
    let mut c = server.client();
    c.member("pam").await;
    upload_ok(&mut c, "1.bin", b"1").await;
    upload_ok(&mut c, "2.bin", b"2").await;
    let r = c.upload("3.bin", b"3", "1").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rows(&server).files, 2);
    let mut other = server.client();
    other.member("quin").await;
    upload_ok(&mut other, "mine.bin", b"q").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upload_requests_are_refused_cleanly() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("rex").await;
    let csrf = c.get("/file/upload").await.form_csrf("/file/upload");

    // Not multipart.
    let r = c.post_form("/file/upload", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Garbage claiming to be multipart.
    let r = c.post_multipart("/file/upload", b"garbage".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("not a well-formed form"));
    let mut cut = multipart(&[Part::Text("csrf".into(), csrf.clone())]);
    cut.truncate(cut.len() - 10);
    cut.extend(part_head("file", Some("cut.bin"), None));
    cut.extend_from_slice(&[1u8; 1000]);
    let r = c.post_multipart("/file/upload", cut).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // No file chosen (a browser sends an empty, unnamed part), and two files.
    let empty = multipart(&[
        Part::Text("csrf".into(), csrf.clone()),
        Part::Text("expiry_days".into(), "3".into()),
        Part::File {
            name: "file".into(),
            filename: String::new(),
            content_type: "application/octet-stream".into(),
            bytes: Vec::new(),
        },
    ]);
    let r = c.post_multipart("/file/upload", empty).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("Choose a file"));
    let f = |n: &str| Part::File {
        name: "file".into(),
        filename: n.into(),
        content_type: "text/plain".into(),
        bytes: content(300_000, n),
    };
    let two = multipart(&[Part::Text("csrf".into(), csrf.clone()), f("a"), f("b")]);
    let r = c.post_multipart("/file/upload", two).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("one file at a time"));
    assert!(rows(&server).is_empty());
    // Logged out: refused before anything is read.
    let mut stranger = server.client();
    let body = multipart(&[Part::Text("csrf".into(), csrf), f("x")]);
    let r = stranger.post_multipart("/file/upload", body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(rows(&server).is_empty());
    // Unknown file routes and wrong methods.
    assert_eq!(c.get("/file/not-an-id").await.status, StatusCode::NOT_FOUND);
    assert_eq!(c.get("/file/upload/x").await.status, StatusCode::NOT_FOUND);
    let r = c.get(&format!("{}/download", random_file_path())).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("POST"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_deletes_a_file_and_every_row_goes() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("sam").await;
    let mut t = server.client();
    t.member("tia").await;
    let (path, _) = upload_ok(&mut c, "bye.bin", &content(600_000, "bye")).await;
    share(&mut c, &path, "tia").await;
    let r = c.submit(&path, &format!("{path}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/files?deleted=1"));
    assert!(rows(&server).is_empty());
    assert!(
        c.get("/files?deleted=1")
            .await
            .text()
            .contains("has been deleted")
    );
    assert_eq!(c.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(t.get(&path).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_unshares_both_ways_and_hides_the_profile_and_the_name() {
    let server = TestServer::start().await;
    let mut alice = server.client();
    alice.member("alice").await;
    let mut bob = server.client();
    bob.member("bob").await;
    let (alices, _) = upload_ok(&mut alice, "alices.txt", &content(5_000, "Marker-A")).await;
    let (bobs, _) = upload_ok(&mut bob, "bobs.txt", &content(5_000, "Marker-B")).await;
    assert_eq!(
        share(&mut alice, &alices, "bob").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        share(&mut bob, &bobs, "alice").await.status,
        StatusCode::SEE_OTHER
    );
    let profile = bob.get("/u/alice").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert!(
        profile.text().contains("alices.txt"),
        "shared file on the profile"
    );
    assert_eq!(rows(&server).grants, 2);

    let r = alice
        .submit("/connections", "/block", &[("username", "bob")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(rows(&server).grants, 0, "both grants went with the block");
    assert_eq!(rows(&server).grantee_index, 0);
    assert_eq!(rows(&server).files, 2, "the files themselves stay");
    for (c, path) in [(&mut bob, &alices), (&mut alice, &bobs)] {
        assert_eq!(c.get(path).await.status, StatusCode::NOT_FOUND);
    }

    // For both sides the other's profile now answers like a name nobody has.
    for (c, name) in [(&mut bob, "alice"), (&mut alice, "bob")] {
        let hidden = c.get(&format!("/u/{name}")).await;
        let nobody = c.get("/u/nobodyhere").await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "/u/{name}");
        assert_eq!(
            (hidden.status, hidden.text_without_csrf()),
            (nobody.status, nobody.text_without_csrf())
        );
    }
    // Sharing with the hidden member answers like sharing with nobody, and adds nothing.
    let hidden = share(&mut alice, &alices, "bob").await;
    let nobody = share(&mut alice, &alices, "nobodyhere").await;
    assert_eq!(hidden.status, StatusCode::BAD_REQUEST);
    assert!(hidden.text().contains("No member has that name."));
    assert_eq!(
        (hidden.status, hidden.text_without_csrf()),
        (nobody.status, nobody.text_without_csrf())
    );
    let hidden = share(&mut bob, &bobs, "alice").await;
    assert_eq!(
        hidden.status,
        StatusCode::BAD_REQUEST,
        "the blocked side too"
    );
    assert_eq!(rows(&server).grants, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_and_shares_by_name_spend_the_search_quota() {
    let server = TestServer::start_with(|c| c.rate_limits.searches_per_minute = 3).await;
    let mut alice = server.client();
    alice.member("alice").await;
    let (path, _) = upload_ok(&mut alice, "a.txt", &content(1_000, "Marker-Q")).await;
    for name in ["nobody1", "nobody2"] {
        assert_eq!(
            alice.get(&format!("/u/{name}")).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        share(&mut alice, &path, "nobody3").await.status,
        StatusCode::BAD_REQUEST
    );
    let r = alice.get("/u/alice").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    let r = share(&mut alice, &path, "nobody4").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = alice
        .submit("/connections", "/block", &[("username", "nobody5")])
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "block by name too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_record_does_not_stop_expired_files_from_going() {
    use ghostcache::store::tables::FILES;
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("erin").await;
    let r = c.upload("soon.bin", &content(1_000, "soon"), "1").await;
    assert_eq!(r.status, StatusCode::OK);
    {
        let store = &server.state().store;
        let txn = store.write().unwrap();
        txn.open_table(FILES)
            .unwrap()
            .insert([0u8; 16], b"not a file record".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    server.clock.advance(DAY + 60);
    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(
        report.files_deleted, 1,
        "the expired file went all the same"
    );
    assert_eq!(rows(&server).chunks, 0);
    assert_eq!(rows(&server).files, 1, "only the damaged record is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_whose_part_headers_never_end_is_refused_without_being_held() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("hana").await;
    let mut start = raw_upload_start(&mut c).await;
    let s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    start.extend_from_slice(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\nX-Pad: ").as_bytes(),
    );
    // A header line that never ends: 20 MB of it, more than the server drains after
    // refusing, so the answer comes while this is still sending.
    let writer = tokio::spawn(async move {
        wr.write_all(&start).await?;
        let pad = vec![b'a'; 64 * 1024];
        for _ in 0..(20 * MB / pad.len() as u64) {
            wr.write_all(&pad).await?;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&answer).contains("</html>") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            other => panic!("no answer: {other:?}"),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 400 "),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(text.contains("not a well-formed form"));
    writer.abort();
    assert!(rows(&server).is_empty(), "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_moved_in_the_store_abort_the_download_and_fail_decrypt() {
    use ghostcache::store::tables::FILE_CHUNKS;
    use redb::ReadableTable;
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("ivan").await;
    // Three chunks of 256 KiB (the last one shorter).
    let data = content(600_000, "Marker-Order");
    let (path, key) = upload_ok(&mut c, "ordered.bin", &data).await;
    let raw = c.get(&format!("{path}/raw")).await;
    let secret = ghostcache::crypto::SecretKey::from_base64(&key).unwrap();
    let mut out = Vec::new();
    let n = files::decrypt_blob(&secret, &mut &raw.body[..], &mut out).unwrap();
    assert_eq!((n, out == data), (600_000, true), "untouched, it decrypts");

    // Swap chunks 1 and 2 of the file in the store, as someone with the file could.
    let id = files::id_from_url(path.trim_start_matches("/file/")).unwrap();
    {
        let store = &server.state().store;
        let txn = store.write().unwrap();
        {
            let mut t = txn.open_table(FILE_CHUNKS).unwrap();
            let one = t.get((id, 1)).unwrap().unwrap().value().to_vec();
            let two = t.get((id, 2)).unwrap().unwrap().value().to_vec();
            t.insert((id, 1), two.as_slice()).unwrap();
            t.insert((id, 2), one.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let raw = c.get(&format!("{path}/raw")).await;
    assert!(matches!(
        files::decrypt_blob(&secret, &mut &raw.body[..], &mut Vec::new()),
        Err(files::BlobError::OutOfPlace(2))
    ));
    // The download starts (the first chunk is in place) and is cut off at the moved one:
    // the client never gets a body of the declared length.
    let req = download_request(&mut c, &path, &key).await;
    let resp = c.send_streaming(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    let mut body = resp.body;
    let mut got = 0usize;
    let mut aborted = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => got += f.into_data().map(|d| d.len()).unwrap_or(0),
            Err(_) => {
                aborted = true;
                break;
            }
        }
    }
    assert!(aborted, "the download was not aborted");
    assert_eq!(got, 256 * 1024, "only the chunk in place was sent");
}
