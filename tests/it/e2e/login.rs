//! Login secrets in a browser with JavaScript (issue 14.1): registration, login and both
//! password changes go through the ordinary forms, no password reaches the server (every
//! byte it receives is recorded), and the end-to-end keys follow the password: they open
//! in a fresh browser right after its login, and again after a password change, without
//! the password being asked for twice.

use serde_json::json;

use super::{WAIT, click, fill, roomy, texts, wait_text};
use crate::support::TestServer;
use crate::support::record::RecordingProxy;
use crate::support::webdriver::{self, Browser};

const MARK_PW: &str = "marker-password-0123";
const MARK_DPW: &str = "marker-destruction-0123";
const MARK_NEW: &str = "marker-newpassword-0123";
const MARK_D2: &str = "marker-destruction-two";

fn fresh_browser() -> Browser {
    Browser::launch(&webdriver::Config {
        javascript: true,
        ..Default::default()
    })
    .expect("chromedriver and chromium")
}

fn wait_at(b: &Browser, url: &str) {
    b.wait_until(WAIT, |b| Ok(b.current_url()? == url))
        .unwrap_or_else(|_| {
            panic!(
                "never reached {url}: at {:?}, {:?}",
                b.current_url(),
                texts(b, ".error, .derive-status")
            )
        });
}

/// Fill and send one form (by its action) as a member would: the script derives on submit.
fn send_form(b: &Browser, action: &str, fields: &[(&str, &str)]) {
    for (name, value) in fields {
        fill(
            b,
            &format!("form[action='{action}'] input[name={name}]"),
            value,
        );
    }
    click(b, &format!("form[action='{action}'] button[type=submit]"));
}

fn login(b: &Browser, base: &str, password: &str) {
    b.navigate(&format!("{base}/login")).unwrap();
    send_form(
        b,
        "/login",
        &[("username", "jsuser"), ("password", password)],
    );
}

/// The end-to-end settings page says the keys are on, and never asked for the password.
fn keys_open_without_asking(b: &Browser, base: &str) {
    b.navigate(&format!("{base}/e2e/setup")).unwrap();
    wait_text(b, "#e2e-status", "End-to-end mode is on");
    assert_eq!(
        b.execute("return document.getElementById('e2e-unlock').hidden", &[])
            .unwrap(),
        json!(true),
        "the keys opened with the wrapping secret of the login"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_javascript_no_password_reaches_the_server_and_the_keys_follow_it() {
    let server = TestServer::start_with(roomy).await;
    let proxy = RecordingProxy::start(server.addr).await;
    let base = format!("http://{}", proxy.addr);
    tokio::task::spawn_blocking(move || {
        let b = fresh_browser();
        b.navigate(&format!("{base}/register")).unwrap();
        // The script checks what the server cannot (it receives no password; the length
        // the browser checks itself, from the fields' `minlength`).
        send_form(
            &b,
            "/register",
            &[
                ("username", "jsuser"),
                ("password", MARK_PW),
                ("d_pass", MARK_PW),
            ],
        );
        wait_text(&b, ".derive-status", "must be different");
        b.navigate(&format!("{base}/register")).unwrap();
        send_form(
            &b,
            "/register",
            &[
                ("username", "jsuser"),
                ("password", MARK_PW),
                ("d_pass", MARK_DPW),
            ],
        );
        wait_at(&b, &format!("{base}/login?registered=1"));
        login(&b, &base, MARK_PW);
        wait_at(&b, &format!("{base}/"));
        // End-to-end mode on, with the wrapping secret the login derived: the page does
        // not ask for the password again.
        b.navigate(&format!("{base}/e2e/setup")).unwrap();
        wait_text(&b, "#e2e-status", "End-to-end mode is off");
        assert_eq!(
            b.execute(
                "return document.getElementById('e2e-enable-password').closest('label').hidden",
                &[]
            )
            .unwrap(),
            json!(true)
        );
        click(&b, "#e2e-enable-button");
        wait_text(&b, "#e2e-status", "End-to-end mode is on");
        drop(b);

        // A fresh browser: the login's wrapping secret opens the keys.
        let b = fresh_browser();
        login(&b, &base, MARK_PW);
        wait_at(&b, &format!("{base}/"));
        keys_open_without_asking(&b, &base);
        // The password change wraps the keys again in the browser.
        b.navigate(&format!("{base}/settings")).unwrap();
        send_form(
            &b,
            "/settings/password",
            &[("current_password", MARK_PW), ("new_password", MARK_NEW)],
        );
        wait_at(&b, &format!("{base}/settings?changed=password"));
        keys_open_without_asking(&b, &base);
        drop(b);

        // Another fresh browser, the new password: the keys open again.
        let b = fresh_browser();
        login(&b, &base, MARK_PW);
        b.wait_until(WAIT, |b| Ok(!texts(b, ".error").is_empty()))
            .unwrap();
        assert_eq!(texts(&b, ".error"), vec!["Wrong username or password."]);
        login(&b, &base, MARK_NEW);
        wait_at(&b, &format!("{base}/"));
        keys_open_without_asking(&b, &base);
        // A new destruction password, through the form.
        b.navigate(&format!("{base}/settings")).unwrap();
        send_form(
            &b,
            "/settings/destruction-password",
            &[("current_password", MARK_NEW), ("new_d_pass", MARK_D2)],
        );
        wait_at(&b, &format!("{base}/settings?changed=destruction"));
        drop(b);

        // The destruction password in a browser with JavaScript: a failed login, and the
        // account is gone.
        let b = fresh_browser();
        login(&b, &base, MARK_D2);
        b.wait_until(WAIT, |b| Ok(!texts(b, ".error").is_empty()))
            .unwrap();
        assert_eq!(texts(&b, ".error"), vec!["Wrong username or password."]);
        // Nothing of the attempt stays in the tab (the failed login's page clears it).
        b.wait_until(WAIT, |b| {
            Ok(b.execute("return sessionStorage.length", &[])? == json!(0))
        })
        .unwrap();
        login(&b, &base, MARK_NEW);
        b.wait_until(WAIT, |b| Ok(!texts(b, ".error").is_empty()))
            .unwrap();
        assert_eq!(texts(&b, ".error"), vec!["Wrong username or password."]);
    })
    .await
    .unwrap();

    // No password, in any form, in anything the server received or stored.
    let (connections, _) = proxy.received();
    let all: Vec<u8> = connections.concat();
    assert!(
        crate::support::record::find(&all, b"password_secret=").is_some(),
        "sanity: the forms sent login secrets"
    );
    let db = std::fs::read(server.dir.path().join(ghostcache::store::DB_FILE)).unwrap();
    for marker in [MARK_PW, MARK_DPW, MARK_NEW, MARK_D2] {
        assert!(
            crate::support::record::find(&all, marker.as_bytes()).is_none(),
            "{marker} reached the server"
        );
        assert!(
            crate::support::record::find(&db, marker.as_bytes()).is_none(),
            "{marker} is in the database"
        );
    }
}
