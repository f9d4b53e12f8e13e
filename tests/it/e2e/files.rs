//! Files encrypted and decrypted in the browser (issue 14.8): Chromium, and Firefox ESR
//! with Tor Browser's preferences at "Standard", with JavaScript on behind the recording
//! proxy; the blob they make read by Python's `cryptography` and `ghostcache decrypt`;
//! keys entered in the browser; and the server's checks of the tokens a browser (or
//! anyone) sends in place of a file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use redb::ReadableTable as _;
use serde_json::json;
use sha2::Digest as _;

use super::{WAIT, click, contains, launch, log_in, members, roomy, texts};
use crate::files::{MEMORY, content, decrypts_offline};
use crate::support::client::{Part, multipart};
use crate::support::record::RecordingProxy;
use crate::support::webdriver::{self, Browser, Engine};
use crate::support::{Client, TestServer};
use ghostcache::config::Config;
use ghostcache::files::{self, CHUNK_BYTES};

fn roomy_files(c: &mut Config) {
    roomy(c);
    c.files.max_upload_bytes = 60_000_000;
    c.files.quota_bytes_per_member = 500_000_000;
    c.rate_limits.uploads_per_member_per_minute = 10_000;
}

/// A browser of `engine` with JavaScript on, alice logged in at `base`, that saves
/// downloads into `downloads`.
fn browser(engine: Engine, base: &str, downloads: &Path) -> Browser {
    let b = launch(engine, Some(downloads));
    log_in(&b, base, "alice");
    b
}

fn visible(b: &Browser, css: &str) -> bool {
    b.execute(
        "const e = document.querySelector(arguments[0]); return !!e && !e.hidden && e.offsetParent !== null",
        &[json!(css)],
    )
    .unwrap()
        == json!(true)
}

/// Fill the upload form (an entered key or none) and submit it through the script.
fn upload(b: &Browser, base: &str, path: &Path, key: &str) {
    b.navigate(&format!("{base}/file/upload")).unwrap();
    b.wait_until(WAIT, |b| Ok(visible(b, ".e2e-file-browser")))
        .expect("the script took the form over");
    b.execute(
        "document.querySelector('input[name=key]').value = arguments[0]; return true",
        &[json!(key)],
    )
    .unwrap();
    let input = b.find("input[name=file]").unwrap();
    b.send_keys(&input, &path.to_string_lossy()).unwrap();
    click(b, "#e2e-file-upload button[type=submit]");
}

/// After [`upload`]: the key the page shows and the file's page.
fn uploaded(b: &Browser, wait: Duration) -> (String, String) {
    b.wait_until(wait, |b| {
        Ok(visible(b, "#e2e-file-done") || !texts(b, "#e2e-file-error").concat().is_empty())
    })
    .expect("the upload ended");
    let error = texts(b, "#e2e-file-error").concat();
    assert!(error.is_empty(), "upload refused: {error}");
    let v = b
        .execute(
            "return [document.getElementById('e2e-file-key').value, \
             document.getElementById('e2e-file-link').getAttribute('href')]",
            &[],
        )
        .unwrap();
    (
        v[0].as_str().unwrap().to_owned(),
        v[1].as_str().unwrap().to_owned(),
    )
}

/// The error the script shows after an upload attempt.
fn upload_error(b: &Browser) -> String {
    b.wait_until(WAIT, |b| {
        Ok(!texts(b, "#e2e-file-error").concat().is_empty())
    })
    .expect("an error is shown");
    texts(b, "#e2e-file-error").concat()
}

/// Open a file's page and submit its download form, which the script handles.
fn start_download(b: &Browser, base: &str, file_page: &str, key: &str) {
    b.navigate(&format!("{base}{file_page}")).unwrap();
    b.wait_until(WAIT, |b| Ok(visible(b, ".e2e-file-browser")))
        .expect("the script took the download form over");
    b.execute(
        "document.querySelector('#e2e-file-download input[name=key]').value = arguments[0]; return true",
        &[json!(key)],
    )
    .unwrap();
    click(b, "#e2e-file-download button[type=submit]");
}

/// Decrypt the file at `file_page` in the browser with `key`; the saved file's path, once
/// it holds `size` bytes.
fn download(
    b: &Browser,
    base: &str,
    file_page: &str,
    key: &str,
    dir: &Path,
    name: &str,
    size: u64,
) -> PathBuf {
    start_download(b, base, file_page, key);
    let target = dir.join(name);
    b.wait_until(Duration::from_secs(120), |b| {
        let error = texts(b, "#e2e-file-error").concat();
        assert!(error.is_empty(), "download refused: {error}");
        // Chromium writes `<name>.crdownload` and renames it when done; Firefox makes
        // `<name>` empty at once, writes `<name>.part` and moves it over `<name>` when done.
        let partial = std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".part") || n.ends_with(".crdownload")
        });
        Ok(!partial && std::fs::metadata(&target).is_ok_and(|m| m.len() == size))
    })
    .expect("the download was saved");
    target
}

/// The length of a file.
fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn sha256_file(path: &Path) -> Vec<u8> {
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

/// The raw blob of `file_page`, decrypted offline by Python's `cryptography` and
/// `ghostcache decrypt`: both give back `plain`.
async fn offline_decrypts(c: &mut Client, file_page: &str, key: &str, plain: &[u8]) {
    let raw = c.get(&format!("{file_page}/raw")).await;
    assert_eq!(raw.status, StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    decrypts_offline(dir.path(), key, &raw.body, plain);
}

/// Every byte the server received, concatenated.
fn received(proxy: &RecordingProxy) -> Vec<u8> {
    proxy.received().0.concat()
}

fn assert_never_sent(all: &[u8], key: &str, marker: &str) {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(key)
        .unwrap();
    let standard = base64::engine::general_purpose::STANDARD.encode(&raw);
    assert!(
        !contains(all, marker.as_bytes()),
        "the plaintext reached the server"
    );
    assert!(!contains(all, key.as_bytes()), "the key reached the server");
    assert!(
        !contains(all, standard.as_bytes()),
        "the key reached the server"
    );
    assert!(!contains(all, &raw), "the key reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_encrypted_and_decrypted_in_chromium_and_the_server_never_sees_the_key() {
    files_in_the_browser(Engine::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_encrypted_and_decrypted_in_firefox_and_the_server_never_sees_the_key() {
    files_in_the_browser(Engine::Firefox).await;
}

/// Files encrypted and decrypted in a browser of `engine`, behind the recording proxy.
async fn files_in_the_browser(engine: Engine) {
    let _guard = MEMORY.lock().await;
    let started = Instant::now();
    let server = TestServer::start_with(roomy_files).await;
    let proxy = RecordingProxy::start(server.addr).await;
    let mut cs = members(&server, &["alice"]).await;
    let a = &mut cs[0];
    let base = format!("http://{}", proxy.addr);
    let work = tempfile::tempdir().unwrap();
    let downloads = work.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();

    // Three chunks, the last one partial; a marker at its start and in its middle.
    let marker = "Marker-E2E-File-Plaintext-5b1d";
    let plain = content(2 * CHUNK_BYTES + 1234, marker);
    let source = work.path().join("notes.bin");
    std::fs::write(&source, &plain).unwrap();
    // A key of the member's own, as Python's `Fernet.generate_key()` makes them.
    let own_key = "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8=";
    let own_source = work.path().join("own.bin");
    let own_marker = "Marker-Own-Key-File-9e0a";
    let own_plain = content(1000, own_marker);
    std::fs::write(&own_source, &own_plain).unwrap();
    let empty_source = work.path().join("empty.bin");
    std::fs::write(&empty_source, b"").unwrap();

    let rows_before = files::count_rows(&server.state().store).unwrap().files;
    let (b2, dl, src, own_src, empty_src) = (
        base.clone(),
        downloads.clone(),
        source.clone(),
        own_source.clone(),
        empty_source.clone(),
    );
    let store = server.state().store.clone();
    let (key, page, own_page, empty_page, empty_key) = tokio::task::spawn_blocking(move || {
        let base = b2;
        let b = browser(engine, &base, &dl);
        // The upload page carries the script, with its integrity and policy.
        // A generated key.
        upload(&b, &base, &src, "");
        let (key, page) = uploaded(&b, WAIT);
        assert_eq!(key.len(), 44, "{key}");
        assert!(page.starts_with("/file/"), "{page}");

        // Keys entered in the browser are checked there, with the server's messages.
        let rows = files::count_rows(&store).unwrap().files;
        for (bad, says) in [
            ("not-a-key", "That key has 9 characters, not 44."),
            (
                "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/8=",
                "so it is standard base64",
            ),
            (&own_key[..43], "That key lacks its final =."),
            (
                "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_9=",
                "do not encode exactly 32 bytes",
            ),
        ] {
            upload(&b, &base, &src, bad);
            let error = upload_error(&b);
            assert!(error.contains(says), "{bad}: {error}");
            assert!(
                error.contains("44 characters of letters, digits, - and _"),
                "{error}"
            );
        }
        assert_eq!(
            files::count_rows(&store).unwrap().files,
            rows,
            "nothing stored"
        );

        // An entered key is the file's key.
        upload(&b, &base, &own_src, &format!(" {own_key}\n"));
        let (shown, own_page) = uploaded(&b, WAIT);
        assert_eq!(shown, own_key);
        // An empty file: one token of empty plaintext.
        upload(&b, &base, &empty_src, "");
        let (empty_key, empty_page) = uploaded(&b, WAIT);

        // The keyed download, decrypted in the browser, gives back the same bytes.
        let saved = download(&b, &base, &page, &key, &dl, "notes.bin", len(&src));
        assert_eq!(sha256_file(&saved), sha256_file(&src));
        let saved = download(&b, &base, &own_page, own_key, &dl, "own.bin", len(&own_src));
        assert_eq!(sha256_file(&saved), sha256_file(&own_src));
        let saved = download(&b, &base, &empty_page, &empty_key, &dl, "empty.bin", 0);
        assert_eq!(std::fs::read(saved).unwrap(), b"");

        // A wrong key is refused in the browser, and nothing is saved.
        start_download(&b, &base, &page, own_key);
        b.wait_until(WAIT, |b| {
            Ok(texts(b, "#e2e-file-error")
                .concat()
                .contains("This key does not open this file"))
        })
        .expect("a wrong key is named");
        b.quit().unwrap();
        (key, page, own_page, empty_page, empty_key)
    })
    .await
    .unwrap();
    assert_eq!(
        files::count_rows(&server.state().store).unwrap().files,
        rows_before + 3
    );

    // Neither the plaintext nor the keys ever reached the server.
    let all = received(&proxy);
    assert!(
        contains(&all, b"name=\"tokens\""),
        "the tokens went through the proxy"
    );
    assert_never_sent(&all, &key, marker);
    assert_never_sent(&all, own_key, own_marker);
    let db = std::fs::read(server.dir.path().join(ghostcache::store::DB_FILE)).unwrap();
    assert!(!contains(&db, marker.as_bytes()));

    // The server keeps them as its own: its pages name the file, its keyed download (the
    // JavaScript-free one) opens them, and the raw blob decrypts offline.
    let r = a.get(&page).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("notes.bin"), "the name is kept, sealed");
    assert!(r.text().contains(&format!("({} bytes)", plain.len())));
    let r = crate::files::download(a, &page, &key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == plain);
    offline_decrypts(a, &page, &key, &plain).await;
    offline_decrypts(a, &own_page, own_key, &own_plain).await;
    offline_decrypts(a, &empty_page, &empty_key, b"").await;

    // A stored chunk changed on the server: the browser's download stops at it, says so,
    // and saves nothing.
    let id = files::id_from_url(page.trim_start_matches("/file/")).unwrap();
    {
        let txn = server.state().store.write().unwrap();
        {
            let mut t = txn
                .open_table(ghostcache::store::tables::FILE_CHUNKS)
                .unwrap();
            let mut token = t.get((id, 1)).unwrap().unwrap().value().to_vec();
            let at = token.len() / 2;
            token[at] = if token[at] == b'A' { b'B' } else { b'A' };
            t.insert((id, 1), token.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    tokio::task::spawn_blocking(move || {
        let fresh = work.path().join("after-tampering");
        std::fs::create_dir(&fresh).unwrap();
        let b = browser(engine, &base, &fresh);
        start_download(&b, &base, &page, &key);
        b.wait_until(WAIT, |b| {
            Ok(texts(b, "#e2e-file-error")
                .concat()
                .contains("Part 2 of the file does not verify"))
        })
        .expect("a changed chunk is named");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            std::fs::read_dir(&fresh).unwrap().count(),
            0,
            "nothing saved"
        );
        b.quit().unwrap();
    })
    .await
    .unwrap();
    eprintln!(
        "files in {engine:?}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The tokens of `plain` under `key`, as the script sends them: one per line.
fn blob(key: &ghostcache::crypto::SecretKey, plain: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = if plain.is_empty() {
        vec![&[][..]]
    } else {
        plain.chunks(CHUNK_BYTES).collect()
    };
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        out.extend(files::seal_chunk(key, c, i as u32, i + 1 == chunks.len()).unwrap());
        out.push(b'\n');
    }
    out
}

/// A tokens upload as the script sends it, with extra fields first if any.
async fn post_tokens(
    c: &mut Client,
    extra: &[(&str, &str)],
    size: Option<usize>,
    tokens: Vec<u8>,
) -> crate::support::client::Resp {
    let csrf = c.get("/file/upload").await.form_csrf("/file/upload");
    let mut parts = vec![
        Part::Text("csrf".into(), csrf),
        Part::Text("expiry_days".into(), "7".into()),
    ];
    for (k, v) in extra {
        parts.push(Part::Text((*k).into(), (*v).into()));
    }
    if let Some(n) = size {
        parts.push(Part::Text("plain_size".into(), n.to_string()));
    }
    parts.push(Part::File {
        name: "tokens".into(),
        filename: "report.pdf".into(),
        content_type: "application/pdf".into(),
        bytes: tokens,
    });
    c.post_multipart("/file/upload", multipart(&parts)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_uploads_are_checked_line_by_line_and_refusals_keep_nothing() {
    let server = TestServer::start_with(roomy_files).await;
    let mut cs = members(&server, &["alice"]).await;
    let a = &mut cs[0];
    let key = ghostcache::crypto::SecretKey::generate();
    let plain = content(2 * CHUNK_BYTES + 77, "Marker-Token-Upload-31c2");
    let good = blob(&key, &plain);
    let lines: Vec<&[u8]> = good
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let join = |ls: &[&[u8]]| {
        let mut v = Vec::new();
        for l in ls {
            v.extend_from_slice(l);
            v.push(b'\n');
        }
        v
    };
    let n = plain.len();
    let too_long = vec![b'A'; files::sealed::MAX_TOKEN_CHARS + 10];
    let cases: Vec<(&str, Option<usize>, Vec<u8>, &str)> = vec![
        (
            "not Fernet",
            Some(n),
            b"hello world, not a token\n".to_vec(),
            "Line 1 of the encrypted upload is not a Fernet token.",
        ),
        (
            "not Fernet later",
            Some(n),
            join(&[lines[0], b"gAAAAA!!", lines[2]]),
            "Line 2 of the encrypted upload is not a Fernet token.",
        ),
        (
            "oversized",
            Some(n),
            too_long,
            "Line 1 of the encrypted upload is longer than any token",
        ),
        (
            "oversized later",
            Some(n),
            [join(&lines[..1]), vec![b'B'; 3_000_000]].concat(),
            "Line 2 of the encrypted upload is longer than any token",
        ),
        (
            "reordered",
            Some(n),
            join(&[lines[1], lines[0], lines[2]]),
            "Line 1 of the encrypted upload is out of place",
        ),
        (
            "cut short",
            Some(n),
            join(&lines[..2]),
            "ended before its last chunk",
        ),
        (
            "extended",
            Some(n),
            join(&[lines[0], lines[1], lines[2], lines[2]]),
            "Line 4 of the encrypted upload is out of place",
        ),
        (
            "size lies",
            Some(n + 100),
            good.clone(),
            "does not hold as many bytes as it said",
        ),
        (
            "no size",
            None,
            good.clone(),
            "did not say how large the file is",
        ),
        ("empty", Some(0), Vec::new(), "ended before its last chunk"),
    ];
    for (what, size, tokens, says) in cases {
        let r = post_tokens(a, &[], size, tokens).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}");
        let error = r.texts("p.error").concat();
        assert!(error.contains(says), "{what}: {error}");
        assert!(error.contains("Nothing was kept"), "{what}: {error}");
        let rows = files::count_rows(&server.state().store).unwrap();
        assert_eq!((rows.files, rows.chunks), (0, 0), "{what}: nothing stored");
    }
    // A key sent along with tokens is refused: it would defeat the browser's encryption.
    let r = post_tokens(a, &[("key", &key.to_base64())], Some(n), good.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(files::count_rows(&server.state().store).unwrap().files, 0);
    // Over the size limit, declared: 413 before a line is read.
    let r = post_tokens(a, &[], Some(60_000_001), good.clone()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(files::count_rows(&server.state().store).unwrap().files, 0);

    // Well-formed tokens are stored as the server's own: the answer is the file's page,
    // which names it, and the JavaScript-free keyed download opens it.
    let r = post_tokens(a, &[], Some(n), good.clone()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let page = r.header("location").unwrap().to_owned();
    assert!(page.starts_with("/file/"), "{page}");
    let shown = a.get(&page).await;
    assert!(shown.text().contains("report.pdf") && shown.text().contains("application/pdf"));
    assert!(shown.text().contains(&format!("({n} bytes)")));
    let r = crate::files::download(a, &page, &key.to_base64()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == plain);
    let raw = a.get(&format!("{page}/raw")).await;
    assert!(raw.body == good, "the blob is exactly the lines sent");
    let rows = files::count_rows(&server.state().store).unwrap();
    assert_eq!((rows.files, rows.chunks), (1, 3));
    // Both pages carry the one script, with its integrity, and the policy that lets it
    // run and fetch from this origin only; the same pages work without it.
    for path in ["/file/upload", &page] {
        let r = a.get(path).await;
        assert_eq!(
            r.header("content-security-policy"),
            Some(ghostcache::web::response::CSP_WITH_SCRIPTS)
        );
        let html = r.html();
        let sel = scraper::Selector::parse("script").unwrap();
        let scripts: Vec<_> = html.select(&sel).collect();
        assert_eq!(scripts.len(), 1, "{path}");
        let files_js = &*ghostcache::web::assets::E2E_FILES;
        assert_eq!(scripts[0].value().attr("src"), Some(&*files_js.asset.path));
        assert_eq!(
            scripts[0].value().attr("integrity"),
            Some(&*files_js.integrity)
        );
        assert!(scripts[0].inner_html().is_empty(), "no inline script");
    }
}

/// The time Chromium takes to encrypt and upload, then download and decrypt, a 50 MB
/// file (`files.max_upload_bytes` by default). Prints the figures; asserts the bytes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_file_in_chromium() {
    a_50_mb_file(Engine::Chromium).await;
}

/// The same in Firefox ESR with Tor Browser's preferences at "Standard".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_file_in_firefox() {
    a_50_mb_file(Engine::Firefox).await;
}

async fn a_50_mb_file(engine: Engine) {
    let _guard = MEMORY.lock().await;
    let server = TestServer::start_with(roomy_files).await;
    let _members = members(&server, &["alice"]).await;
    let base = format!("http://{}", server.addr);
    let work = tempfile::tempdir().unwrap();
    let downloads = work.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let source = work.path().join("big.bin");
    std::fs::write(&source, content(50_000_000, "Marker-Fifty-MB")).unwrap();
    tokio::task::spawn_blocking(move || {
        let b = browser(engine, &base, &downloads);
        let started = Instant::now();
        upload(&b, &base, &source, "");
        let (key, page) = uploaded(&b, Duration::from_secs(600));
        let up = started.elapsed();
        let started = Instant::now();
        let saved = download(&b, &base, &page, &key, &downloads, "big.bin", len(&source));
        let down = started.elapsed();
        assert_eq!(sha256_file(&saved), sha256_file(&source));
        eprintln!(
            "50 MB in {engine:?}: encrypt + upload {:.1} s, download + decrypt {:.1} s",
            up.as_secs_f64(),
            down.as_secs_f64()
        );
        b.quit().unwrap();
    })
    .await
    .unwrap();
}

/// Without JavaScript (Tor Browser at "Safest") the same pages work as before: the server
/// encrypts the upload and shows its key, and decrypts the keyed download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_the_server_encrypts_as_before() {
    let server = TestServer::start_with(roomy_files).await;
    let mut cs = members(&server, &["alice"]).await;
    let a = &mut cs[0];
    let session = a.session().unwrap().to_owned();
    let base = format!("http://{}", server.addr);
    let work = tempfile::tempdir().unwrap();
    let plain = content(CHUNK_BYTES + 10, "Marker-No-Script-File");
    let source = work.path().join("plain.bin");
    std::fs::write(&source, &plain).unwrap();
    let (key, page) = tokio::task::spawn_blocking(move || {
        let b = Browser::launch(&webdriver::Config::default()).expect("chromium");
        b.navigate(&format!("{base}/login")).unwrap();
        b.add_cookie("gc_session", &session).unwrap();
        b.navigate(&format!("{base}/file/upload")).unwrap();
        assert!(!visible(&b, ".e2e-file-browser"), "the script did not run");
        let input = b.find("input[name=file]").unwrap();
        b.send_keys(&input, &source.to_string_lossy()).unwrap();
        let button = b.find("#e2e-file-upload button[type=submit]").unwrap();
        b.click(&button).unwrap();
        b.wait_until(WAIT, |b| Ok(b.title()?.starts_with("File uploaded")))
            .expect("the server's answer page");
        let v = b
            .execute(
                "return [document.querySelector('input.key').value, \
                 document.querySelector('main a[href^=\"/file/\"]').getAttribute('href')]",
                &[],
            )
            .unwrap();
        b.quit().unwrap();
        (
            v[0].as_str().unwrap().to_owned(),
            v[1].as_str().unwrap().to_owned(),
        )
    })
    .await
    .unwrap();
    let r = crate::files::download(a, &page, &key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == plain);
}
