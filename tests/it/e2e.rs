//! The end-to-end tier (issue 14) in real browsers with JavaScript on, one per member,
//! behind a proxy that records every byte the server receives; and its hostile inputs
//! over HTTP and the WebSocket. The journeys run in Chromium (through chromedriver) and in
//! Firefox ESR (Tor Browser's Gecko, through geckodriver) with Tor Browser's preferences
//! at "Standard": the same steps, with the browser as a parameter.

mod bench;
mod delete;
mod files;
pub mod hostile;
mod login;

use std::path::Path;
use std::time::Duration;

use redb::ReadableTable;
use serde_json::{Value, json};

use crate::support::chat::connect;
use crate::support::record::RecordingProxy;
use crate::support::torbrowser::{self, Level};
use crate::support::webdriver::{self, Browser, Engine};
use crate::support::{Client, PW, TestServer};
use ghostcache::config::Config;
use ghostcache::e2e::E2eMessageRecord;
use ghostcache::store::Record;
use ghostcache::store::tables::{E2E_EPOCH_KEYS, E2E_MESSAGES};

pub fn roomy(c: &mut Config) {
    c.rate_limits.connection_requests_per_minute = 10_000;
    c.rate_limits.searches_per_minute = 10_000;
    c.rate_limits.messages_per_minute = 10_000;
}

/// Members, by name, registered and logged in over HTTP.
pub async fn members(server: &TestServer, names: &[&str]) -> Vec<Client> {
    let mut out = Vec::new();
    for n in names {
        let mut c = server.client();
        c.member(n).await;
        out.push(c);
    }
    out
}

const WAIT: Duration = Duration::from_secs(30);

/// A fresh browser of `engine` with JavaScript on, that saves downloads into `downloads`
/// (if given): headless Chromium, or headless Firefox ESR with Tor Browser's preferences
/// at "Standard" (`support::torbrowser`), without a proxy since the pages are on loopback.
/// Both treat `http://127.0.0.1` as a secure context, so WebCrypto is there without a
/// preference (Tor Browser gets the same for `http://*.onion`).
pub fn launch(engine: Engine, downloads: Option<&Path>) -> Browser {
    match engine {
        Engine::Chromium => {
            let mut prefs = serde_json::Map::new();
            if let Some(dir) = downloads {
                prefs.insert(
                    "download.default_directory".into(),
                    json!(dir.to_string_lossy()),
                );
                prefs.insert("download.prompt_for_download".into(), json!(false));
            }
            let b = Browser::launch(&webdriver::Config {
                javascript: true,
                prefs,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("Chromium: {e}"));
            if let Some(dir) = downloads {
                // Headless Chromium saves downloads only when told so over DevTools.
                b.cmd(
                    "POST",
                    "/goog/cdp/execute",
                    Some(&json!({
                        "cmd": "Browser.setDownloadBehavior",
                        "params": { "behavior": "allow", "downloadPath": dir.to_string_lossy() }
                    })),
                )
                .unwrap();
            }
            b
        }
        Engine::Firefox => {
            let dir = downloads.map_or_else(std::env::temp_dir, Path::to_path_buf);
            let b = Browser::launch(&torbrowser::config(Level::Standard, None, &dir))
                .unwrap_or_else(|e| panic!("Firefox: {e}"));
            assert!(b.javascript);
            b
        }
    }
}

/// Log `name` in through the login form at `server` (with [`PW`]), as a member does; the
/// start page follows. With JavaScript the form sends the login secret, never the
/// password, and hands the wrapping key of the key ring to the end-to-end pages of the
/// same origin (sessionStorage). The one place where browsers log in.
pub fn log_in(b: &Browser, server: &str, name: &str) {
    b.navigate(&format!("{server}/login")).unwrap();
    b.fill("form[action='/login'] input[name=username]", name)
        .unwrap();
    b.fill("form[action='/login'] input[name=password]", PW)
        .unwrap();
    let form = b.find("form[action='/login']").unwrap();
    let home = format!("{server}/");
    b.submit(&form, |u| u == home)
        .unwrap_or_else(|e| panic!("{name} could not log in: {e}"));
}

/// A fresh browser of `engine` with JavaScript on, `name` logged in at `server`.
fn browser(engine: Engine, server: &str, name: &str) -> Browser {
    let b = launch(engine, None);
    log_in(&b, server, name);
    b
}

fn texts(b: &Browser, css: &str) -> Vec<String> {
    let v = b
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)",
            &[json!(css)],
        )
        .unwrap();
    serde_json::from_value(v).unwrap()
}

fn wait_text(b: &Browser, css: &str, needle: &str) {
    let r = b.wait_until(WAIT, |b| {
        Ok(texts(b, css).iter().any(|t| t.contains(needle)))
    });
    if r.is_err() {
        let status = texts(b, "#e2e-status, #e2e-state");
        panic!("{needle:?} never appeared in {css}; status: {status:?}");
    }
}

fn wait_gone(b: &Browser, css: &str, needle: &str) {
    b.wait_until(WAIT, |b| {
        Ok(!texts(b, css).iter().any(|t| t.contains(needle)))
    })
    .unwrap_or_else(|_| panic!("{needle:?} stayed in {css}"));
}

/// Type into a field once it is shown (the scripts show forms as the state allows).
fn fill(b: &Browser, css: &str, value: &str) {
    b.wait_until(WAIT, |b| {
        Ok(b.execute(
            "const e = document.querySelector(arguments[0]); return !!e && e.offsetParent !== null",
            &[json!(css)],
        )? == json!(true))
    })
    .unwrap_or_else(|_| {
        panic!(
            "{css} never shown: {:?}",
            texts(b, "#e2e-status, #e2e-state")
        )
    });
    b.fill(css, value).unwrap();
}

fn click(b: &Browser, css: &str) {
    b.execute(
        "document.querySelector(arguments[0]).click(); return true",
        &[json!(css)],
    )
    .unwrap();
}

fn wait_ready(b: &Browser) {
    b.wait_until(WAIT, |b| {
        let v = b
            .execute(
                "const s = document.getElementById('e2e-state'); return s ? s.dataset.ready : null",
                &[],
            )
            .unwrap();
        Ok(v == json!("true"))
    })
    .unwrap_or_else(|_| panic!("never ready: {:?}", texts(b, "#e2e-status, #e2e-state")));
}

fn wait_url(b: &Browser, part: &str) -> String {
    b.wait_until(WAIT, |b| Ok(b.current_url()?.contains(part)))
        .unwrap_or_else(|_| panic!("never went to {part}"));
    b.current_url().unwrap()
}

fn enable(b: &Browser, base: &str) {
    b.navigate(&format!("{base}/e2e/setup")).unwrap();
    b.wait_until(WAIT, |b| {
        Ok(b.execute("return !document.getElementById('e2e-enable').hidden", &[])? == json!(true))
    })
    .unwrap();
    // The login form of this tab handed the wrapping key over (login-secret.js); a tab
    // that logged in elsewhere is asked for the password.
    let asks = b
        .execute(
            "return document.getElementById('e2e-enable-password').offsetParent !== null",
            &[],
        )
        .unwrap();
    if asks == json!(true) {
        fill(b, "#e2e-enable-password", PW);
    }
    click(b, "#e2e-enable-button");
    wait_text(b, "#e2e-status", "End-to-end mode is on");
}

/// `proposer` proposes end-to-end to their first connection, `accepter` (named `name`),
/// who accepts; the accepter's browser makes the first key. Returns the conversation's URL.
fn go_end_to_end(proposer: &Browser, accepter: &Browser, name: &str, base: &str) -> String {
    proposer.navigate(&format!("{base}/e2e")).unwrap();
    wait_text(proposer, "#e2e-connections", name);
    click(proposer, "#e2e-connections li button");
    let conv_url = wait_url(proposer, "/e2e/c/");
    wait_text(proposer, "#e2e-state", "waiting for them");
    accepter.navigate(&format!("{base}/e2e")).unwrap();
    wait_text(accepter, "#e2e-conversations", "they propose");
    click(accepter, "#e2e-conversations li button");
    wait_url(accepter, "/e2e/c/");
    wait_ready(accepter);
    wait_ready(proposer);
    conv_url
}

/// The CSRF token the end-to-end pages give their script.
pub async fn csrf(c: &mut Client) -> String {
    let page = c.get("/e2e/setup").await;
    page.html()
        .select(&scraper::Selector::parse("#e2e-app").unwrap())
        .next()
        .unwrap()
        .value()
        .attr("data-csrf")
        .unwrap()
        .to_owned()
}

fn say(b: &Browser, text: &str, timer: &str) {
    wait_ready(b);
    b.execute(
        "document.getElementById('e2e-text').value = arguments[0]; \
         document.getElementById('e2e-timer').value = arguments[1]; return true",
        &[json!(text), json!(timer)],
    )
    .unwrap();
    click(b, "#e2e-send button[type=submit]");
    wait_text(b, "#e2e-status", "Sent.");
    b.execute(
        "document.getElementById('e2e-status').textContent = ''; return true",
        &[],
    )
    .unwrap();
}

/// The statuses of the messages on a conversation page: (status, text) per message.
fn statuses(b: &Browser) -> Vec<(String, String)> {
    let v: Value = b
        .execute(
            "return Array.from(document.querySelectorAll('#e2e-messages li.msg')).map(e => \
             [e.dataset.status, (e.querySelector('.text') || {textContent: ''}).textContent, \
              e.querySelector('.sig').textContent])",
            &[],
        )
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let status = x[0].as_str().unwrap().to_owned();
            let sig = x[2].as_str().unwrap();
            if status == "bad" {
                assert!(sig.contains("did not verify"), "{sig}");
            }
            (status, x[1].as_str().unwrap().to_owned())
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    crate::support::record::find(hay, needle).is_some()
}

/// Rewrite one stored end-to-end message (by its text's position) of `conv`.
fn tamper_message(
    store: &ghostcache::store::Store,
    conv: [u8; 16],
    seq: u64,
    f: impl Fn(&mut E2eMessageRecord),
) {
    let txn = store.write().unwrap();
    {
        let mut t = txn.open_table(E2E_MESSAGES).unwrap();
        let mut record =
            E2eMessageRecord::decode(t.get((conv, seq)).unwrap().unwrap().value()).unwrap();
        f(&mut record);
        t.insert((conv, seq), record.encode().unwrap().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_end_to_end_in_chromium_and_the_server_sees_only_ciphertext() {
    members_talk_end_to_end(Engine::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_end_to_end_in_firefox_and_the_server_sees_only_ciphertext() {
    members_talk_end_to_end(Engine::Firefox).await;
}

/// The journey of issue 14, one browser of `engine` per member: end-to-end mode, a
/// conversation with its safety number, messages both ways over the WebSocket, a 30 s
/// timer, a group of three with a leave and a new epoch, a log-out and the history read
/// from a fresh profile; then tampering, replayed frames, and a scan of every byte the
/// server received and of its file for the texts and the password.
async fn members_talk_end_to_end(engine: Engine) {
    let started = std::time::Instant::now();
    let server = TestServer::start_with(roomy).await;
    let proxy = RecordingProxy::start(server.addr).await;
    let mut cs = members(&server, &["alice", "bob", "carol"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let c = &mut rest[0];
    connect(a, b, "bob").await;
    connect(a, c, "carol").await;
    let base = format!("http://{}", proxy.addr);
    let clock = server.clock.clone();

    let page_base = base.clone();
    let markers = tokio::task::spawn_blocking(move || {
        let base = page_base;
        let (alice, bob, carol) = (
            browser(engine, &base, "alice"),
            browser(engine, &base, "bob"),
            browser(engine, &base, "carol"),
        );
        for x in [&alice, &bob, &carol] {
            enable(x, &base);
        }

        let conv_url = go_end_to_end(&alice, &bob, "bob", &base);

        // Safety numbers: the same 60 digits on both pages.
        let sn_a = texts(&alice, "#e2e-safety-number").concat();
        let sn_b = texts(&bob, "#e2e-safety-number").concat();
        assert_eq!(sn_a, sn_b);
        assert_eq!(
            sn_a.chars().filter(char::is_ascii_digit).count(),
            60,
            "{sn_a}"
        );

        // Live, both ways, over the WebSocket.
        say(&alice, "marker-alice-to-bob", "");
        wait_text(&bob, "#e2e-messages .text", "marker-alice-to-bob");
        say(&bob, "marker-bob-to-alice", "");
        wait_text(&alice, "#e2e-messages .text", "marker-bob-to-alice");
        assert!(statuses(&bob).iter().all(|(s, _)| s == "verified"));

        // A 30 s timer: gone from the open page when the server deletes it.
        say(&alice, "marker-timed", "30");
        wait_text(&bob, "#e2e-messages .text", "marker-timed");
        clock.advance(31);
        wait_gone(&bob, "#e2e-messages .text", "marker-timed");
        wait_gone(&alice, "#e2e-messages .text", "marker-timed");

        // A group of three, a leave, a new epoch.
        alice.navigate(&format!("{base}/e2e")).unwrap();
        fill(&alice, "#e2e-group-name", "marker-group-name");
        click(&alice, "#e2e-create button");
        let group_url = wait_url(&alice, "/e2e/c/");
        wait_ready(&alice);
        wait_text(&alice, "h1", "marker-group-name");
        for (who, name) in [(&bob, "bob"), (&carol, "carol")] {
            fill(&alice, "#e2e-invite-name", name);
            click(&alice, "#e2e-invite button");
            wait_text(&alice, "#e2e-status", "is invited");
            who.navigate(&format!("{base}/e2e")).unwrap();
            wait_text(who, "#e2e-invitations", "alice invites you");
            click(who, "#e2e-invitations li button");
            wait_url(who, "/e2e/c/");
            wait_ready(who);
            wait_text(who, "h1", "marker-group-name");
        }
        say(&carol, "marker-group-1", "");
        wait_text(&alice, "#e2e-messages .text", "marker-group-1");
        wait_text(&bob, "#e2e-messages .text", "marker-group-1");
        // Joins show between the messages, read from the signed epochs: alice saw both,
        // bob (who joined first) carol's, and carol none from before her own.
        wait_text(
            &alice,
            "#e2e-messages .event",
            "bob joined (new key, epoch 2).",
        );
        wait_text(
            &alice,
            "#e2e-messages .event",
            "carol joined (new key, epoch 3).",
        );
        wait_text(
            &bob,
            "#e2e-messages .event",
            "carol joined (new key, epoch 3).",
        );
        assert!(
            texts(&bob, "#e2e-messages .event")
                .iter()
                .all(|t| !t.contains("bob"))
        );
        assert!(texts(&carol, "#e2e-messages .event").is_empty());
        let epoch_before = texts(&alice, "#e2e-state").concat();
        click(&carol, "#e2e-leave");
        wait_url(&carol, "/e2e");
        wait_ready(&alice);
        wait_ready(&bob);
        alice
            .wait_until(
                WAIT,
                |b| Ok(texts(b, "#e2e-state").concat() != epoch_before),
            )
            .unwrap();
        say(&bob, "marker-group-after-leave", "");
        wait_text(&alice, "#e2e-messages .text", "marker-group-after-leave");
        wait_text(&bob, "#e2e-messages .event", "carol left or was removed");
        carol.navigate(&group_url).unwrap();
        assert_eq!(carol.title().unwrap(), "Not found · ghostcache");

        // bob logs out with the button every page has.
        let logout = bob.find("form[action='/logout']").unwrap();
        bob.submit(&logout, |u| !u.contains("/e2e")).unwrap();
        assert!(bob.find("form[action='/logout']").is_err(), "logged out");
        drop((alice, bob, carol));
        (conv_url, group_url)
    })
    .await
    .unwrap();
    let (conv_url, group_url) = markers;
    let conv: [u8; 16] =
        ghostcache::crypto::b64url_decode_exact(conv_url.rsplit('/').next().unwrap()).unwrap();
    let store = server.state().store.clone();
    let fresh_url = conv_url.clone();
    tokio::task::spawn_blocking(move || {
        // A fresh browser profile logs in and reads the history: the login opened the
        // keys, nothing asks for the password again.
        let conv_url = fresh_url;
        let fresh = browser(engine, &base, "bob");
        fresh.navigate(&conv_url).unwrap();
        wait_ready(&fresh);
        assert_eq!(
            fresh
                .execute("return document.getElementById('e2e-unlock').hidden", &[])
                .unwrap(),
            json!(true),
            "the keys opened without asking"
        );
        wait_text(&fresh, "#e2e-messages .text", "marker-alice-to-bob");
        let shown = statuses(&fresh);
        assert_eq!(
            shown,
            vec![
                ("verified".to_owned(), "marker-alice-to-bob".to_owned()),
                ("verified".to_owned(), "marker-bob-to-alice".to_owned()),
            ],
            "the history, verified, without the expired message"
        );

        // Tampering: a ciphertext, then a signature, then the wrapped key.
        tamper_message(&store, conv, 1, |m| m.ciphertext[0] ^= 1);
        fresh.navigate(&conv_url).unwrap();
        wait_ready(&fresh);
        fresh
            .wait_until(WAIT, |b| Ok(statuses(b).len() == 2))
            .unwrap();
        assert_eq!(
            statuses(&fresh),
            vec![
                ("bad".to_owned(), String::new()),
                ("verified".to_owned(), "marker-bob-to-alice".to_owned()),
            ]
        );
        tamper_message(&store, conv, 2, |m| m.signature[10] ^= 1);
        fresh.navigate(&conv_url).unwrap();
        wait_ready(&fresh);
        fresh
            .wait_until(WAIT, |b| Ok(statuses(b).len() == 2))
            .unwrap();
        assert!(
            statuses(&fresh)
                .iter()
                .all(|(s, t)| s == "bad" && t.is_empty())
        );
        let txn = store.write().unwrap();
        {
            let mut t = txn.open_table(E2E_EPOCH_KEYS).unwrap();
            let rows: Vec<_> = t
                .range((conv, 0, [0u8; 16])..=(conv, u32::MAX, [0xffu8; 16]))
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.value(), v.value().to_vec())
                })
                .collect();
            for (k, mut v) in rows {
                v[5] ^= 1;
                t.insert(k, v.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        fresh.navigate(&conv_url).unwrap();
        fresh
            .wait_until(WAIT, |b| {
                Ok(texts(b, "#e2e-state").concat().contains("Waiting"))
            })
            .unwrap();
        fresh
            .wait_until(WAIT, |b| Ok(statuses(b).len() == 2))
            .unwrap();
        assert!(
            statuses(&fresh)
                .iter()
                .all(|(s, t)| s == "bad" && t.is_empty())
        );
        drop(fresh);
    })
    .await
    .unwrap();

    // A captured message frame of alice's, replayed into the group, or into a conversation
    // that does not exist: refused, nothing stored.
    let (_, frames) = proxy.received();
    let captured = frames
        .iter()
        .find(|f| f.contains("\"t\":\"send\"") && f.contains(conv_url.rsplit('/').next().unwrap()))
        .unwrap()
        .clone();
    let group_id = group_url.rsplit('/').next().unwrap().to_owned();
    let before = hostile::rows(&server.state().store);
    let mut ws = hostile::Ws::open(server.addr, a.session().unwrap(), true)
        .await
        .unwrap();
    let group: [u8; 16] = ghostcache::crypto::b64url_decode_exact(&group_id).unwrap();
    let group_epoch = {
        let txn = server.state().store.read().unwrap();
        let t = txn
            .open_table(ghostcache::store::tables::E2E_CONVERSATIONS)
            .unwrap();
        ghostcache::e2e::ConversationRecord::decode(t.get(group).unwrap().unwrap().value())
            .unwrap()
            .epoch
    };
    let now = server.clock.now();
    for (target, error) in [
        (group_id.as_str(), "did not verify"),
        ("AAAAAAAAAAAAAAAAAAAAAA", "nothing here"),
    ] {
        let mut frame: Value = serde_json::from_str(&captured).unwrap();
        frame["conv"] = json!(target);
        frame["epoch"] = json!(group_epoch);
        frame["sent_at"] = json!(now);
        frame["client_seq"] = json!(1_000_000);
        ws.send_text(&frame.to_string()).await;
        let answer = ws.next_json_of("error").await;
        assert!(
            answer["error"].as_str().unwrap().contains(error),
            "{answer}"
        );
    }
    // The same frame again into its own conversation: its sequence number is used.
    let mut frame: Value = serde_json::from_str(&captured).unwrap();
    frame["sent_at"] = json!(now);
    ws.send_text(&frame.to_string()).await;
    let answer = ws.next_json_of("error").await;
    assert!(
        answer["error"].as_str().unwrap().contains("already used"),
        "{answer}"
    );
    assert_eq!(
        hostile::rows(&server.state().store),
        before,
        "nothing stored"
    );

    // What the server received (every request and WebSocket frame from the browsers) and
    // its file hold no plaintext and no password.
    let (received, frames) = proxy.received();
    assert!(
        frames
            .iter()
            .filter(|f| f.contains("\"t\":\"send\""))
            .count()
            == 5,
        "the messages went over the WebSocket: {} frames, e.g. {:?}",
        frames.len(),
        frames
            .iter()
            .filter(|f| f.len() > 20)
            .map(|f| f.chars().take(80).collect::<String>())
            .collect::<Vec<_>>()
    );
    let db = std::fs::read(server.dir.path().join(ghostcache::store::DB_FILE)).unwrap();
    let form_pw = PW.replace(' ', "+");
    for needle in [
        "marker-alice-to-bob",
        "marker-bob-to-alice",
        "marker-timed",
        "marker-group-name",
        "marker-group-1",
        "marker-group-after-leave",
        PW,
        form_pw.as_str(),
    ] {
        for (i, r) in received.iter().enumerate() {
            assert!(
                !contains(r, needle.as_bytes()),
                "{needle:?} reached the server (connection {i})"
            );
        }
        assert!(
            !contains(&db, needle.as_bytes()),
            "{needle:?} is in the database file"
        );
    }
    eprintln!(
        "e2e journey in {engine:?}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
