//! Chat pages, the pieces of the live stream document, and the online list. Pure
//! functions from data to markup; maud escapes every message text.

use maud::{DOCTYPE, Markup, html};

use super::{Shown, TIMERS, Verification};
use crate::clock::UnixTime;
use crate::connections::views::presence_badge;
use crate::crypto::b64url;
use crate::store::Id;
use crate::web::assets;
use crate::web::layout::{PageCtx, csrf_field, form_error, page};

/// Civil date (proleptic Gregorian, UTC) of a day number (Unix time / 86400).
fn civil(day: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days_from_civil inverse.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// `YYYY-MM-DD` of a day number.
pub fn date_of_day(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM UTC`: message times are shown in UTC, so pages reveal no time zone.
pub fn utc_minute(t: UnixTime) -> String {
    let secs = t.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02} UTC",
        date_of_day(t.div_euclid(86_400)),
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// The signature status line of a message.
fn status(v: Verification) -> Markup {
    html! {
        @match v {
            Verification::Verified => span.sig.ok title="Signed with the sender's key for this connection; the signature verified." { "✓ signature verified" },
            Verification::BadSignature => span.sig.bad { "✗ signature did not verify: message withheld" },
            Verification::Unreadable => span.sig.bad { "✗ message could not be decrypted" },
        }
    }
}

/// The classes that hide a self-destructing message at its deadline, `seconds_left`
/// seconds from when the browser shows it (at least 1).
///
/// The content security policy (`style-src 'self'`) forbids inline styles, so the delay
/// cannot be written on the element. Instead the stylesheet defines, for each unit,
/// classes that set one custom property (`.xd-3 { --xd: 259200s }`: days 1–7, hours 1–23,
/// minutes 1–59, seconds 1–59, 148 short rules), and `.exp` runs a one-step animation
/// whose delay is their sum. Any delay up to 8 days is thus exact to the second, measured
/// from when the browser renders the element (the page's transit time over Tor makes it
/// later than the server's deadline by that much; the next render drops it anyway).
pub fn expiry_classes(seconds_left: i64) -> String {
    let left = seconds_left.clamp(1, 8 * 86_400 - 1);
    let (d, rest) = (left / 86_400, left % 86_400);
    let (h, rest) = (rest / 3600, rest % 3600);
    let (m, s) = (rest / 60, rest % 60);
    let mut out = String::from("exp");
    for (prefix, n) in [("xd", d), ("xh", h), ("xm", m), ("xs", s)] {
        if n > 0 {
            out.push_str(&format!(" {prefix}-{n}"));
        }
    }
    out
}

/// The label of a timer of `secs` seconds.
fn timer_label(secs: i64) -> &'static str {
    TIMERS
        .iter()
        .find(|(t, _)| *t == secs)
        .map_or("a timer", |(_, l)| l)
}

/// What a reader may do to their own messages: the conversation's delete form.
#[derive(Debug, Clone, Copy)]
pub struct MessageActions<'a> {
    /// `/chat/<id>/delete` or `/chat/group/<id>/delete`.
    pub delete_action: &'a str,
    pub csrf: &'a str,
    /// Shown inside the live frame: the form's answer replaces the whole page.
    pub in_frame: bool,
}

/// The small form beside one of the reader's own messages that deletes it for everyone.
fn delete_form(m: &Shown, a: &MessageActions<'_>) -> Markup {
    html! {
        form.inline.delete method="post" action=(a.delete_action)
            target=[a.in_frame.then_some("_top")] {
            input type="hidden" name="csrf" value=(a.csrf);
            input type="hidden" name="seq" value=(m.seq);
            input type="hidden" name="message" value=(b64url(&m.id));
            button.link type="submit" aria-describedby=(format!("m{}-time", m.seq)) {
                "Delete for everyone"
            }
        }
    }
}

/// One message, as the chat page and the live stream show it. `sender_name` is shown for
/// messages of others; a self-destructing message carries the classes that hide it at its
/// deadline (see [`expiry_classes`]); the reader's own messages carry the form that
/// deletes them when `actions` is given.
pub fn message(
    m: &Shown,
    sender_name: &str,
    now: UnixTime,
    actions: Option<&MessageActions<'_>>,
) -> Markup {
    let mut class = String::from("msg");
    if m.mine {
        class.push_str(" mine");
    }
    if let Some(deadline) = m.expires_at {
        class.push(' ');
        class.push_str(&expiry_classes(deadline.saturating_sub(now)));
    }
    html! {
        article class=(class) id=(format!("m{}", m.seq)) data-status=(m.status.as_str()) {
            header {
                strong.sender { @if m.mine { "You" } @else { (sender_name) } }
                " "
                time id=(format!("m{}-time", m.seq)) { (utc_minute(m.sent_at)) }
                " "
                (status(m.status))
                @if let Some(deadline) = m.expires_at {
                    " "
                    span.timer title="This message self-destructs." {
                        "⏱ disappears " (utc_minute(deadline))
                    }
                }
                @if let Some(a) = actions.filter(|_| m.mine) {
                    " " (delete_form(m, a))
                }
            }
            @if let Some(text) = &m.text {
                p.text dir="auto" { (text) }
            }
        }
    }
}

/// The self-destruct timer of a send form.
pub fn timer_select() -> Markup {
    html! {
        label {
            "Self-destruct"
            select name="timer" {
                option value="" selected { "Never" }
                @for (secs, _) in TIMERS {
                    option value=(secs) { "After " (timer_label(*secs)) }
                }
            }
        }
    }
}

/// What the live stream writes when a message it may show was deleted at its deadline:
/// a stylesheet from our own origin that hides it.
pub fn live_expired(seq: u64) -> Markup {
    html! {
        link rel="stylesheet" href=(format!("/chat/expired/{seq}.css"));
    }
}

/// The stylesheet of [`live_expired`].
pub fn expired_css(seq: u64) -> String {
    format!("#m{seq}{{display:none!important}}\n")
}

/// Everything the chat page shows.
pub struct ChatPage<'a> {
    pub conversation: Id,
    pub peer_name: &'a str,
    pub peer_online: bool,
    pub scheme: &'a str,
    pub my_fingerprint: &'a str,
    pub peer_fingerprint: &'a str,
    /// Oldest first.
    pub messages: &'a [Shown],
    /// `Some(seq)`: older messages exist before `seq`.
    pub older: Option<u64>,
    /// `Some(after)` on the latest page: the live stream shows what comes after `after`.
    pub live_after: Option<u64>,
    pub error: Option<&'a str>,
    /// What the form before this page did (post–redirect–get).
    pub notice: Option<&'a str>,
    pub max_bytes: usize,
    pub now: UnixTime,
    /// The conversation moved to end-to-end (`e2e`): no more server-sealed messages.
    pub end_to_end: Option<Id>,
}

crate::connections::debug_without_names!(ChatPage<'_>, OnlineEntry);

/// The chat page: send form, live stream, history (newest first throughout).
pub fn chat_page(ctx: &PageCtx, p: &ChatPage<'_>) -> Markup {
    let id = b64url(&p.conversation);
    let title = format!("Chat with {}", p.peer_name);
    let delete_action = format!("/chat/{id}/delete");
    let actions = MessageActions {
        delete_action: &delete_action,
        csrf: &ctx.csrf,
        in_frame: false,
    };
    page(
        ctx,
        &title,
        html! {
            @if let Some(n) = p.notice { p.notice role="status" { (n) } }
            p.status {
                (p.peer_name) " is " (presence_badge(p.peer_online))
                " · " a href="/connections" { "All connections" }
            }
            details.keys {
                summary { "Keys of this connection" }
                p {
                    "Messages are encrypted with this connection's own key and signed with "
                    (p.scheme) " by the sender's key for this connection only. Fingerprints:"
                }
                ul {
                    li { "Yours: " code { (p.my_fingerprint) } }
                    li { (p.peer_name) ": " code { (p.peer_fingerprint) } }
                }
            }
            @if let Some(e2e) = p.end_to_end {
                p.notice role="status" {
                    "This conversation is end-to-end encrypted now. "
                    a href=(format!("/e2e/c/{}", b64url(&e2e))) { "Open it" }
                    " (it needs JavaScript). The messages below were sealed by the server before."
                }
            }
            @if p.live_after.is_some() && p.end_to_end.is_none() {
                (form_error(p.error))
                form.stack.send method="post" action=(format!("/chat/{id}")) {
                    (csrf_field(ctx))
                    label {
                        "Message"
                        textarea name="message" rows="3" required maxlength=(p.max_bytes) dir="auto" {}
                        small { "Up to " (p.max_bytes) " bytes. Newest messages are at the top." }
                    }
                    (timer_select())
                    button type="submit" { "Send" }
                }
            }
            @if let Some(after) = p.live_after {
                iframe.live-frame src=(format!("/chat/{id}/live?after={after}&first=1"))
                    title="New messages, as they arrive" {}
            } @else {
                p { a href=(format!("/chat/{id}")) { "Back to the latest messages" } }
            }
            section.history aria-label="Earlier messages" {
                @if p.messages.is_empty() && p.older.is_none() {
                    p.muted { "No messages yet." }
                }
                @for m in p.messages.iter().rev() {
                    (message(m, p.peer_name, p.now, Some(&actions)))
                }
                @if let Some(before) = p.older {
                    p { a href=(format!("/chat/{id}?before={before}")) { "Older messages" } }
                }
            }
        },
    )
}

/// The start of the live stream document, up to the list new messages go into. Padded
/// to a kilobyte: some browsers hold back the first bytes of a streamed document.
pub fn live_head() -> String {
    let head = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="referrer" content="no-referrer";
                title { "New messages" }
                link rel="stylesheet" href=(assets::STYLE.path);
            }
        }
    }
    .into_string();
    // maud closes every element; the stream keeps `html` and `body` open, so the head is
    // written up to `</head>` and the body is opened by hand.
    let head = head.strip_suffix("</html>").unwrap_or(&head).to_owned();
    let mut out = String::with_capacity(2048);
    out.push_str(&head);
    out.push_str("<body class=\"live-doc\"><!--");
    out.push_str(&" ".repeat(1024));
    // A landmark and a heading (for screen readers only) make the frame's document a
    // page of its own; the list stays open for what the stream appends.
    out.push_str(
        "--><main><h1 class=\"sr-only\">New messages</h1><div class=\"live\" aria-live=\"polite\">",
    );
    out.push_str(&live_waiting().into_string());
    out
}

/// What an empty live frame says: what will appear in it. The stylesheet hides it once a
/// message or a group event is there (`.live:has(.msg, .event) .waiting`).
pub fn live_waiting() -> Markup {
    html! {
        p.note.waiting { "New messages will appear here as they arrive, without reloading the page." }
    }
}

/// A notice inside the live stream (presence changes, catch-up gaps).
pub fn live_note(text: &str, t: UnixTime) -> Markup {
    html! {
        p.note { time { (utc_minute(t)) } " " (text) }
    }
}

/// A link out of the live frame to the whole chat page at `path`.
pub fn live_reload_link(path: &str, text: &str) -> Markup {
    html! {
        p.note { a href=(path) target="_top" { (text) } }
    }
}

/// Keep-alive comment, so that idle circuits and proxies keep the stream open.
pub const KEEP_ALIVE: &str = "<!-- keep-alive -->\n";

/// The end of a live stream that reloads itself after `delay` seconds.
pub fn live_end_reload(delay: u64) -> String {
    format!("</div></main><meta http-equiv=\"refresh\" content=\"{delay}\"></body></html>\n")
}

/// The end of the frame's first document, which loads the stream at `path` after `delay`
/// seconds.
pub fn live_end_reload_to(delay: u64, path: &str) -> String {
    let meta = html! { meta http-equiv="refresh" content=(format!("{delay}; url={path}")); };
    format!("</div></main>{}</body></html>\n", meta.into_string())
}

/// The end of a live stream that stops for good, with a last notice.
pub fn live_end_final(notice: Markup) -> String {
    let mut out = String::from("</div>");
    out.push_str(&notice.into_string());
    out.push_str("</main></body></html>\n");
    out
}

/// A whole small document shown inside the live frame (errors: not logged in, not found,
/// too many streams).
pub fn live_message_doc(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="referrer" content="no-referrer";
                title { (title) }
                link rel="stylesheet" href=(assets::STYLE.path);
            }
            body.live-doc {
                main {
                    h1.sr-only { (title) }
                    p.note role="alert" { (title) ". " (body) }
                }
            }
        }
    }
}

/// An online connection in the online list.
#[derive(Clone)]
pub struct OnlineEntry {
    pub member: Id,
    pub username: String,
    pub connection: Id,
}

/// `GET /users/online`.
pub fn online(ctx: &PageCtx, entries: &[OnlineEntry]) -> Markup {
    page(
        ctx,
        "Online now",
        html! {
            p.muted { "Your connections who are online now. Only your connections can see whether you are." }
            @if entries.is_empty() {
                p { "None of your connections is online." }
            } @else {
                ul.people {
                    @for e in entries {
                        li {
                            strong.name { (e.username) }
                            " " (presence_badge(true)) " "
                            a href=(format!("/chat/{}", b64url(&e.connection))) { "Chat" }
                        }
                    }
                }
            }
            p { a href="/connections" { "All connections" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(date_of_day(19_723), "2024-01-01");
        assert_eq!(date_of_day(19_782), "2024-02-29");
        assert_eq!(utc_minute(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc_minute(-1), "1969-12-31 23:59 UTC");
    }

    #[test]
    fn message_text_is_escaped() {
        let m = Shown {
            seq: 1,
            id: [0; 16],
            sender: [1; 16],
            mine: false,
            sent_at: 0,
            expires_at: None,
            text: Some("<script>alert(1)</script> & \"' \u{202e}".into()),
            status: Verification::Verified,
        };
        let out = message(&m, "<b>peer</b>", 0, None).into_string();
        assert!(!out.contains("<script>"));
        assert!(out.contains("&lt;script&gt;"));
        assert!(!out.contains("<b>peer"));
        assert!(out.contains("signature verified"));
    }

    #[test]
    fn expiry_classes_sum_to_the_seconds_left() {
        assert_eq!(expiry_classes(30), "exp xs-30");
        assert_eq!(expiry_classes(0), "exp xs-1", "already due: hide at once");
        assert_eq!(expiry_classes(3600), "exp xh-1");
        assert_eq!(expiry_classes(7 * 86_400 - 1), "exp xd-6 xh-23 xm-59 xs-59");
        assert_eq!(expiry_classes(90_061), "exp xd-1 xh-1 xm-1 xs-1");
        // Every class used exists in the stylesheet.
        let css = std::str::from_utf8(crate::web::assets::STYLE.bytes).unwrap();
        for class in ["xd-7", "xh-23", "xm-59", "xs-59", "xs-1"] {
            assert!(css.contains(&format!(".{class}{{")), "{class} missing");
        }
        let m = Shown {
            seq: 4,
            id: [0; 16],
            sender: [1; 16],
            mine: true,
            sent_at: 100,
            expires_at: Some(400),
            text: Some("x".into()),
            status: Verification::Verified,
        };
        let out = message(&m, "p", 100, None).into_string();
        assert!(out.contains("class=\"msg mine exp xm-5\""), "{out}");
        assert!(!out.contains("<form"), "no actions: no form");
        let actions = MessageActions {
            delete_action: "/chat/x/delete",
            csrf: "tok",
            in_frame: true,
        };
        let out = message(&m, "p", 100, Some(&actions)).into_string();
        assert!(
            out.contains("action=\"/chat/x/delete\" target=\"_top\""),
            "{out}"
        );
        assert!(out.contains("name=\"seq\" value=\"4\""), "{out}");
        let theirs = Shown { mine: false, ..m };
        let out = message(&theirs, "p", 100, Some(&actions)).into_string();
        assert!(
            !out.contains("<form"),
            "only one's own messages can be deleted"
        );
        assert_eq!(expired_css(4), "#m4{display:none!important}\n");
    }

    #[test]
    fn the_first_document_of_a_frame_refreshes_into_the_stream() {
        let end = live_end_reload_to(0, "/chat/abc/live?after=7");
        assert_eq!(
            end,
            "</div></main><meta http-equiv=\"refresh\" content=\"0; url=/chat/abc/live?after=7\"></body></html>\n"
        );
    }

    #[test]
    fn live_head_is_an_open_document() {
        let h = live_head();
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(h.contains("</head><body"));
        assert!(h.contains("<main><h1 class=\"sr-only\">New messages</h1>"));
        assert!(h.contains("<div class=\"live\" aria-live=\"polite\"><p class=\"note waiting\">"));
        assert!(h.ends_with("</p>"), "the list stays open for messages");
        assert!(h.len() > 1024);
    }
}
