//! File pages. Pure functions from data to markup; every name shown has been through
//! `files::display_name`, and maud escapes it.

use maud::{Markup, html};

use crate::clock::UnixTime;
use crate::web::assets;
use crate::web::layout::{PageCtx, csrf_field, form_error, page, page_with_scripts};

/// One of the viewer's own files, as listed.
#[derive(Debug)]
pub struct OwnedRow {
    pub url_id: String,
    pub name: String,
    pub size: u64,
    pub expires_at: UnixTime,
    pub grantees: Vec<String>,
}

/// A file someone shared with the viewer, as listed.
#[derive(Debug)]
pub struct SharedRow {
    pub url_id: String,
    pub name: String,
    pub owner: String,
    pub size: u64,
    pub expires_at: UnixTime,
}

/// What the file page shows.
#[derive(Debug)]
pub struct FileView {
    pub url_id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub expires_at: UnixTime,
    /// For a grantee: who shared it.
    pub owner: Option<String>,
    /// For the owner: who may read it, as (grantee id in base64url, username).
    pub grantees: Option<Vec<(String, String)>>,
}

/// A size in decimal units, as file managers show it: `950 bytes`, `1.3 kB`, `50.0 MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return if bytes == 1 {
            "1 byte".to_owned()
        } else {
            format!("{bytes} bytes")
        };
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("PB"))
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC` (expiry times are whole hours).
pub fn utc(ts: UnixTime) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// `/files`: the viewer's files and the files shared with them.
pub fn list(
    ctx: &PageCtx,
    owned: &[OwnedRow],
    shared: &[SharedRow],
    used: u64,
    quota: u64,
    notice: Option<&str>,
) -> Markup {
    page(
        ctx,
        "Files",
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            p { a.button href="/file/upload" { "Upload a file" } }
            p.muted { "You use " (human_size(used)) " of your " (human_size(quota)) "." }
            section aria-labelledby="own" {
                h2 id="own" { "Your files" }
                @if owned.is_empty() {
                    p.muted { "You have no files." }
                } @else {
                    table.files {
                        thead { tr { th { "Name" } th { "Size" } th { "Deleted on" } th { "Shared with" } } }
                        tbody {
                            @for f in owned {
                                tr {
                                    td.name { a href={ "/file/" (f.url_id) } { (f.name) } }
                                    td { (human_size(f.size)) }
                                    td { (utc(f.expires_at)) }
                                    td {
                                        @if f.grantees.is_empty() {
                                            span.muted { "nobody" }
                                        } @else {
                                            @for (i, g) in f.grantees.iter().enumerate() {
                                                @if i > 0 { ", " }
                                                a href={ "/u/" (g) } { (g) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="shared" {
                h2 id="shared" { "Shared with you" }
                (shared_table(shared, true))
            }
        },
    )
}

/// The table of files shared with the viewer (on `/files` and on a profile).
pub fn shared_table(shared: &[SharedRow], show_owner: bool) -> Markup {
    html! {
        @if shared.is_empty() {
            p.muted { "Nothing is shared with you." }
        } @else {
            table.files.shared {
                thead { tr {
                    th { "Name" }
                    @if show_owner { th { "From" } }
                    th { "Size" }
                    th { "Deleted on" }
                } }
                tbody {
                    @for f in shared {
                        tr {
                            td.name { a href={ "/file/" (f.url_id) } { (f.name) } }
                            @if show_owner { td { a href={ "/u/" (f.owner) } { (f.owner) } } }
                            td { (human_size(f.size)) }
                            td { (utc(f.expires_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// Where `e2e-files.js` says what it is doing, and what went wrong.
fn script_messages() -> Markup {
    html! {
        p #e2e-file-error .error role="alert" hidden {}
        p #e2e-file-status role="status" aria-live="polite" hidden {}
    }
}

/// The upload form. The hidden CSRF field comes first, and `expiry_days` and `key` before
/// `file`: browsers send fields in document order, the server checks the token before it
/// stores a byte and needs the key before the file's first byte arrives.
///
/// With JavaScript on, `e2e-files.js` takes the form over: it encrypts the file in the
/// browser and sends its tokens instead (`files::sealed`); texts for one way or the other
/// are marked `e2e-file-server` and `e2e-file-browser`.
pub fn upload(ctx: &PageCtx, max_bytes: u64, error: Option<&str>) -> Markup {
    page_with_scripts(
        ctx,
        "Upload a file",
        html! {
            (form_error(error))
            (script_messages())
            form.stack #e2e-file-upload method="post" action="/file/upload" enctype="multipart/form-data"
                data-chunk=(super::CHUNK_BYTES) {
                (csrf_field(ctx))
                label {
                    "Delete after (days)"
                    input type="number" name="expiry_days" value="365" min="1" max="365" step="1" required;
                    small { "1 to 365 days. The file is deleted then, and this cannot be extended." }
                }
                label {
                    "Your own key (optional)"
                    input type="password" name="key" autocomplete="off" spellcheck="false"
                        autocapitalize="none" size="48" maxlength="200";
                    small {
                        "Leave it empty and "
                        span.e2e-file-server { "the server" }
                        span.e2e-file-browser hidden { "your browser" }
                        " makes a new key. Or paste a Fernet key of "
                        "your own: 32 random bytes in URL-safe base64, 44 characters of letters, "
                        "digits, " code { "-" } " and " code { "_" } ", ending in " code { "=" }
                        " (Python: " code { "Fernet.generate_key()" } ")."
                    }
                }
                label {
                    "File"
                    input type="file" name="file" required;
                    small { "Up to " (human_size(max_bytes)) "." }
                }
                button type="submit" { "Encrypt and upload" }
            }
            p.muted.e2e-file-server {
                "The server encrypts the file as it arrives, with a new key or the one you entered, "
                "and shows you that key once, on the next page. It does not keep the key: without "
                "it, nobody can open the file, you and the operator included."
            }
            p.muted.e2e-file-browser hidden {
                "Your browser encrypts the file before it leaves this computer, with a new key or "
                "the one you entered, and shows you that key once. The key is never sent: the "
                "server stores the encrypted file only, and nobody can open it without the key, "
                "you and the operator included."
            }
            section.card #e2e-file-done hidden aria-labelledby="key" {
                h2 id="key" { "Uploaded. Your key — copy it now" }
                p { "This is the only time the key is shown. It was made (or entered) in your browser and never sent: the server cannot show it again." }
                label {
                    "Key"
                    input.key #e2e-file-key type="text" readonly size="48" autocomplete="off" spellcheck="false";
                }
                p { a #e2e-file-link href="/files" { "Go to the file's page" } " · " a href="/files" { "All your files" } }
            }
        },
        &[&assets::E2E_FILES],
    )
}

/// The answer to an upload: the key, shown this once.
pub fn uploaded(
    ctx: &PageCtx,
    url_id: &str,
    name: &str,
    size: u64,
    expires_at: UnixTime,
    key: &str,
) -> Markup {
    page(
        ctx,
        "File uploaded",
        html! {
            p.notice role="status" {
                strong { (name) } " (" (human_size(size)) ") is stored encrypted until " (utc(expires_at)) "."
            }
            section.card aria-labelledby="key" {
                h2 id="key" { "Your key — copy it now" }
                p { "This is the only time the key is shown. The server does not keep it and cannot show it again." }
                label {
                    "Key"
                    input.key type="text" readonly value=(key) size="48" autocomplete="off" spellcheck="false";
                }
                ul {
                    li { "Keep it somewhere safe, for example in a password manager." }
                    li { "Without it the file cannot be opened by anyone: not by you, not by the operator." }
                    li { "To let someone else open the file, share the file with them here and give them the key another way." }
                }
            }
            p {
                a href={ "/file/" (url_id) } { "Go to the file's page" }
                " · "
                a href="/files" { "All your files" }
            }
        },
    )
}

/// A file's page: details, the download form (asks for the key), and for the owner the
/// access list and deletion.
pub fn file(ctx: &PageCtx, f: &FileView, error: Option<&str>, notice: Option<&str>) -> Markup {
    let base = format!("/file/{}", f.url_id);
    page_with_scripts(
        ctx,
        &f.name,
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            dl.facts {
                dt { "Size" } dd { (human_size(f.size)) " (" (f.size) " bytes)" }
                dt { "Type" } dd { (f.content_type) }
                dt { "Deleted on" } dd { (utc(f.expires_at)) }
                @if let Some(owner) = &f.owner {
                    dt { "Shared by" } dd { a href={ "/u/" (owner) } { (owner) } }
                }
            }
            section.card aria-labelledby="dl" {
                h2 id="dl" { "Download" }
                (form_error(error))
                (script_messages())
                form.stack #e2e-file-download method="post" action={ (base) "/download" }
                    data-raw={ (base) "/raw" } data-name=(f.name) data-size=(f.size) {
                    (csrf_field(ctx))
                    label {
                        "Key"
                        input type="password" name="key" required autocomplete="off" spellcheck="false" size="48";
                        small { "The 44-character key shown when the file was uploaded." }
                    }
                    button type="submit" { "Decrypt and download" }
                }
                p.muted.e2e-file-browser hidden {
                    "Your browser decrypts the file: the key is not sent to the server."
                }
                p.muted {
                    "Or " a href={ (base) "/raw" } { "download the encrypted file" }
                    " and decrypt it on your own computer with "
                    code { "ghostcache decrypt" } " or Python's " code { "cryptography" } " package."
                }
            }
            @if let Some(grantees) = &f.grantees {
                section.card aria-labelledby="access" {
                    h2 id="access" { "Who can see it" }
                    @if grantees.is_empty() {
                        p.muted { "Only you." }
                    } @else {
                        ul.grantees {
                            @for (id, name) in grantees {
                                li {
                                    a href={ "/u/" (name) } { (name) }
                                    " "
                                    form.inline method="post" action={ (base) "/revoke" } {
                                        (csrf_field(ctx))
                                        input type="hidden" name="grantee" value=(id);
                                        button.link type="submit" { "remove" }
                                    }
                                }
                            }
                        }
                    }
                    form.stack method="post" action={ (base) "/share" } {
                        (csrf_field(ctx))
                        label {
                            "Share with (username)"
                            input type="text" name="username" required maxlength="32"
                                autocomplete="off" autocapitalize="none" spellcheck="false";
                            small { "They will see the file on your profile page. Give them the key yourself." }
                        }
                        button type="submit" { "Share" }
                    }
                }
                section.card aria-labelledby="del" {
                    h2 id="del" { "Delete" }
                    form method="post" action={ (base) "/delete" } {
                        (csrf_field(ctx))
                        button.danger type="submit" { "Delete this file now" }
                    }
                }
            }
            p { a href="/files" { "All files" } }
        },
        &[&assets::E2E_FILES],
    )
}

/// Why a raw download was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawRefusal {
    /// `If-Match` named another version (412).
    Changed,
    /// The range asked for lies outside the blob (416).
    Range,
}

/// The page answering a raw download that could not be served as asked.
pub fn raw_refused(ctx: &PageCtx, url_id: &str, why: RawRefusal) -> Markup {
    let (title, text) = match why {
        RawRefusal::Changed => (
            "This file is not the version asked for",
            "The download asked for a version of this file that is not the one stored here. Start the download again from the file's page.",
        ),
        RawRefusal::Range => (
            "That part of the file does not exist",
            "The download asked to resume past the end of this encrypted file. Delete the partial download and start it again from the file's page.",
        ),
    };
    page(
        ctx,
        title,
        html! {
            p { (text) }
            p { a href={ "/file/" (url_id) } { "Go to the file's page" } }
        },
    )
}

/// The part of a member's profile that lists the files its owner shared with the viewer.
pub fn profile_section(owner: &str, shared: &[SharedRow]) -> Markup {
    html! {
        section aria-labelledby="profile-files" {
            h2 id="profile-files" { "Files " (owner) " shared with you" }
            (shared_table(shared, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_dates() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1), "1 byte");
        assert_eq!(human_size(999), "999 bytes");
        assert_eq!(human_size(1_300), "1.3 kB");
        assert_eq!(human_size(50_000_000), "50.0 MB");
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    #[test]
    fn hostile_names_are_escaped() {
        let ctx = PageCtx {
            banner: false,
            user: Some("alice".into()),
            csrf: "t".into(),
            nav: crate::web::layout::Nav::default(),
            can_register: true,
        };
        let row = SharedRow {
            url_id: "x".into(),
            name: "\"<script>\" & '".into(),
            owner: "bob".into(),
            size: 1,
            expires_at: 0,
        };
        let html = list(&ctx, &[], &[row], 0, 1, None).into_string();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&quot;&lt;script&gt;&quot; &amp; '"));
    }
}
