//! A member at a browser, and the page-level steps the journeys are written in: go to a
//! page, fill a form found by its action and fields found by name or label, submit and
//! wait for the page it leads to, read the live frame. Every step that navigates waits
//! until the new document is ready at the expected address before the next step touches
//! it (`Browser::navigating`), so a journey never acts on a page being replaced.
//!
//! Each page a member arrives at is announced to the journey's [`Observer`] (screenshots,
//! accessibility checks) under a short label.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::webdriver::{Browser, Element, KEY_ENTER, KEY_TAB};

/// What a journey does with each page it reaches.
pub trait Observer {
    /// `member` has just arrived at the page `label`.
    fn page(&mut self, b: &Browser, member: &str, label: &str);
}

/// An observer that does nothing.
pub struct Nobody;
impl Observer for Nobody {
    fn page(&mut self, _: &Browser, _: &str, _: &str) {}
}

pub type Shared = Rc<RefCell<dyn Observer>>;

/// One member and their browser.
pub struct Member {
    pub name: String,
    pub password: String,
    pub destruction: String,
    pub b: Browser,
    /// `http://<address>` (no trailing slash).
    pub origin: String,
    /// Where this browser saves downloads.
    pub downloads: PathBuf,
    observer: Shared,
}

/// How long a message may take to show in another member's open page (over Tor, on a
/// machine shared with builds).
pub const DELIVERY: Duration = Duration::from_secs(60);

impl Member {
    pub fn new(name: &str, b: Browser, origin: &str, downloads: &Path, observer: Shared) -> Self {
        std::fs::create_dir_all(downloads).unwrap();
        Self {
            name: name.to_owned(),
            password: format!("{name} correct horse battery"),
            destruction: format!("{name} destroy everything now"),
            b,
            origin: origin.trim_end_matches('/').to_owned(),
            downloads: downloads.to_owned(),
            observer,
        }
    }

    /// Announce the current page to the observer.
    pub fn seen(&self, label: &str) {
        self.observer.borrow_mut().page(&self.b, &self.name, label);
    }

    // ---- where we are -------------------------------------------------

    /// The current address without the origin and without the query (`/chat/…`).
    pub fn path(&self) -> String {
        let url = self.b.current_url().unwrap();
        let path = url.strip_prefix(&self.origin).unwrap_or(&url);
        path.split('?').next().unwrap_or(path).to_owned()
    }

    /// A predicate on URLs: this member's origin, then `path`, then nothing or a query;
    /// or, for a `path` ending in `…`, anything that starts so.
    fn at(&self, path: &str) -> impl Fn(&str) -> bool + use<> {
        let (full, prefix) = match path.strip_suffix('…') {
            Some(p) => (format!("{}{p}", self.origin), true),
            None => (format!("{}{path}", self.origin), false),
        };
        move |u: &str| {
            u == full
                || u.strip_prefix(&full)
                    .is_some_and(|rest| prefix || rest.starts_with('?'))
        }
    }

    // ---- navigation ---------------------------------------------------

    /// Open `path` and wait for it (a few retries if the onion service could not be
    /// reached: Firefox then shows its own error page).
    pub fn goto(&self, path: &str, label: &str) {
        self.goto_then(path, path, label);
    }

    /// Open `path`, which leads to `expect` (a redirect).
    pub fn goto_then(&self, path: &str, expect: &str, label: &str) {
        let url = format!("{}{path}", self.origin);
        let started = Instant::now();
        loop {
            let r = self.b.navigating(self.at(expect), |b| {
                b.cmd("POST", "/url", Some(&json!({ "url": url })))
                    .map(|_| ())
            });
            match r {
                Ok(()) if !self.on_error_page() => break,
                Ok(()) | Err(_) if started.elapsed() < Duration::from_secs(120) => {
                    eprintln!(
                        "{}: {path} not reached ({}), trying again",
                        self.name,
                        self.b.describe()
                    );
                    std::thread::sleep(Duration::from_secs(5));
                }
                Ok(()) => panic!("{}: {path}: {}", self.name, self.b.describe()),
                Err(e) => panic!("{}: {path}: {e}", self.name),
            }
        }
        self.seen(label);
    }

    /// Whether the browser shows its own error page instead of ours.
    fn on_error_page(&self) -> bool {
        let uri = self
            .b
            .execute("return document.documentURI", &[])
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        uri.starts_with("about:neterror") || uri.starts_with("chrome-error:")
    }

    // ---- forms --------------------------------------------------------

    /// The form posting (or getting) to `action` (an exact action, or a prefix ending
    /// in `…`).
    pub fn form(&self, action: &str) -> Element {
        let css = match action.strip_suffix('…') {
            Some(prefix) => format!("form[action^='{prefix}']"),
            None => format!("form[action='{action}']"),
        };
        self.b
            .find(&css)
            .unwrap_or_else(|e| panic!("{}: no {css} ({e}) {}", self.name, self.b.describe()))
    }

    /// The field `name` of the form posting to `action`.
    pub fn field(&self, action: &str, name: &str) -> Element {
        let form = self.form(action);
        self.b
            .find_in(&form, &format!("[name='{name}']"))
            .unwrap_or_else(|e| panic!("{}: no field {name} in {action}: {e}", self.name))
    }

    /// The form control inside the `<label>` whose text starts with `text`.
    pub fn labelled(&self, text: &str) -> Element {
        let xpath = format!(
            "//label[starts-with(normalize-space(.), '{text}')]\
             //*[self::input or self::textarea or self::select]"
        );
        self.b
            .find_by("xpath", &xpath)
            .unwrap_or_else(|e| panic!("{}: no field labelled {text:?}: {e}", self.name))
    }

    /// Type into fields of the form posting to `action`.
    pub fn fill(&self, action: &str, fields: &[(&str, &str)]) {
        for (name, value) in fields {
            let el = self.field(action, name);
            self.b.clear(&el).unwrap();
            self.b.send_keys(&el, value).unwrap();
        }
    }

    /// Choose `value` in the `<select>` (or among the radio buttons) `name` of the form
    /// posting to `action`.
    pub fn choose(&self, action: &str, name: &str, value: &str) {
        let form = self.form(action);
        let option = self
            .b
            .find_in(
                &form,
                &format!("select[name='{name}'] option[value='{value}'], input[name='{name}'][value='{value}']"),
            )
            .unwrap_or_else(|e| panic!("{}: no choice {value} for {name}: {e}", self.name));
        self.b.click(&option).unwrap();
    }

    /// Submit the form posting to `action` with its button, and wait for the page at
    /// `expect` (a path, any query; or a prefix ending in `…`).
    pub fn submit(&self, action: &str, expect: &str, label: &str) {
        let form = self.form(action);
        self.b
            .submit(&form, self.at(expect))
            .unwrap_or_else(|e| panic!("{}: submitting {action}: {e}", self.name));
        self.seen(label);
    }

    /// Submit the form posting to `action` whose answer is a download (the page stays).
    pub fn submit_download(&self, action: &str) {
        let form = self.form(action);
        let button = self.b.find_in(&form, "button[type=submit]").unwrap();
        self.b.click(&button).unwrap();
    }

    /// Follow the link whose text is `text`, to `expect`.
    pub fn follow(&self, text: &str, expect: &str, label: &str) {
        let link = self
            .b
            .find_by("link text", text)
            .unwrap_or_else(|e| panic!("{}: no link {text:?}: {e}", self.name));
        self.b
            .navigating(self.at(expect), |b| b.click(&link))
            .unwrap_or_else(|e| panic!("{}: following {text:?}: {e}", self.name));
        self.seen(label);
    }

    // ---- reading ------------------------------------------------------

    /// The visible text of the page's `<main>`.
    pub fn main_text(&self) -> String {
        let main = self.b.find("main").unwrap();
        self.b.text(&main).unwrap()
    }

    /// The text of the first element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let el = self
            .b
            .find(css)
            .unwrap_or_else(|e| panic!("{}: no {css}: {e} {}", self.name, self.b.describe()));
        self.b.text(&el).unwrap()
    }

    /// The `<html>` of the current document, to check later that it was not reloaded.
    pub fn document(&self) -> Element {
        self.b.find("html").unwrap()
    }

    /// Whether `document` (from [`Member::document`]) is still the one shown.
    pub fn still_on(&self, document: &Element) -> bool {
        match self.b.tag_name(document) {
            Ok(_) => true,
            Err(e) if e.is_stale() => false,
            Err(e) => panic!("{}: {e}", self.name),
        }
    }

    // ---- the live frame -----------------------------------------------

    /// Run `f` on the document inside the page's live frame, then come back.
    pub fn in_frame<T>(&self, f: impl FnOnce(&Browser) -> T) -> T {
        let frame = self.b.find("iframe.live-frame").unwrap();
        self.b.enter_frame(&frame).unwrap();
        let out = f(&self.b);
        self.b.leave_frames().unwrap();
        out
    }

    /// Wait until the live frame shows `needle`; returns how long that took.
    pub fn wait_in_frame(&self, needle: &str) -> Duration {
        let started = Instant::now();
        loop {
            let text = self.in_frame(|b| {
                b.find("body")
                    .and_then(|body| b.text(&body))
                    .unwrap_or_default()
            });
            if text.contains(needle) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < DELIVERY,
                "{}: {needle:?} did not appear in the live frame in {DELIVERY:?}; it shows {text:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The id (`m<seq>`) of the message in the live frame whose text is `text`.
    pub fn frame_message_id(&self, text: &str) -> String {
        self.in_frame(|b| {
            for article in b.find_all("article.msg").unwrap() {
                let t = b.find_in(&article, ".text").and_then(|e| b.text(&e));
                if t.is_ok_and(|t| t == text) {
                    return b.attribute(&article, "id").unwrap().unwrap();
                }
            }
            panic!("{}: no message {text:?} in the live frame", self.name)
        })
    }

    // ---- keyboard -----------------------------------------------------

    /// Press Tab until the focused element satisfies `want` (at most `max` presses),
    /// checking at every press that the focused element shows a focus ring.
    pub fn tab_to(&self, max: usize, want: impl Fn(&Browser, &Element) -> bool) -> Element {
        for _ in 0..max {
            self.b.keys(KEY_TAB).unwrap();
            let el = self.b.active_element().unwrap();
            self.assert_focus_ring(&el);
            if want(&self.b, &el) {
                return el;
            }
        }
        panic!("{}: not reached with {max} presses of Tab", self.name)
    }

    /// Tab to the field `name`.
    pub fn tab_to_field(&self, name: &str, max: usize) -> Element {
        self.tab_to(max, |b, el| {
            b.attribute(el, "name").ok().flatten().as_deref() == Some(name)
        })
    }

    /// Press Enter on the focused element, which submits and leads to `expect`.
    pub fn enter(&self, expect: &str, label: &str) {
        self.b
            .navigating(self.at(expect), |b| b.keys(KEY_ENTER))
            .unwrap_or_else(|e| panic!("{}: Enter: {e}", self.name));
        self.seen(label);
    }

    /// The focused element must show a ring: a solid outline at least 2 px wide (our
    /// stylesheet's `:focus-visible` rule), in the page's accent colour.
    pub fn assert_focus_ring(&self, el: &Element) {
        let style = self.b.css(el, "outline-style").unwrap();
        let width = self.b.css(el, "outline-width").unwrap();
        let px: f64 = width.trim_end_matches("px").parse().unwrap_or(0.0);
        let what = describe_element(&self.b, el);
        assert!(
            style != "none" && px >= 2.0,
            "{}: no visible focus ring on {what}: outline {style} {width}",
            self.name
        );
    }

    // ---- downloads ----------------------------------------------------

    /// Wait for a finished download whose name ends with `suffix` (and is not in
    /// `before`); returns its path.
    pub fn wait_download(&self, suffix: &str, before: &[PathBuf]) -> PathBuf {
        let started = Instant::now();
        loop {
            let names: Vec<PathBuf> = std::fs::read_dir(&self.downloads)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            let partial = names.iter().any(|p| {
                let n = p.to_string_lossy();
                n.ends_with(".part") || n.ends_with(".crdownload")
            });
            if !partial
                && let Some(done) = names
                    .iter()
                    .find(|p| p.to_string_lossy().ends_with(suffix) && !before.contains(p))
            {
                return done.clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "{}: no download *{suffix} in 90 s (have {names:?})",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The files downloaded so far.
    pub fn downloaded(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.downloads)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    }
}

/// `<tag name=… id=…>` of an element, for messages.
pub fn describe_element(b: &Browser, el: &Element) -> String {
    let tag = b.tag_name(el).unwrap_or_default();
    let attr = |n: &str| b.attribute(el, n).ok().flatten().unwrap_or_default();
    let text: String = b.text(el).unwrap_or_default().chars().take(40).collect();
    format!(
        "<{tag} name={:?} href={:?}> {text:?}",
        attr("name"),
        attr("href")
    )
}
