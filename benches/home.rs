//! Home benchmark: what the member's overview (`GET /`) and the navigation counts that
//! every page reads cost, for a member with a lot waiting: unread messages in many
//! one-to-one chats and groups, pending requests and invitations, and files that expire
//! soon. Over HTTP as a browser asks, and the server-side parts alone.
//!
//! ```sh
//! cargo bench --bench home                            # 30 chats, 10 groups, RSA 3072
//! GC_BENCH_CHATS=100 GC_BENCH_GROUPS=30 cargo bench --bench home
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs as a quick smoke test.
//!
//! The point it makes: a view of the overview costs reads and symmetric decryptions only
//! (no RSA private-key operation, which at 3072 bits alone takes milliseconds), except
//! the first view of a new invitation, which opens its name key once with the delivery
//! key and re-seals it; that first view is measured apart.
//!
//! Knobs (environment): `GC_BENCH_CHATS` (connections, each with unread messages; default
//! 30), `GC_BENCH_GROUPS` (default 10), `GC_BENCH_INVITES` (default 5), `GC_BENCH_FILES`
//! (default 5), `GC_BENCH_UNREAD` (unread messages per conversation; default 5),
//! `GC_BENCH_VIEWS` (requests measured; default 300), `GC_BENCH_RSA_BITS` (default 3072).
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
    reason = "the stream reader of the chat benchmarks is not used here"
)]
mod common;
#[path = "common/setup.rs"]
mod setup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};

use ghostcache::connections::keys::SigningKey;
use ghostcache::crypto::SecretKey;
use ghostcache::crypto::rsa_keys::RsaPrivate;
use ghostcache::store::{Id, Store};

use common::{env_or, login, request, text};
use setup::{create_member, data_key_of, report, signing_copy, start_server};

struct Settings {
    chats: usize,
    groups: usize,
    invites: usize,
    files: usize,
    unread: usize,
    views: usize,
    rsa_bits: usize,
    smoke: bool,
}

impl Settings {
    fn from_env() -> Self {
        // `cargo bench` passes --bench; `cargo test --all-targets` does not.
        let smoke = !std::env::args().any(|a| a == "--bench");
        let d = |full: usize, small: usize| if smoke { small } else { full };
        Self {
            chats: env_or("GC_BENCH_CHATS", d(30, 2)).max(1),
            groups: env_or("GC_BENCH_GROUPS", d(10, 1)),
            invites: env_or("GC_BENCH_INVITES", d(5, 1)),
            files: env_or("GC_BENCH_FILES", d(5, 1)),
            unread: env_or("GC_BENCH_UNREAD", d(5, 1)),
            views: env_or("GC_BENCH_VIEWS", d(300, 5)).max(1),
            rsa_bits: env_or("GC_BENCH_RSA_BITS", d(3072, 2048)),
            smoke,
        }
    }
}

fn main() {
    let s = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(s));
}

/// A multipart upload body for a small file expiring in `days`.
fn upload_body(csrf: &str, name: &str, days: u32) -> (String, String) {
    let boundary = "benchboundary7f3a";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"expiry_days\"\r\n\r\n{days}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: text/plain\r\n\r\nbench file\r\n--{boundary}--\r\n"
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// GET `path` `n` times, one request at a time; the times, and the last page.
async fn views(addr: std::net::SocketAddr, cookie: &str, path: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let (status, _, body) = request(addr, Method::GET, path, cookie, &[], None).await;
        drop(text(body).await);
        out.push(start.elapsed());
        assert_eq!(status, StatusCode::OK, "GET {path}");
    }
    out
}

async fn run(s: Settings) {
    let (app, _dir) = start_server(s.rsa_bits, |c| {
        c.rate_limits.uploads_per_member_per_minute = 1_000_000;
    })
    .await;
    let addr = app.listen_addr.unwrap();
    let store: Store = app.state.store.clone();
    println!(
        "home benchmark: {} chats and {} groups with {} unread each, {} invitations, {} \
         expiring files, RSA {} bits{}",
        s.chats,
        s.groups,
        s.unread,
        s.invites,
        s.files,
        s.rsa_bits,
        if s.smoke { " (smoke run)" } else { "" }
    );

    // Setup through the library: "reader" and one peer per chat; the first peers also
    // create the groups and send the invitations.
    let t = Instant::now();
    let bits = s.rsa_bits;
    let (delivery_der, template) = tokio::task::spawn_blocking(move || {
        let delivery = RsaPrivate::generate(bits).unwrap().to_der().unwrap();
        (
            delivery,
            SigningKey::RsaPss(RsaPrivate::generate(bits).unwrap()),
        )
    })
    .await
    .unwrap();
    let template = Arc::new(template);
    let delivery_der = Arc::new(delivery_der.to_vec());
    let (chats, groups, invites, unread) = (s.chats, s.groups, s.invites, s.unread);
    let peers = chats.max(groups).max(invites);
    let commits = app.state.commits.clone();
    let reader: Id = store
        .run(move |store| {
            let mut members: Vec<(Id, SecretKey)> = Vec::with_capacity(peers + 1);
            for i in 0..=peers {
                members.push(create_member(
                    store,
                    &format!("member{i:03}"),
                    &delivery_der,
                )?);
            }
            let (reader, reader_key) = members[0].clone();
            let now = 1_000;
            for (i, (peer, peer_key)) in members.iter().enumerate().skip(1) {
                let c = ghostcache::connections::request(store, peer, "member000", 0)?.unwrap();
                if i > chats {
                    // A request the reader has not answered.
                    continue;
                }
                ghostcache::connections::accept(
                    store,
                    &c,
                    &reader,
                    &reader_key,
                    &signing_copy(&template),
                    &signing_copy(&template),
                    0,
                )?
                .unwrap();
                for m in 0..unread {
                    ghostcache::chat::send(
                        store,
                        &commits,
                        &c,
                        peer,
                        peer_key,
                        &format!("m{m}"),
                        now,
                        None,
                    )?
                    .unwrap();
                }
            }
            for (i, (peer, peer_key)) in members.iter().enumerate().skip(1).take(groups + invites) {
                let g = ghostcache::groups::create(
                    store,
                    peer,
                    peer_key,
                    &format!("group {i}"),
                    &signing_copy(&template),
                    0,
                )?;
                ghostcache::groups::invite(store, &g, peer, peer_key, "member000", 50, 0)?
                    .unwrap()
                    .unwrap();
                if i > groups {
                    continue; // stays an invitation
                }
                ghostcache::groups::accept(
                    store,
                    &g,
                    &reader,
                    &reader_key,
                    &signing_copy(&template),
                    0,
                )?
                .unwrap();
                for m in 0..unread {
                    ghostcache::groups::send(
                        store,
                        &commits,
                        &g,
                        peer,
                        peer_key,
                        &format!("g{m}"),
                        now,
                        None,
                    )?
                    .unwrap();
                }
            }
            Ok(reader)
        })
        .await
        .unwrap();
    let (cookie, csrf) = login(addr, "member000").await;
    for f in 0..s.files {
        let (content_type, body) = upload_body(&csrf, &format!("file{f}.txt"), 3);
        let (status, _, _) = request(
            addr,
            Method::POST,
            "/file/upload",
            &cookie,
            &[],
            Some((&content_type, body)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "upload");
    }
    println!("setup: {:.1} s", t.elapsed().as_secs_f64());

    // The first view opens each new invitation's name key with the delivery key (RSA)
    // and re-seals it; every later view is symmetric only.
    let first = views(addr, &cookie, "/", 1).await;
    report("GET / first view (re-seals invitations)", first);
    let (_, _, body) = request(addr, Method::GET, "/", &cookie, &[], None).await;
    let page = text(body).await;
    let unread_items = page.matches(" unread</li>").count();
    assert_eq!(
        unread_items,
        s.chats + s.groups,
        "every conversation is listed"
    );

    report("GET / (overview)", views(addr, &cookie, "/", s.views).await);
    report(
        "GET /settings (a page with the nav counts)",
        views(addr, &cookie, "/settings", s.views).await,
    );

    // The server-side parts alone, without HTTP.
    let data_key = data_key_of(&store, "member000");
    let n = s.views;
    let (overview, nav) = store
        .run(move |store| {
            let mut overview = Vec::with_capacity(n);
            let mut nav = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let o = ghostcache::home::overview(store, &reader, &data_key, 1_000)?;
                overview.push(t.elapsed());
                assert!(!o.unread.is_empty());
                let t = Instant::now();
                let counts = ghostcache::home::nav_counts(store, &reader)?;
                nav.push(t.elapsed());
                assert!(counts.connections > 0);
            }
            Ok((overview, nav))
        })
        .await
        .unwrap();
    report("home::overview (reads, names, no HTTP)", overview);
    report("home::nav_counts (index reads, no HTTP)", nav);

    // For scale: one RSA private-key operation of this size.
    let rsa = tokio::task::spawn_blocking(move || {
        let key = RsaPrivate::generate(bits).unwrap();
        let mut out = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            key.sign_pss(b"scale").unwrap();
            out.push(t.elapsed());
        }
        out
    })
    .await
    .unwrap();
    report("one RSA-PSS signature, for scale", rsa);
    app.shutdown().await;
}
