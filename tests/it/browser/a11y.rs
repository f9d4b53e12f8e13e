//! Accessibility: the whole journey in Chromium, axe-core run on every page (and on the
//! live frame's document) as the members reach it: no critical and no serious violation.
//!
//! Over the plain-HTTP door on loopback (Chromium keeps no `__Host-` cookie on
//! http://*.onion; the pages are the same, with the "not anonymous" banner on top, which
//! axe checks too). axe needs JavaScript to run, so this Chromium runs scripts; the pages
//! have none.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use serde_json::json;

use super::journey::{self, Options};
use super::observe::Axe;
use super::page::{Member, Shared};
use crate::support::process::Serve;
use crate::support::webdriver::{self, Browser};

/// `ghostcache serve` on a loopback port without Tor, as the LAN demo runs.
pub fn serve_loopback(out: &Path) -> Serve {
    let data = out.join("data");
    std::fs::create_dir_all(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = out.join("ghostcache.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[crypto]\nrsa_bits = 2048\n",
            data.display()
        ),
    )
    .unwrap();
    Serve::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--no-tor",
            "--listen",
            "127.0.0.1:0",
        ],
        &out.join("ghostcache.stderr"),
        None,
    )
}

fn chromium(downloads: &Path) -> Browser {
    let mut prefs = serde_json::Map::new();
    prefs.insert(
        "download.default_directory".into(),
        json!(downloads.display().to_string()),
    );
    prefs.insert("download.prompt_for_download".into(), json!(false));
    let cfg = webdriver::Config {
        // chromedriver holds every command while any frame is loading, and a live
        // frame's stream is always loading: it waits for nothing, the steps wait for
        // what they need (`Browser::navigating`).
        page_load_strategy: "none",
        javascript: true,
        window_size: Some((1280, 900)),
        prefs,
        ..Default::default()
    };
    Browser::launch(&cfg).unwrap_or_else(|e| panic!("Chromium: {e}"))
}

#[test]
fn every_page_of_the_journey_has_no_serious_accessibility_violation() {
    let axe = Rc::new(RefCell::new(Axe::load()));
    let out = webdriver::artifacts_dir("browser-axe");
    let site = serve_loopback(&out);
    let origin = format!("http://{}", site.http.unwrap());
    let observer: Shared = axe.clone();
    let member = |name: &str| {
        let downloads = out.join(format!("downloads-{name}"));
        std::fs::create_dir_all(&downloads).unwrap();
        Member::new(
            name,
            chromium(&downloads),
            &origin,
            &downloads,
            observer.clone(),
        )
    };
    let mut a = member("ada");
    let mut b = member("bea");
    journey::run(
        &mut a,
        &mut b,
        &Options {
            work: &out,
            run: "axe",
            on_chat_page: &|_, _| {},
        },
    );
    // An error page too.
    a.goto("/no/such/page", "not-found");

    let axe = axe.borrow();
    eprintln!("axe-core on {} documents:", axe.results.len());
    eprintln!("  critical serious moderate minor  page");
    for r in &axe.results {
        let rules: Vec<&str> = r.violations.iter().map(|v| v.0.as_str()).collect();
        eprintln!(
            "  {:>8} {:>7} {:>8} {:>5}  {} ({}) {}",
            r.count("critical"),
            r.count("serious"),
            r.count("moderate"),
            r.count("minor"),
            r.label,
            r.path,
            rules.join(" ")
        );
    }
    let bad: Vec<_> = axe
        .results
        .iter()
        .filter(|r| r.count("critical") + r.count("serious") > 0)
        .collect();
    assert!(bad.is_empty(), "serious or critical violations: {bad:#?}");
    assert!(axe.results.len() >= 30, "every page was checked");
    drop(site);
}
