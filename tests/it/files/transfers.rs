//! Transfers under strain, as a member's client would meet them: raw downloads resumed
//! with `Range` (and every hostile `Range` header), slow and stalling uploads, a download
//! whose client stops reading while the file is deleted, and a key of the member's own.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    MB, content, download, download_request, file_path, key_of, pattern, raw_upload_start, rows,
    rss_bytes, upload_ok,
};
use crate::support::client::{Part, Resp, multipart, part_head};
use crate::support::{Client, TestServer};
use ghostcache::crypto::SecretKey;
use ghostcache::files;

/// GET (or HEAD) with extra headers.
async fn get_with(c: &mut Client, method: Method, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    c.send(
        req.body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
}

fn content_length(r: &Resp) -> u64 {
    r.header("content-length").unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_downloads_resume_with_range_and_never_splice_two_blobs() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("rosa").await;
    // Three chunks: two full lines and a shorter last one.
    let data = content(600_000, "Marker-Range-51aa");
    let (path, key) = upload_ok(&mut c, "resume.bin", &data).await;
    let raw_path = format!("{path}/raw");

    let whole = c.get(&raw_path).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let etag = whole.header("etag").unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 20,
        "{etag}"
    );
    let blob = whole.body.to_vec();
    let len = blob.len() as u64;
    assert_eq!(content_length(&whole), len);
    let line = blob.iter().position(|&b| b == b'\n').unwrap() as u64 + 1;

    // A download cut part-way through the second chunk resumes from where it stopped.
    let cut = line + 12_345;
    let rest = get_with(
        &mut c,
        Method::GET,
        &raw_path,
        &[("range", &format!("bytes={cut}-")), ("if-range", &etag)],
    )
    .await;
    assert_eq!(rest.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        rest.header("content-range"),
        Some(format!("bytes {cut}-{}/{len}", len - 1).as_str())
    );
    assert_eq!(content_length(&rest), len - cut);
    assert_eq!(rest.header("etag"), Some(etag.as_str()));
    assert_eq!(rest.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        rest.header("content-disposition"),
        whole.header("content-disposition")
    );
    let mut joined = blob[..cut as usize].to_vec();
    joined.extend_from_slice(&rest.body);
    assert!(joined == blob);
    let secret = SecretKey::from_base64(&key).unwrap();
    let mut out = Vec::new();
    files::decrypt_blob(&secret, &mut &joined[..], &mut out).unwrap();
    assert!(out == data, "the resumed blob decrypts to the file");

    // Ranges inside one line, across lines, at the very end, clipped past the end.
    for (range, start, end) in [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        (
            &format!("bytes={}-{}", line - 3, line + 3),
            line - 3,
            line + 3,
        ),
        (
            &format!("bytes={}-{}", 2 * line, 2 * line),
            2 * line,
            2 * line,
        ),
        ("bytes=-10", len - 10, len - 1),
        (&format!("bytes=-{}", len + 50), 0, len - 1),
        ("bytes=5-99999999999999999999999999", 5, len - 1),
        (&format!("bytes={}-", len - 1), len - 1, len - 1),
    ] {
        let r = get_with(&mut c, Method::GET, &raw_path, &[("range", range)]).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/{len}").as_str()),
            "{range}"
        );
        assert!(
            r.body[..] == blob[start as usize..=end as usize],
            "{range}: wrong bytes"
        );
    }

    // If-Range that is not this blob's strong tag (a weak one, a date, the tag of another
    // file): the whole blob, so the client cannot splice two blobs.
    let (other, _) = upload_ok(&mut c, "other.bin", &content(600_000, "Marker-Other")).await;
    let other_etag = c
        .get(&format!("{other}/raw"))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    assert_ne!(other_etag, etag);
    for stale in [
        other_etag.as_str(),
        &format!("W/{etag}"),
        "Tue, 15 Nov 1994 08:12:31 GMT",
        "\"\"",
    ] {
        let r = get_with(
            &mut c,
            Method::GET,
            &raw_path,
            &[("range", "bytes=100-"), ("if-range", stale)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{stale}");
        assert!(r.header("content-range").is_none());
        assert!(r.body[..] == blob[..], "{stale}: whole blob");
    }

    // HEAD answers as GET without Range would, with no body (RFC 9110: ranges are GET's).
    for headers in [&[][..], &[("range", "bytes=100-200")][..]] {
        let head = get_with(&mut c, Method::HEAD, &raw_path, headers).await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        for h in [
            "content-length",
            "etag",
            "accept-ranges",
            "content-type",
            "content-disposition",
        ] {
            assert_eq!(head.header(h), whole.header(h), "{h}");
        }
        assert!(head.header("content-range").is_none());
    }

    // The preconditions that come with an ETag.
    let r = get_with(&mut c, Method::GET, &raw_path, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    let r = get_with(&mut c, Method::GET, &raw_path, &[("if-match", &other_etag)]).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert!(r.text().contains("not the version asked for"));
    let r = get_with(
        &mut c,
        Method::GET,
        &raw_path,
        &[("if-match", &etag), ("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);

    // A member the file is not shared with gets the one 404, Range or not.
    let mut stranger = server.client();
    stranger.member("sven").await;
    let r = get_with(
        &mut stranger,
        Method::GET,
        &raw_path,
        &[("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.header("content-range").is_none() && r.header("etag").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_range_headers_get_clear_answers_and_change_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("hugo").await;
    let data = content(300_000, "Marker-Hostile-Range");
    let (path, key) = upload_ok(&mut c, "h.bin", &data).await;
    let raw_path = format!("{path}/raw");
    let blob = c.get(&raw_path).await.body.to_vec();
    let len = blob.len();
    let before = rows(&server);

    // Not valid syntax, another unit, several ranges, reversed, negative: ignored (200,
    // the whole blob).
    for range in [
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=abc-def",
        "bytes=10-5",
        "bytes=-5-10",
        "bytes=--5",
        "bytes=+5-9",
        "bytes=0x10-0x20",
        "bytes=1-2-3",
        "bytes=0-1,5-9",
        "bytes=0-0,-1",
        "bytes=0-1, 1-2, 2-3, 3-4",
        "lines=0-5",
        "bytes =0-5",
        "=0-5",
        "bytes=0-5;x",
    ] {
        let r = get_with(&mut c, Method::GET, &raw_path, &[("range", range)]).await;
        assert_eq!(r.status, StatusCode::OK, "{range}");
        assert!(r.header("content-range").is_none(), "{range}");
        assert_eq!(r.body.len(), len, "{range}");
    }
    // Two Range fields: not one valid range either.
    let r = get_with(
        &mut c,
        Method::GET,
        &raw_path,
        &[("range", "bytes=0-1"), ("range", "bytes=2-3")],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, len));

    // Valid, but wholly past the end (or empty): 416 with the length, and a page.
    for range in [
        format!("bytes={len}-"),
        format!("bytes={}-{}", len + 10, len + 20),
        "bytes=-0".to_owned(),
        "bytes=99999999999999999999999999999999-".to_owned(),
        format!("bytes={}", "9".repeat(4000)) + "-",
    ] {
        let r = get_with(&mut c, Method::GET, &raw_path, &[("range", &range)]).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range:.40}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(r.text().contains("does not exist"));
        assert!(r.header("content-disposition").is_none());
    }

    // The keyed download does not resume: a Range on it is ignored (HTTP defines ranges
    // for GET only), and it says so.
    let csrf = c.get(&path).await.form_csrf(&format!("{path}/download"));
    let form = crate::support::client::encode_form(&[("csrf", &csrf), ("key", &key)]);
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{path}/download"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("range", "bytes=100-")
        .body(http_body_util::Full::new(bytes::Bytes::from(form)))
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("accept-ranges"), Some("none"));
    assert!(r.header("content-range").is_none());
    assert!(r.body[..] == data[..]);

    // Nothing changed.
    assert_eq!(rows(&server), before);
    assert!(c.get(&raw_path).await.body[..] == blob[..]);
}

/// A hand-written upload on a raw connection: the request head, the CSRF part and the
/// head of the file part, so that what follows is the file's bytes.
async fn slow_upload_start(c: &mut Client, server: &TestServer) -> tokio::net::TcpStream {
    let mut start = raw_upload_start(c).await;
    start.extend(part_head(
        "file",
        Some("slow.bin"),
        Some("application/octet-stream"),
    ));
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&start).await.unwrap();
    s
}

/// Send one byte every `every` until the server answers (or `limit` passes); returns the
/// answer and when it came.
async fn trickle(
    mut s: tokio::net::TcpStream,
    every: Duration,
    limit: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(started.elapsed() < limit, "never cut off");
        // A write may fail once the server has answered and closed.
        let _ = s.write_all(b"x").await;
        match tokio::time::timeout(every, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&answer).contains("</html>") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_cut_off_and_leaves_nothing() {
    // Scaled down from the defaults (1 kB/s over 30 s windows, one hour in all): 64 bytes
    // a second over 2-second windows, 6 seconds in all.
    let server = TestServer::start_with(|c| {
        c.server.body_timeout_secs = 2;
        c.files.upload_min_bytes_per_sec = 64;
        c.files.upload_deadline_secs = 6;
    })
    .await;
    let mut c = server.client();
    c.member("sloth").await;

    // One byte every half second: never idle for a window (the old rule let it live
    // forever), far below the minimum.
    let s = slow_upload_start(&mut c, &server).await;
    let (answer, after) = trickle(s, Duration::from_millis(500), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:.200}");
    assert!(answer.contains("too slow"), "{answer}");
    // The first window is met by the form's head; the second is not.
    assert!(
        after < Duration::from_millis(5500),
        "cut off by the rate, not the deadline: {after:?}"
    );
    assert!(rows(&server).is_empty());
    assert!(server.state().uploads.is_empty());

    // Fast enough, but never done: the deadline.
    let mut s = slow_upload_start(&mut c, &server).await;
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("</html>") {
        assert!(started.elapsed() < Duration::from_secs(10), "never cut off");
        let _ = s.write_all(&[b'y'; 200]).await;
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(250), s.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:.200}");
    assert!(answer.contains("took longer than 6 seconds"), "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(rows(&server).is_empty());
    assert!(server.state().uploads.is_empty());

    // An upload at a normal pace still goes through.
    upload_ok(&mut c, "fine.bin", &content(300_000, "fine")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_slow_uploads_keep_memory_flat_and_are_all_cut_off() {
    const CLIENTS: usize = 50;
    let _alone = super::MEMORY.lock().await;
    let server = TestServer::start_with(|c| {
        c.server.body_timeout_secs = 2;
        c.files.upload_min_bytes_per_sec = 64;
        c.rate_limits.uploads_per_member_per_minute = 100;
    })
    .await;
    let mut c = server.client();
    c.member("crowd").await;
    let before = rss_bytes();
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(slow_upload_start(&mut c, &server).await);
    }
    let clients: Vec<_> = conns
        .into_iter()
        .map(|s| {
            tokio::spawn(trickle(
                s,
                Duration::from_millis(500),
                Duration::from_secs(15),
            ))
        })
        .collect();
    // Every upload has started its file part and trickled a few bytes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.state().uploads.len(), CLIENTS);
    let during = rss_bytes();
    for client in clients {
        let (answer, _) = client.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:.200}");
    }
    let growth = during.saturating_sub(before);
    eprintln!(
        "{CLIENTS} slow uploads: RSS +{:.1} MiB ({:.0} KiB each)",
        growth as f64 / 1048576.0,
        growth as f64 / 1024.0 / CLIENTS as f64
    );
    // Generous: a chunk buffer allocated up front would be 12.5 MiB for 50 clients, a
    // batch buffer 100 MiB once touched.
    assert!(growth < 24 * 1024 * 1024, "RSS grew by {growth} bytes");
    assert!(rows(&server).is_empty());
    assert!(server.state().uploads.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_download_holds_no_snapshot_and_ends_when_the_file_goes() {
    let _alone = super::MEMORY.lock().await;
    let server = TestServer::start_with(|c| {
        c.files.max_upload_bytes = 40 * MB;
        c.files.quota_bytes_per_member = 100 * MB;
    })
    .await;
    let mut c = server.client();
    c.member("paula").await;
    let size = 24 * MB;
    let csrf = c.get("/file/upload").await.form_csrf("/file/upload");
    let mut head = part_head("csrf", None, None);
    head.extend_from_slice(csrf.as_bytes());
    head.extend_from_slice(b"\r\n");
    head.extend(part_head(
        "file",
        Some("big.bin"),
        Some("application/octet-stream"),
    ));
    let tail = format!("\r\n--{}--\r\n", crate::support::client::BOUNDARY).into_bytes();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/file/upload")
        .header(
            "content-type",
            format!(
                "multipart/form-data; boundary={}",
                crate::support::client::BOUNDARY
            ),
        )
        .body(crate::support::client::generated(head, size, pattern, tail))
        .unwrap();
    let up = c.send_any(req).await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text());
    let (path, key) = (file_path(&up), key_of(&up));

    // The client reads the first piece and then nothing while the owner deletes the file.
    let req = download_request(&mut c, &path, &key).await;
    let resp = c.send_streaming(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    let mut body = resp.body;
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c.submit(&path, &format!("{path}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(rows(&server).is_empty());

    // Reading on: what was already on its way, then the end: no snapshot kept the
    // deleted chunks readable for this download.
    let mut got = first.len() as u64;
    let mut aborted = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => got += f.into_data().map(|d| d.len() as u64).unwrap_or(0),
            Err(_) => {
                aborted = true;
                break;
            }
        }
    }
    assert!(aborted, "the download of a deleted file ran to its end");
    assert!(got < size, "got {got} of {size}");
}

/// An upload through the form with a key of the member's own in the `key` field.
async fn upload_with_key(c: &mut Client, key: &str, bytes: &[u8]) -> Resp {
    let csrf = c.get("/file/upload").await.form_csrf("/file/upload");
    let body = multipart(&[
        Part::Text("csrf".into(), csrf),
        Part::Text("expiry_days".into(), "3".into()),
        Part::Text("key".into(), key.into()),
        Part::File {
            name: "file".into(),
            filename: "own-key.txt".into(),
            content_type: "text/plain".into(),
            bytes: bytes.to_vec(),
        },
    ]);
    c.post_multipart("/file/upload", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entered_key_is_checked_used_once_and_never_kept() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("kira").await;

    // The form offers the field, before the file (browsers send fields in order).
    let form = c.get("/file/upload").await;
    let names: Vec<String> = form
        .html()
        .select(&scraper::Selector::parse("form[action=\"/file/upload\"] input").unwrap())
        .filter_map(|i| i.value().attr("name").map(str::to_owned))
        .collect();
    assert_eq!(names, ["csrf", "expiry_days", "key", "file"]);

    // A key made as Python's Fernet.generate_key() makes them.
    let own = SecretKey::generate().to_base64().to_string();
    let data = content(400_000, "Marker-Own-Key-90ce");
    let up = upload_with_key(&mut c, &format!(" {own}\n"), &data).await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text());
    assert_eq!(
        key_of(&up),
        own,
        "the page shows the entered key as it shows a generated one"
    );
    assert!(up.text().contains("only time the key is shown"));
    let path = file_path(&up);
    let got = download(&mut c, &path, &own).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body[..] == data[..]);
    let raw = c.get(&format!("{path}/raw")).await;
    let mut out = Vec::new();
    files::decrypt_blob(
        &SecretKey::from_base64(&own).unwrap(),
        &mut &raw.body[..],
        &mut out,
    )
    .unwrap();
    assert!(out == data);
    assert!(!c.get(&path).await.text().contains(&own));

    // An empty field: a generated key, as before.
    let up = upload_with_key(&mut c, "", b"generated").await;
    assert_eq!(up.status, StatusCode::OK);
    assert_ne!(key_of(&up), own);
    assert_eq!(key_of(&up).len(), 44);
    let kept = rows(&server);

    // Anything else: 400, a message that says what is wrong, the key not shown back,
    // nothing kept.
    let url = "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8=";
    let standard = url.replace('-', "+").replace('_', "/");
    for (bad, says) in [
        (&own[..43], "lacks its final ="),
        (&own[..40], "40 characters"),
        (&format!("{own}{own}"), "88 characters"),
        (&standard[..], "standard base64"),
        (&format!("{}!=", &own[..42]), "characters that no key has"),
        (&format!("{}é=", &own[..42]), "characters that no key has"),
        (
            "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_9=",
            "do not encode exactly 32 bytes",
        ),
        (
            &format!("{}==", &own[..42]),
            "do not encode exactly 32 bytes",
        ),
        ("correct horse battery staple", "characters that no key has"),
    ] {
        let r = upload_with_key(&mut c, bad, &data).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(r.text().contains(says), "{bad:?}: {}", r.text());
        assert!(!r.text().contains(bad), "{bad:?} shown back");
        assert_eq!(rows(&server), kept, "{bad:?}");
    }
    // Bytes that are not UTF-8, two key fields, and a key after the file.
    let csrf = c.get("/file/upload").await.form_csrf("/file/upload");
    let mut body = multipart(&[Part::Text("csrf".into(), csrf.clone())]);
    body.truncate(body.len() - format!("--{}--\r\n", crate::support::client::BOUNDARY).len());
    body.extend(part_head("key", None, None));
    body.extend_from_slice(b"\xff\xfe\r\n");
    body.extend(part_head("file", Some("x.bin"), None));
    body.extend_from_slice(b"x\r\n");
    body.extend_from_slice(format!("--{}--\r\n", crate::support::client::BOUNDARY).as_bytes());
    let r = c.post_multipart("/file/upload", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("characters that no key has"));
    let file = |n: &str| Part::File {
        name: "file".into(),
        filename: n.into(),
        content_type: "text/plain".into(),
        bytes: data.clone(),
    };
    let twice = multipart(&[
        Part::Text("csrf".into(), csrf.clone()),
        Part::Text("key".into(), own.clone()),
        Part::Text("key".into(), own.clone()),
        file("twice.bin"),
    ]);
    let r = c.post_multipart("/file/upload", twice).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("more than one key"));
    let after = multipart(&[
        Part::Text("csrf".into(), csrf),
        file("after.bin"),
        Part::Text("key".into(), own.clone()),
    ]);
    let r = c.post_multipart("/file/upload", after).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("must come before the file"));
    assert!(!r.text().contains(&own));
    assert_eq!(rows(&server), kept);

    // Never stored: neither the key's text nor its bytes are anywhere in the database.
    let db = std::fs::read(server.dir.path().join(ghostcache::store::DB_FILE)).unwrap();
    let bytes = SecretKey::from_base64(&own).unwrap().expose().to_vec();
    assert!(!db.windows(own.len()).any(|w| w == own.as_bytes()));
    assert!(!db.windows(bytes.len()).any(|w| w == &bytes[..]));
    assert!(!db.windows(16).any(|w| w == &bytes[16..]));
}
