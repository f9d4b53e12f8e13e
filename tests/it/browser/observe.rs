//! What the journeys do at each page: screenshots (Firefox, at the letterboxed default
//! size and at a phone width) and accessibility checks (axe-core, in Chromium).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::webdriver::Browser;

use super::page::Observer;

/// The phone width, in CSS pixels, of the phone screenshots (at most; letterboxing may
/// round it down).
pub const PHONE_MAX_WIDTH: u32 = 414;

/// Screenshots of every page (the first time each label is reached), numbered in the
/// order the journey reached them: `NN-<member>-<label>.png` at the browser's default
/// (letterboxed) size and `NN-<member>-<label>-phone.png` at a phone width.
pub struct Screenshots {
    pub dir: PathBuf,
    seen: BTreeSet<String>,
    /// (file name, width × height in pixels) of every screenshot written.
    pub written: Vec<(String, (u32, u32))>,
}

impl Screenshots {
    pub fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            seen: BTreeSet::new(),
            written: Vec::new(),
        }
    }

    fn save(&mut self, b: &Browser, name: String) {
        let size = b.save_screenshot(self.dir.join(&name)).unwrap();
        self.written.push((name, size));
    }
}

impl Observer for Screenshots {
    fn page(&mut self, b: &Browser, member: &str, label: &str) {
        if !self.seen.insert(label.to_owned()) {
            return;
        }
        let n = self.seen.len();
        self.save(b, format!("{n:02}-{member}-{label}.png"));
        // A phone: 1.5 device pixels per CSS pixel and a narrow window, which Firefox's
        // letterboxing rounds to a 400 × 800 page area. (Firefox will not make a window
        // narrower than 500 pixels, hence the scale.)
        let outer = b.window_size().unwrap();
        set_scale(b, Some("1.5"));
        b.set_window_size(540, 900).unwrap();
        wait_width(b, |w| w <= PHONE_MAX_WIDTH);
        self.save(b, format!("{n:02}-{member}-{label}-phone.png"));
        set_scale(b, None);
        b.set_window_size(outer.0, outer.1).unwrap();
        wait_width(b, |w| w > PHONE_MAX_WIDTH);
    }
}

/// Firefox's `layout.css.devPixelsPerPx` (`None`: back to the default).
fn set_scale(b: &Browser, scale: Option<&str>) {
    b.chrome(|b| {
        b.execute(
            "const [v] = arguments; const p = 'layout.css.devPixelsPerPx';\
             if (v === null) Services.prefs.clearUserPref(p); else Services.prefs.setCharPref(p, v);",
            &[json!(scale)],
        )
    })
    .unwrap();
}

/// Wait until the page's width in CSS pixels satisfies `ok`.
fn wait_width(b: &Browser, ok: impl Fn(u32) -> bool) {
    let started = Instant::now();
    loop {
        let w = b
            .execute("return window.innerWidth", &[])
            .unwrap()
            .as_u64()
            .unwrap_or(0) as u32;
        if ok(w) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "page width stays {w}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One page's axe-core result.
#[derive(Debug)]
pub struct AxeResult {
    pub label: String,
    pub path: String,
    /// Violations as (rule id, impact, how many elements).
    pub violations: Vec<(String, String, usize)>,
}

impl AxeResult {
    /// How many rules were violated with this impact.
    pub fn count(&self, impact: &str) -> usize {
        self.violations.iter().filter(|v| v.1 == impact).count()
    }
}

/// axe-core on every page (the first time each label is reached), and on the document in
/// its live frame when it has one.
pub struct Axe {
    source: String,
    seen: BTreeSet<String>,
    pub results: Vec<AxeResult>,
}

impl Axe {
    /// axe-core's `axe.min.js`, from `GC_AXE_JS` or where `scripts/test.sh` installs it.
    pub fn load() -> Self {
        let path = axe_path();
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "axe-core not found at {} ({e}); ./scripts/test.sh installs it with npm (or set GC_AXE_JS)",
                path.display()
            )
        });
        Self {
            source,
            seen: BTreeSet::new(),
            results: Vec::new(),
        }
    }

    fn audit(&mut self, b: &Browser, label: String, path: String) {
        let loaded = b.execute("return typeof window.axe", &[]).unwrap();
        if loaded != json!("object") {
            b.execute(&format!("{}\n;return true;", self.source), &[])
                .unwrap();
        }
        // Frames are audited on their own: axe would otherwise wait for an answer
        // from a frame it was not injected into.
        let v = b
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 axe.run(document, { iframes: false, resultTypes: ['violations'] })\
                   .then(r => done(r.violations.map(v => [v.id, v.impact || '', v.nodes.length,\
                       v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + n.failureSummary)])))\
                   .catch(e => done('axe failed: ' + e));",
                &[],
            )
            .unwrap();
        let list = v
            .as_array()
            .unwrap_or_else(|| panic!("axe on {label}: {v}"));
        let mut violations = Vec::new();
        for item in list {
            let id = item[0].as_str().unwrap_or("").to_owned();
            let impact = item[1].as_str().unwrap_or("").to_owned();
            let nodes = item[2].as_u64().unwrap_or(0) as usize;
            if impact == "critical" || impact == "serious" {
                eprintln!("axe: {label}: {id} ({impact}): {}", item[3]);
            }
            violations.push((id, impact, nodes));
        }
        self.results.push(AxeResult {
            label,
            path,
            violations,
        });
    }
}

impl Observer for Axe {
    fn page(&mut self, b: &Browser, _member: &str, label: &str) {
        if !self.seen.insert(label.to_owned()) {
            return;
        }
        let url = b.current_url().unwrap();
        let path = url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or(url.clone());
        self.audit(b, label.to_owned(), path.clone());
        if let Ok(frame) = b.find("iframe.live-frame") {
            b.enter_frame(&frame).unwrap();
            // The stream's document, once the first one has refreshed into it.
            let started = Instant::now();
            while frame_url(b).contains("first=1") && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let src = frame_url(b);
            self.audit(b, format!("{label}-frame"), src);
            b.leave_frames().unwrap();
        }
    }
}

fn frame_url(b: &Browser) -> String {
    match b.execute(
        "return document.location.pathname + document.location.search",
        &[],
    ) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Where axe-core's script is.
pub fn axe_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GC_AXE_JS") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default();
    cache.join(format!(
        "ghostcache-test/axe-core-{AXE_VERSION}/node_modules/axe-core/axe.min.js"
    ))
}

/// The axe-core release `scripts/test.sh` installs.
pub const AXE_VERSION: &str = "4.14.1";
