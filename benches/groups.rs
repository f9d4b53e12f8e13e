//! Group benchmark: the time to post to a group of 50 members (p50, p99), over HTTP as a
//! browser posts the group page's form, while every other member holds the group's live
//! stream open; and the time until the message has appeared in all of those streams.
//! Also the server-side part alone (`groups::send`: seal, sign, one durable commit).
//!
//! ```sh
//! cargo bench --bench groups                         # 50 members, 200 posts, RSA-PSS
//! GC_BENCH_SCHEME=dsa cargo bench --bench groups     # the sender signs with DSA
//! GC_BENCH_MEMBERS=20 GC_BENCH_POSTS=500 cargo bench --bench groups
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs as a quick smoke test
//! with a handful of members, so the code stays working.
//!
//! One process: the real server (in-process, plain-HTTP door on loopback) and its clients
//! (one connection per stream and per post) share the cores, so the figures are an upper
//! bound for the server side. Setup goes through the library (accounts with the fast test
//! KDF, delivery and signing keys copied from one pre-generated pair: generating fifty
//! would take minutes, and the measured costs depend on the key size only); members then
//! log in, open their streams and post over HTTP.
//!
//! Knobs (environment): `GC_BENCH_MEMBERS` (default 50), `GC_BENCH_POSTS` (default 200),
//! `GC_BENCH_RSA_BITS` (default 3072, the production default), `GC_BENCH_SCHEME`
//! (`rsa` or `dsa`, the scheme of every member's group key; default `rsa`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a benchmark binary: failing loudly is what it should do, and it reports on stdout"
)]

mod common;
#[path = "common/setup.rs"]
mod setup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use tokio::sync::mpsc;

use ghostcache::accounts::Username;
use ghostcache::connections::keys::SigningKey;
use ghostcache::crypto::SecretKey;
use ghostcache::crypto::b64url;
use ghostcache::crypto::dsa_keys::{DsaParams, DsaPrivate};
use ghostcache::crypto::rsa_keys::RsaPrivate;
use ghostcache::store::{Id, Store};

use common::{FORM, env_or, login, read_stream, request, text};
use setup::{create_member, data_key_of, report, signing_copy, start_server};

struct Settings {
    members: usize,
    posts: usize,
    rsa_bits: usize,
    dsa: bool,
    smoke: bool,
}

impl Settings {
    fn from_env() -> Self {
        // `cargo bench` passes --bench; `cargo test --all-targets` does not.
        let smoke = !std::env::args().any(|a| a == "--bench");
        let (members, posts) = if smoke { (4, 8) } else { (50, 200) };
        Self {
            members: env_or("GC_BENCH_MEMBERS", members).max(2),
            posts: env_or("GC_BENCH_POSTS", posts).max(1),
            rsa_bits: env_or("GC_BENCH_RSA_BITS", if smoke { 2048 } else { 3072 }),
            dsa: std::env::var("GC_BENCH_SCHEME").is_ok_and(|v| v == "dsa"),
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

async fn run(s: Settings) {
    let (app, _dir) = start_server(s.rsa_bits, |c| {
        c.rate_limits.messages_per_minute = 1_000_000;
        c.chat.max_group_members = s.members.max(2);
        c.chat.stream_lifetime_secs = 3600;
    })
    .await;
    let addr = app.listen_addr.unwrap();
    let state = Arc::clone(&app.state);
    let store: Store = state.store.clone();
    println!(
        "group benchmark: {} members, {} posts, RSA {} bits, group keys {}{}",
        s.members,
        s.posts,
        s.rsa_bits,
        if s.dsa { "DSA 2048/256" } else { "RSA-PSS" },
        if s.smoke { " (smoke run)" } else { "" }
    );

    // Setup through the library.
    let t = Instant::now();
    let bits = s.rsa_bits;
    let dsa = s.dsa;
    let (delivery_der, signing_template) = tokio::task::spawn_blocking(move || {
        let delivery = RsaPrivate::generate(bits).unwrap().to_der().unwrap();
        let signing = if dsa {
            SigningKey::Dsa(DsaPrivate::generate(&DsaParams::generate()))
        } else {
            SigningKey::RsaPss(RsaPrivate::generate(bits).unwrap())
        };
        (delivery, signing)
    })
    .await
    .unwrap();
    let signing_template = Arc::new(signing_template);
    let delivery_der = Arc::new(delivery_der.to_vec());
    let n = s.members;
    let template = Arc::clone(&signing_template);
    let group: Id = store
        .run(move |store| {
            let mut members: Vec<(Id, SecretKey)> = Vec::with_capacity(n);
            for i in 0..n {
                members.push(create_member(
                    store,
                    &format!("member{i:03}"),
                    &delivery_der,
                )?);
            }
            let (creator, creator_key) = &members[0];
            for (i, (other, other_key)) in members.iter().enumerate().skip(1) {
                let c =
                    ghostcache::connections::request(store, creator, &format!("member{i:03}"), 0)?
                        .unwrap();
                ghostcache::connections::accept(
                    store,
                    &c,
                    other,
                    other_key,
                    &signing_copy(&template),
                    &signing_copy(&template),
                    0,
                )?
                .unwrap();
            }
            let g = ghostcache::groups::create(
                store,
                creator,
                creator_key,
                "bench",
                &signing_copy(&template),
                0,
            )?;
            for (i, (other, other_key)) in members.iter().enumerate().skip(1) {
                ghostcache::groups::invite(
                    store,
                    &g,
                    creator,
                    creator_key,
                    &format!("member{i:03}"),
                    n,
                    0,
                )?
                .unwrap()
                .unwrap();
                ghostcache::groups::accept(
                    store,
                    &g,
                    other,
                    other_key,
                    &signing_copy(&template),
                    0,
                )?
                .unwrap();
            }
            Ok(g)
        })
        .await
        .unwrap();
    println!("setup: {:.1} s", t.elapsed().as_secs_f64());
    let gid = b64url(&group);

    // Every member but the sender logs in and opens the group's live stream.
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (arrive_tx, mut arrive_rx) = mpsc::unbounded_channel();
    for i in 1..s.members {
        let (cookie, _) = login(addr, &format!("member{i:03}")).await;
        let (status, _, body) = request(
            addr,
            Method::GET,
            &format!("/chat/group/{gid}/live?after=0"),
            &cookie,
            &[],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        tokio::spawn(read_stream(i, body, ready_tx.clone(), arrive_tx.clone()));
    }
    for _ in 1..s.members {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .unwrap()
            .unwrap();
    }
    let (cookie, csrf) = login(addr, "member000").await;
    let page = format!("/chat/group/{gid}");
    // Warm up (first use of keys re-seals them; caches).
    for w in 0..3 {
        let form = format!("csrf={csrf}&message=warmup+{w}&timer=");
        let (status, _, _) =
            request(addr, Method::POST, &page, &cookie, &[], Some((FORM, form))).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }

    // Posts over HTTP, one at a time; each waits until every stream has shown it.
    let listeners = s.members - 1;
    let mut post = Vec::with_capacity(s.posts);
    let mut arrival = Vec::with_capacity(s.posts);
    for n in 0..s.posts {
        let form = format!("csrf={csrf}&message=bench:{n}:+hello+group&timer=");
        let start = Instant::now();
        let (status, _, _) =
            request(addr, Method::POST, &page, &cookie, &[], Some((FORM, form))).await;
        post.push(start.elapsed());
        assert_eq!(status, StatusCode::SEE_OTHER);
        let mut seen = 0;
        let mut last = start;
        while seen < listeners {
            let (_, m, at) = tokio::time::timeout(Duration::from_secs(30), arrive_rx.recv())
                .await
                .expect("a stream fell silent")
                .unwrap();
            if m == n {
                seen += 1;
                last = last.max(at);
            }
        }
        arrival.push(last - start);
    }
    report("POST to the group (HTTP, 303 back)", post);
    report("post -> shown in every member's live stream", arrival);

    // The server-side part alone: seal, sign, store (durable), no HTTP, no streams.
    let sender = ghostcache::accounts::find_user(&store, &Username::parse("member000").unwrap())
        .unwrap()
        .unwrap()
        .0;
    let (_, _, body) = request(addr, Method::GET, "/", &cookie, &[], None).await;
    drop(text(body).await);
    let session_key = data_key_of(&store, "member000");
    let posts = s.posts;
    let commits = state.commits.clone();
    let direct = store
        .run(move |store| {
            let mut out = Vec::with_capacity(posts);
            for i in 0..posts {
                let t = Instant::now();
                ghostcache::groups::send(
                    store,
                    &commits,
                    &group,
                    &sender,
                    &session_key,
                    &format!("direct {i}"),
                    0,
                    None,
                )?
                .unwrap();
                out.push(t.elapsed());
            }
            Ok(out)
        })
        .await
        .unwrap();
    report("groups::send (seal, sign, durable commit)", direct);
    app.shutdown().await;
}
