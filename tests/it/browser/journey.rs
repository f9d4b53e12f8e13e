//! Every journey two members make, through the pages, in a real browser: register, log
//! in (one of them by keyboard alone), find and connect, chat both ways with each message
//! appearing in the other's open page, a self-destructing message vanishing from the
//! other's open page, a file (upload with an expiry, the key shown once, the keyed
//! download and the raw blob giving back the same bytes, a share), a group (create,
//! invite an online member, join, posts both ways, leave), settings (password,
//! signature scheme), log out, and the destruction password.
//!
//! One function per part, each a list of page-level steps (`page::Member`), so that a
//! change to a page is a one-line change here.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::process;
use crate::support::webdriver::Engine;

use super::page::Member;

/// What a run measured.
#[derive(Debug, Default)]
pub struct Figures {
    /// Time for a message to appear in the other member's open page (chat, group).
    pub deliveries: Vec<(&'static str, Duration)>,
    /// From sending the 30 s message to it being hidden in the other's open page.
    pub vanished_after: Duration,
}

/// How a run is set up.
pub struct Options<'a> {
    /// Where the test file is written.
    pub work: &'a Path,
    /// A label for names and files ("safest", "standard", "axe").
    pub run: &'a str,
    /// Called when the second member has just opened a chat page (its path) for the
    /// first time: what only one kind of browser can check there.
    pub on_chat_page: &'a dyn Fn(&Member, &str),
}

/// The whole journey of `a` and `b`.
pub fn run(a: &mut Member, b: &mut Member, opts: &Options<'_>) -> Figures {
    let mut figures = Figures::default();
    register(a);
    register(b);
    login_by_keyboard(a);
    login(b, &b.password.clone(), "home");
    check_session_cookie(b);
    let conn = connect(a, b);
    (opts.on_chat_page)(b, &conn);
    chat_both_ways(a, b, &conn, &mut figures);
    let (timed, sent) = send_self_destructing(a, b, &conn);
    let file = upload_and_download(a, b, opts);
    // `b` keeps the chat open in its tab and gets the file in a second one.
    let chat_tab = b.b.window_handle().unwrap();
    let files_tab = b.b.new_tab().unwrap();
    b.b.switch_to_window(&files_tab).unwrap();
    download_shared(b, a, &file);
    b.b.close_tab().unwrap();
    b.b.switch_to_window(&chat_tab).unwrap();
    figures.vanished_after = self_destructed(b, &timed, sent);
    group(a, b, &mut figures);
    settings(a);
    log_out(a);
    login(a, &a.password.clone(), "home-new-password");
    log_out(a);
    destruction(b);
    figures
}

/// Register through the form; it leads to the login page.
pub fn register(m: &Member) {
    m.goto("/", "home");
    m.goto("/register", "register");
    m.fill(
        "/register",
        &[
            ("username", &m.name),
            ("password", &m.password),
            ("d_pass", &m.destruction),
        ],
    );
    m.submit("/register", "/login", "login-registered");
}

/// Log in through the form; it leads to the start page.
pub fn login(m: &Member, password: &str, label: &str) {
    m.goto("/login", "login");
    m.fill("/login", &[("username", &m.name), ("password", password)]);
    m.submit("/login", "/", label);
    assert!(
        m.text("header.site").contains(&m.name),
        "{}: not logged in",
        m.name
    );
}

/// Log in with Tab, typing and Enter only, a visible focus ring at every step.
pub fn login_by_keyboard(m: &Member) {
    m.goto("/login", "login");
    m.tab_to_field("username", 10);
    m.b.keys(&m.name).unwrap();
    m.tab_to_field("password", 2);
    m.b.keys(&m.password).unwrap();
    m.tab_to(2, |b, el| b.tag_name(el).unwrap() == "button");
    m.enter("/", "home-logged-in");
    assert!(m.text("header.site").contains(&m.name));
}

/// The session cookie is `__Host-` prefixed, `Secure` and `HttpOnly` on the onion (and
/// without the prefix on the plain-HTTP door).
fn check_session_cookie(m: &Member) {
    let onion = m.origin.ends_with(".onion");
    let cookies = match m.b.engine {
        Engine::Firefox => {
            let host = m.origin.trim_start_matches("http://");
            m.b.private_cookies(host).unwrap()
        }
        Engine::Chromium => m.b.cookies().unwrap(),
    };
    let name = if onion {
        "__Host-gc_session"
    } else {
        "gc_session"
    };
    let session = cookies
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{}: no {name} cookie in {cookies:?}", m.name));
    assert!(session.http_only, "{session:?}");
    assert_eq!(session.secure, onion, "{session:?}");
    assert_eq!(session.same_site, "Strict", "{session:?}");
}

/// `a` finds `b` and asks; `b` accepts. Returns the connection's chat path.
pub fn connect(a: &Member, b: &Member) -> String {
    a.goto("/connections", "connections");
    a.fill("/search", &[("q", &b.name)]);
    a.submit("/search", "/search", "search");
    a.submit("/connect", "/connections", "connections-sent");
    b.goto("/connections", "connections-request");
    b.submit("/connect/accept/…", "/chat/…", "chat");
    let chat = b.path();
    assert!(chat.starts_with("/chat/"), "{chat}");
    chat
}

/// Send `text` from the open chat or group page; the page it leads back to is `label`.
pub fn say(m: &Member, page: &str, text: &str, timer: Option<&str>, label: &str) {
    m.fill(page, &[("message", text)]);
    if let Some(secs) = timer {
        m.choose(page, "timer", secs);
    }
    m.submit(page, page, label);
}

/// Send by keyboard alone: Tab to the message field, type, Tab to Send, Enter.
pub fn say_by_keyboard(m: &Member, page: &str, text: &str) {
    m.tab_to_field("message", 40);
    m.b.keys(text).unwrap();
    m.tab_to(3, |b, el| b.tag_name(el).unwrap() == "button");
    m.enter(page, "chat-sent");
}

/// Each member's message appears in the other's open page, which is not reloaded.
fn chat_both_ways(a: &Member, b: &Member, chat: &str, figures: &mut Figures) {
    a.goto(chat, "chat");
    let b_page = b.document();
    let started = Instant::now();
    say_by_keyboard(a, chat, "Hello from the keyboard");
    b.wait_in_frame("Hello from the keyboard");
    figures.deliveries.push(("chat", started.elapsed()));
    assert!(b.still_on(&b_page), "{}: the page was reloaded", b.name);

    let a_page = a.document();
    let started = Instant::now();
    say(
        b,
        chat,
        "A reply, <b>not bold</b> & \u{202e}plain",
        None,
        "chat-sent",
    );
    a.wait_in_frame("A reply, <b>not bold</b> & \u{202e}plain");
    figures.deliveries.push(("chat", started.elapsed()));
    assert!(a.still_on(&a_page), "{}: the page was reloaded", a.name);
    // The page that sent shows it too, signed.
    assert!(b.main_text().contains("signature verified"));
}

/// `a` sends a message that self-destructs after 30 s; it shows in `b`'s open page.
/// Returns its element id there and when it was sent.
fn send_self_destructing(a: &Member, b: &Member, chat: &str) -> (String, Instant) {
    let sent = Instant::now();
    let text = "This one vanishes in 30 seconds";
    say(a, chat, text, Some("30"), "chat-sent-timed");
    b.wait_in_frame(text);
    (b.frame_message_id(text), sent)
}

/// Wait until the self-destructing message is hidden in `b`'s open page; how long after
/// sending that happened.
fn self_destructed(b: &Member, id: &str, sent: Instant) -> Duration {
    let deadline = Duration::from_secs(30 + 60);
    loop {
        let shown = b.in_frame(|f| match f.find(&format!("#{id}")) {
            Ok(el) => f.is_displayed(&el).unwrap_or(false),
            Err(e) if e.is_stale() => false,
            Err(e) => panic!("{e}"),
        });
        if !shown {
            let after = sent.elapsed();
            assert!(
                after >= Duration::from_secs(29),
                "hidden before its deadline, after {after:?}"
            );
            return after;
        }
        assert!(
            sent.elapsed() < deadline,
            "{}: the 30 s message still shows after {:?}",
            b.name,
            sent.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A file `a` uploaded: its page and its key.
pub struct UploadedFile {
    pub page: String,
    pub key: String,
    pub name: String,
    pub sha256: [u8; 32],
}

/// `a` uploads a file with an expiry, reads the key, downloads it with the key and as
/// the raw blob (both give back the same bytes), and shares it with `b`.
fn upload_and_download(a: &Member, b: &Member, opts: &Options<'_>) -> UploadedFile {
    let name = format!("journey-{}.bin", opts.run);
    let path = opts.work.join(&name);
    // Two chunks and a bit (256 KiB each), not compressible.
    let bytes: Vec<u8> = (0..600_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let sha256 = ghostcache::crypto::sha256(&bytes);

    a.goto("/files", "files");
    a.follow("Upload a file", "/file/upload", "upload");
    a.fill("/file/upload", &[("expiry_days", "7")]);
    let input = a.field("/file/upload", "file");
    a.b.send_keys(&input, &path.display().to_string()).unwrap();
    let key = if scripts_run(a) {
        // With JavaScript on, the browser encrypts the file itself (issue 14.8): the page
        // stays and shows the key it made (never sent), with the same label and link as
        // the server's answer page.
        let form = a.form("/file/upload");
        let button = a.b.find_in(&form, "button[type=submit]").unwrap();
        a.b.click(&button).unwrap();
        let done = a.b.find("#e2e-file-done").unwrap();
        a.b.wait_until(Duration::from_secs(90), |b| b.is_displayed(&done))
            .unwrap_or_else(|e| panic!("{}: the browser's upload: {e} {}", a.name, a.b.describe()));
        a.seen("uploaded");
        let key_field = a.b.find("#e2e-file-key").unwrap();
        a.b.property(&key_field, "value").unwrap()
    } else {
        a.submit("/file/upload", "/file/upload", "uploaded");
        assert!(a.main_text().contains(&name));
        let key_field = a.labelled("Key");
        a.b.property(&key_field, "value").unwrap()
    };
    let key = key.as_str().unwrap().to_owned();
    assert_eq!(key.len(), 44, "a Fernet key: {key}");

    a.follow("Go to the file's page", "/file/…", "file");
    assert!(a.main_text().contains(&name), "the file's page names it");
    let page = a.path();
    let before = a.downloaded();
    a.fill(&format!("{page}/download"), &[("key", &key)]);
    a.submit_download(&format!("{page}/download"));
    let got = a.wait_download(&name, &before);
    assert_eq!(
        ghostcache::crypto::sha256(&std::fs::read(&got).unwrap()),
        sha256,
        "the keyed download gives back the same bytes"
    );

    let before = a.downloaded();
    let raw = a.b.find(&format!("a[href='{page}/raw']")).unwrap();
    a.b.click(&raw).unwrap();
    let blob = a.wait_download(".fernet", &before);
    let key_file = opts.work.join(format!("key-{}.txt", opts.run));
    std::fs::write(&key_file, &key).unwrap();
    let out = opts.work.join(format!("decrypted-{}.bin", opts.run));
    let _ = std::fs::remove_file(&out);
    let done = process::run(&[
        "decrypt",
        "--key-file",
        key_file.to_str().unwrap(),
        blob.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(
        ghostcache::crypto::sha256(&std::fs::read(&out).unwrap()),
        sha256,
        "the raw blob decrypts offline to the same bytes"
    );

    a.fill(&format!("{page}/share"), &[("username", &b.name)]);
    a.submit(&format!("{page}/share"), &page, "file-shared");
    assert!(a.main_text().contains(&b.name));
    UploadedFile {
        page,
        key,
        name,
        sha256,
    }
}

/// Whether the page's scripts run: `e2e-files.js` hides the parts of the page that
/// describe the server's encryption (read through WebDriver, which works with scripts off).
fn scripts_run(a: &Member) -> bool {
    let server_part = a.b.find(".e2e-file-server").unwrap();
    a.b.property(&server_part, "hidden").unwrap().as_bool() == Some(true)
}

/// `b` finds the file `owner` shared on their profile and under "Shared with you", and
/// downloads it with the key.
fn download_shared(b: &Member, owner: &Member, file: &UploadedFile) {
    b.goto(&format!("/u/{}", owner.name), "profile");
    assert!(b.main_text().contains(&file.name));
    b.goto("/files", "files-shared");
    b.follow(&file.name, &file.page, "file-grantee");
    let before = b.downloaded();
    let action = format!("{}/download", file.page);
    b.fill(&action, &[("key", &file.key)]);
    b.submit_download(&action);
    let got = b.wait_download(&file.name, &before);
    assert_eq!(
        ghostcache::crypto::sha256(&std::fs::read(&got).unwrap()),
        file.sha256
    );
}

/// `a` creates a group and invites `b`, who is online; `b` joins; both post and see the
/// other's post in their open page; `b` leaves, and `a`'s page says so.
fn group(a: &Member, b: &Member, figures: &mut Figures) {
    a.goto("/chat/groups", "groups");
    a.fill("/chat/create", &[("name", "Journey group")]);
    a.submit("/chat/create", "/chat/group/…", "group");
    let page = a.path();
    a.choose("/chat/invite", "username", &b.name);
    a.submit("/chat/invite", &page, "group-invited");
    let notice = a.main_text();
    assert!(
        notice.contains(&format!("{} is invited and online", b.name)),
        "{notice}"
    );

    b.goto("/chat/groups", "groups-invitation");
    b.submit("/chat/accept", &page, "group-joined");
    a.goto(&page, "group-two-members");

    let b_page = b.document();
    let started = Instant::now();
    say(a, &page, "Hello, group", None, "group-sent");
    b.wait_in_frame("Hello, group");
    figures.deliveries.push(("group", started.elapsed()));
    assert!(b.still_on(&b_page));

    let a_page = a.document();
    let started = Instant::now();
    say(b, &page, "Hello back", None, "group-sent");
    a.wait_in_frame("Hello back");
    figures.deliveries.push(("group", started.elapsed()));

    b.submit("/chat/leave", "/chat/groups", "groups-left");
    a.wait_in_frame("membership changed");
    assert!(a.still_on(&a_page));
}

/// `a` changes the password and the signature scheme.
fn settings(a: &mut Member) {
    a.goto("/settings", "settings");
    let new = format!("{} a new password", a.name);
    a.fill(
        "/settings/password",
        &[("current_password", &a.password), ("new_password", &new)],
    );
    a.submit(
        "/settings/password",
        "/settings",
        "settings-password-changed",
    );
    a.password = new;
    a.goto("/settings/signature", "signature");
    a.choose("/settings/signature", "scheme", "dsa");
    a.submit(
        "/settings/signature",
        "/settings/signature",
        "signature-saved",
    );
    assert!(a.text(".current-scheme").starts_with("DSA"));
}

/// Log out with the button in the header.
pub fn log_out(m: &Member) {
    m.submit("/logout", "/", "logged-out");
    assert!(!m.text("header.site").contains(&m.name));
}

/// `b` logs in with the destruction password: the page is the failed-login page, and
/// afterwards the password opens nothing either.
fn destruction(b: &Member) {
    log_out(b);
    b.goto("/login", "login");
    b.fill(
        "/login",
        &[("username", &b.name), ("password", &b.destruction)],
    );
    b.submit("/login", "/login", "login-failed");
    let failed = b.text(".error");
    b.fill(
        "/login",
        &[("username", &b.name), ("password", &b.password)],
    );
    b.submit("/login", "/login", "login-failed-after");
    assert_eq!(
        b.text(".error"),
        failed,
        "the same answer as a failed login"
    );
}
