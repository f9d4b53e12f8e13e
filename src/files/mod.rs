//! Encrypted file hosting: the rules (expiry, names, content types), the stored records,
//! and the blob format.
//!
//! A file is encrypted at upload with a fresh Fernet key that is shown to the uploader once
//! and never stored. The plaintext is cut into chunks of [`CHUNK_BYTES`]; each chunk
//! becomes one Fernet token, stored as one row of `FILE_CHUNKS`. The downloadable *blob*
//! is exactly those tokens in order, each followed by `\n`, so any Fernet implementation
//! (Python's `cryptography`, `ghostcache decrypt`) can decrypt it line by line.
//!
//! The original name and content type are sealed under the owner's `data_key`, and sealed
//! again to each grantee's delivery public key when the file is shared. Nothing about a
//! file is readable at rest except its size, its chunk count, its expiry (to the hour) and
//! who owns it and who may read it.

pub mod download;
pub mod handlers;
pub mod range;
pub mod receive;
pub mod sealed;
pub mod store;
pub mod upload;
pub mod views;

use std::collections::HashSet;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::clock::UnixTime;
use crate::crypto::fernet_buf::{self, Plain, Sealable};
use crate::crypto::hybrid::HybridSealed;
use crate::crypto::{CryptoError, SecretKey};
use crate::store::{Id, Record, StoreError};

pub use store::{RowCounts, count_rows, erase_member_in, sweep};

/// Plaintext bytes per chunk (and so per Fernet token). Chosen by measurement
/// (`cargo bench --bench chunk_size`, figures in README): sealing and storing, the slower
/// direction, gets about 90 % of its best rate here and little more beyond, while memory
/// per upload and per download doubles with each step up.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Most chunks written per write transaction while an upload streams in. Each commit is
/// durable (two fsyncs, about 10 ms here), so a streaming upload is bound by how much one
/// commit carries; 16 chunks (4 MiB) keep it above 150 MB/s with under 16 MB held.
pub const BATCH_CHUNKS: usize = 16;

/// Longest and default expiry, in days.
pub const MAX_EXPIRY_DAYS: u32 = 365;

/// Original names longer than this (in bytes) are cut before sealing. Real file names
/// are at most 255 bytes on every common file system.
pub const MAX_STORED_NAME_BYTES: usize = 1024;

/// Longest name shown on a page or sent in `Content-Disposition`, in characters.
pub const MAX_DISPLAY_CHARS: usize = 120;

const SECONDS_PER_DAY: i64 = 86_400;
const SECONDS_PER_HOUR: i64 = 3_600;

/// A hosted file.
#[derive(Clone, Serialize, Deserialize)]
pub struct FileRecord {
    /// Who uploaded it.
    pub owner: Id,
    /// `FileMeta`, postcard-encoded and sealed under the owner's `data_key`.
    pub meta_sealed: String,
    /// Plaintext size in bytes (so far, while the upload runs).
    pub size: u64,
    /// Number of chunks (tokens) stored.
    pub chunks: u32,
    /// Size of the blob: every token plus its `\n`.
    pub blob_bytes: u64,
    /// Unix time after which the file is gone, rounded down to the hour.
    pub expires_at: UnixTime,
    /// False while the upload streams in; an incomplete file is invisible and is deleted
    /// by the sweeper unless its upload is still running.
    pub complete: bool,
}

impl std::fmt::Debug for FileRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRecord")
            .field("size", &self.size)
            .field("chunks", &self.chunks)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

impl Record for FileRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "file";
}

/// A grant: the file's metadata sealed to the grantee's delivery key.
#[derive(Clone, Serialize, Deserialize)]
pub struct FileGrantRecord {
    pub meta: HybridSealed,
}

impl std::fmt::Debug for FileGrantRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileGrantRecord(..)")
    }
}

impl Record for FileGrantRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "file grant";
}

/// What is sealed about a file: its original name and content type.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct FileMeta {
    /// The name the uploader's browser sent (cut to [`MAX_STORED_NAME_BYTES`]).
    pub name: String,
    /// A sanitised media type such as `image/png`.
    pub content_type: String,
}

impl std::fmt::Debug for FileMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileMeta(..)")
    }
}

impl FileMeta {
    /// The postcard encoding, for sealing.
    pub fn encode(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
        postcard::to_stdvec(self)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| StoreError::Encode(e.to_string()))
    }

    /// Decode what [`FileMeta::encode`] produced.
    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        postcard::from_bytes(bytes).map_err(|_| CryptoError::Unseal)
    }

    /// Seal under a member's `data_key`.
    pub fn seal(&self, key: &SecretKey) -> Result<String, StoreError> {
        key.seal(&self.encode()?)
            .map_err(|e| StoreError::Encode(e.to_string()))
    }

    /// Open what [`FileMeta::seal`] sealed.
    pub fn open(sealed: &str, key: &SecretKey) -> Result<Self, CryptoError> {
        Self::decode(&key.open(sealed)?)
    }
}

/// Uploads that are streaming right now. The sweeper deletes incomplete files that are not
/// in this set (left behind by a crash or a lost clean-up).
#[derive(Default)]
pub struct LiveUploads(Mutex<HashSet<Id>>);

impl std::fmt::Debug for LiveUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveUploads")
            .field("running", &self.0.lock().len())
            .finish()
    }
}

impl LiveUploads {
    /// Mark an upload as running (before its first row is written).
    pub fn begin(&self, id: Id) {
        self.0.lock().insert(id);
    }

    /// Mark an upload as finished or abandoned.
    pub fn end(&self, id: &Id) {
        self.0.lock().remove(id);
    }

    /// Whether the upload of `id` is running.
    pub fn contains(&self, id: &Id) -> bool {
        self.0.lock().contains(id)
    }

    /// How many uploads are running.
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// Whether no upload is running.
    pub fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }
}

/// Why an `expiry_days` value was refused. Shown to the member.
pub const EXPIRY_MESSAGE: &str =
    "Expiry must be a whole number of days from 1 to 365. It cannot be changed later.";

/// Parse the `expiry_days` field: a whole number from 1 to 365 (ASCII digits only, no
/// sign; surrounding spaces are ignored).
pub fn parse_expiry_days(text: &str) -> Option<u32> {
    let t = text.trim();
    if t.is_empty() || t.len() > 3 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let days: u32 = t.parse().ok()?;
    (1..=MAX_EXPIRY_DAYS).contains(&days).then_some(days)
}

/// When a file uploaded at `now` for `days` days expires: rounded down to the hour, so the
/// file keeps no precise upload time (and so it is never later than asked for).
pub fn expires_at(now: UnixTime, days: u32) -> UnixTime {
    let exact = now.saturating_add(i64::from(days).saturating_mul(SECONDS_PER_DAY));
    exact - exact.rem_euclid(SECONDS_PER_HOUR)
}

/// Browsers send a file name inside a quoted multipart header and, per the HTML standard,
/// escape only `"`, CR and LF there as `%22`, `%0D` and `%0A`. Undo exactly that, then cut
/// a name longer than [`MAX_STORED_NAME_BYTES`] to its start, `…` and its last 64 bytes.
/// This is the name that is sealed; display and download use [`display_name`].
pub fn received_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_STORED_NAME_BYTES));
    let mut rest = raw;
    while let Some(pos) = rest.find('%') {
        let (before, from) = rest.split_at(pos);
        out.push_str(before);
        let code = from.get(1..3).map(str::to_ascii_uppercase);
        match code.as_deref() {
            Some("22") => out.push('"'),
            Some("0D") => out.push('\r'),
            Some("0A") => out.push('\n'),
            _ => {
                out.push('%');
                rest = from.get(1..).unwrap_or("");
                continue;
            }
        }
        rest = from.get(3..).unwrap_or("");
    }
    out.push_str(rest);
    if out.len() <= MAX_STORED_NAME_BYTES {
        return out;
    }
    // Keep the start and the end (where the extension is), cut at character boundaries.
    const TAIL: usize = 64;
    let mut head_end = MAX_STORED_NAME_BYTES - TAIL - '…'.len_utf8();
    while !out.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = out.len() - TAIL;
    while !out.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    let head = out.get(..head_end).unwrap_or("");
    let tail = out.get(tail_start..).unwrap_or("");
    format!("{head}…{tail}")
}

/// Characters that change how text around them is displayed without being visible
/// themselves: bidirectional embeddings, overrides and isolates (U+202E makes
/// `gpj.exe` look like `exe.jpg`), direction marks, zero-width characters and the BOM.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}'
        | '\u{061C}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}')
}

/// The name as shown on pages and offered in `Content-Disposition`: without control
/// characters and invisible formatting characters, with `/` and `\` replaced by `_`,
/// without leading dots or surrounding spaces, and at most [`MAX_DISPLAY_CHARS`]
/// characters (a long name keeps its end, where the extension is). Never empty.
pub fn display_name(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    let count = trimmed.chars().count();
    let name: String = if count > MAX_DISPLAY_CHARS {
        let tail_len = 20;
        let head: String = trimmed
            .chars()
            .take(MAX_DISPLAY_CHARS - tail_len - 1)
            .collect();
        let tail: String = trimmed.chars().skip(count - tail_len).collect();
        format!("{}…{}", head.trim_end(), tail)
    } else {
        trimmed.to_owned()
    };
    if name.is_empty() {
        "unnamed".to_owned()
    } else {
        name
    }
}

/// A `Content-Disposition: attachment` value for `name` (already passed through
/// [`display_name`] or not: it is cleaned again). An ASCII `filename="…"` fallback in
/// which every character outside printable ASCII, and `"`, `\`, `%` and `;`, is `_`, and
/// the exact name as RFC 5987 `filename*=UTF-8''…`. The value holds printable ASCII only,
/// so it can never break out of its header.
pub fn content_disposition(name: &str) -> String {
    let name = display_name(name);
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '%' | ';') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        // RFC 5987 attr-char.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The media type a browser declared for an uploaded file, reduced to `type/subtype` in
/// lower case, or `application/octet-stream` when it is missing or odd. Only shown on the
/// file page: downloads are always served as `application/octet-stream`.
pub fn sanitise_content_type(declared: Option<&str>) -> String {
    const FALLBACK: &str = "application/octet-stream";
    let Some(declared) = declared else {
        return FALLBACK.to_owned();
    };
    let essence = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c);
    match essence.split_once('/') {
        Some((t, s))
            if essence.len() <= 100
                && !t.is_empty()
                && !s.is_empty()
                && t.chars().all(ok_char)
                && s.chars().all(ok_char) =>
        {
            essence
        }
        _ => FALLBACK.to_owned(),
    }
}

/// The URL form of a file id (base64url, 22 characters).
pub fn id_to_url(id: &Id) -> String {
    crate::crypto::b64url(id)
}

/// Parse the URL form of a file id.
pub fn id_from_url(text: &str) -> Option<Id> {
    crate::crypto::b64url_decode_exact::<16>(text)
}

/// What is wrong with a key entered on the upload form. The messages never repeat the
/// key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// Not 44 characters (after surrounding spaces are removed): how many it has.
    Length(usize),
    /// 43 characters of the alphabet without the final `=`.
    MissingPadding,
    /// `+` or `/`: standard base64, not URL-safe.
    StandardBase64,
    /// A character that is in no base64 alphabet.
    Alphabet,
    /// 44 characters of the alphabet that do not encode exactly 32 bytes (an `=` inside,
    /// or a last character whose low bits are not zero).
    Encoding,
    /// The form holds more than one `key` field.
    Twice,
}

impl KeyProblem {
    /// What the member is told.
    pub fn message(self) -> String {
        const FORM: &str = "A key is 32 random bytes in URL-safe base64: 44 characters of letters, digits, - and _, ending in =. Nothing was kept.";
        match self {
            KeyProblem::Length(n) => format!("That key has {n} characters, not 44. {FORM}"),
            KeyProblem::MissingPadding => format!("That key lacks its final =. {FORM}"),
            KeyProblem::StandardBase64 => format!(
                "That key has + or /, so it is standard base64; Fernet keys use - and _ in their place. {FORM}"
            ),
            KeyProblem::Alphabet => {
                format!("That key has characters that no key has. {FORM}")
            }
            KeyProblem::Encoding => {
                format!("Those 44 characters do not encode exactly 32 bytes. {FORM}")
            }
            KeyProblem::Twice => "The form has more than one key. Nothing was kept.".to_owned(),
        }
    }
}

/// Check a key entered on the upload form: empty (after surrounding ASCII whitespace is
/// removed) means none; otherwise exactly Fernet's form, 32 bytes in URL-safe base64 with
/// padding, canonical, as `Fernet.generate_key()` makes them.
pub fn parse_entered_key(text: &str) -> Result<Option<SecretKey>, KeyProblem> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if t.is_empty() {
        return Ok(None);
    }
    if t.contains(['+', '/']) {
        return Err(KeyProblem::StandardBase64);
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    {
        return Err(KeyProblem::Alphabet);
    }
    let n = t.chars().count();
    if n == 43 && !t.contains('=') {
        return Err(KeyProblem::MissingPadding);
    }
    if n != 44 {
        return Err(KeyProblem::Length(n));
    }
    SecretKey::from_base64(t)
        .map(Some)
        .map_err(|_| KeyProblem::Encoding)
}

/// The number chunk `index` carries in its token's (authenticated) timestamp field:
/// `2 × index`, plus 1 on the file's last chunk. A reader that checks it knows that the
/// tokens are in the order they were written and that none is missing at the end;
/// readers that do not (Python's `Fernet.decrypt` without a TTL) still decrypt the blob.
pub fn chunk_stamp(index: u32, last: bool) -> u64 {
    u64::from(index) * 2 + u64::from(last)
}

/// One chunk of plaintext as one Fernet token (the stored row and one line of the blob,
/// without its `\n`), stamped with its place in the file. Uploads seal as the bytes
/// arrive (`upload.rs`); this is the same for a whole chunk at hand.
pub fn seal_chunk(
    key: &SecretKey,
    plaintext: &[u8],
    index: u32,
    last: bool,
) -> Result<Vec<u8>, CryptoError> {
    let mut chunk = Sealable::new(plaintext.len());
    chunk.extend(plaintext);
    chunk.seal(key, chunk_stamp(index, last))
}

/// Decrypt one token of a blob (surrounding whitespace, such as the `\n`, is ignored).
/// Returns the plaintext and the token's stamp (authenticated, since the token opened).
pub fn open_chunk(key: &SecretKey, token: &[u8]) -> Result<(Plain, u64), CryptoError> {
    let (stamp, plain) = fernet_buf::open(key, token)?;
    Ok((plain, stamp))
}

/// Why a chunk of a stored file did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The key does not open it (or it was altered).
    Key,
    /// It opened, but it is not chunk `index` (or its "last" mark is wrong): chunks were
    /// moved, or the file was cut.
    Place,
}

/// Decrypt chunk `index` of a file of `chunks` chunks, checking its stamp.
pub fn open_chunk_at(
    key: &SecretKey,
    token: &[u8],
    index: u32,
    chunks: u32,
) -> Result<Plain, ChunkError> {
    let (plain, stamp) = open_chunk(key, token).map_err(|_| ChunkError::Key)?;
    let last = index.checked_add(1) == Some(chunks);
    if stamp == chunk_stamp(index, last) {
        Ok(plain)
    } else {
        Err(ChunkError::Place)
    }
}

/// Longest line [`decrypt_blob`] reads: far above the token of a 1 MiB chunk.
pub const MAX_BLOB_LINE: u64 = 8 * 1024 * 1024;

/// Why a blob could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the key does not open this blob (wrong key, or not a ghostcache blob)")]
    WrongKey,
    #[error("token {0} of the blob does not verify: the blob is damaged or was tampered with")]
    Corrupt(u64),
    #[error("token {0} of the blob is out of place: the blob was reordered or tampered with")]
    OutOfPlace(u64),
    #[error("the blob ends before its last token: it was cut short")]
    Truncated,
    #[error("line {0} of the blob is too long to be a token: this is not a ghostcache blob")]
    LineTooLong(u64),
    #[error("the blob is empty")]
    Empty,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Decrypt a blob (Fernet tokens, each followed by `\n`) from `input` to `output`, line by
/// line, holding one token at a time. Returns the plaintext size. On an error, `output`
/// holds a prefix of the plaintext: callers write to a temporary file.
pub fn decrypt_blob(
    key: &SecretKey,
    input: &mut impl std::io::BufRead,
    output: &mut impl std::io::Write,
) -> Result<u64, BlobError> {
    use std::io::{BufRead, Read};
    let mut line = Vec::new();
    let mut count = 0u64;
    let mut written = 0u64;
    let mut ended = false;
    loop {
        line.clear();
        let n = Read::take(&mut *input, MAX_BLOB_LINE).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        count += 1;
        if line.last() != Some(&b'\n') && n as u64 == MAX_BLOB_LINE {
            return Err(BlobError::LineTooLong(count));
        }
        let (plain, stamp) = open_chunk(key, &line).map_err(|_| {
            if count == 1 {
                BlobError::WrongKey
            } else {
                BlobError::Corrupt(count)
            }
        })?;
        // Token n (from 1) must be chunk n - 1, and nothing may follow the last one.
        if ended || stamp >> 1 != count - 1 {
            return Err(BlobError::OutOfPlace(count));
        }
        ended = stamp & 1 == 1;
        output.write_all(plain.as_ref())?;
        written += plain.len() as u64;
    }
    if count == 0 {
        return Err(BlobError::Empty);
    }
    if !ended {
        return Err(BlobError::Truncated);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_days_accepts_1_to_365_only() {
        assert_eq!(parse_expiry_days("1"), Some(1));
        assert_eq!(parse_expiry_days(" 365 "), Some(365));
        assert_eq!(parse_expiry_days("007"), Some(7));
        for bad in [
            "0",
            "366",
            "-1",
            "+5",
            "abc",
            "",
            "1.5",
            "1e2",
            "99999999999",
            "３",
        ] {
            assert_eq!(parse_expiry_days(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn expiry_is_rounded_down_to_the_hour() {
        let now = 1_700_000_123;
        let at = expires_at(now, 1);
        assert_eq!(at % 3600, 0);
        assert!(at <= now + 86_400 && at > now + 86_400 - 3600);
    }

    #[test]
    fn browser_escapes_in_names_are_undone_and_long_names_cut() {
        assert_eq!(received_name("%22a%22%0d%0Ab%25c%"), "\"a\"\r\nb%25c%");
        let long = format!("{}.tar.gz", "é".repeat(1000));
        let cut = received_name(&long);
        assert!(cut.len() <= MAX_STORED_NAME_BYTES);
        assert!(cut.ends_with("éé.tar.gz") && cut.starts_with("éé"));
        assert_eq!(cut.matches('…').count(), 1);
    }

    #[test]
    fn display_names_are_cleaned() {
        assert_eq!(display_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(display_name("a\0b\r\nc\u{7f}"), "abc");
        assert_eq!(display_name("photo\u{202E}gpj.exe"), "photogpj.exe");
        assert_eq!(display_name("\u{200B}\u{2066}x\u{2069}\u{FEFF}"), "x");
        assert_eq!(display_name("\"<script>\""), "\"<script>\"");
        assert_eq!(display_name(" .. "), "unnamed");
        assert_eq!(display_name(""), "unnamed");
        assert_eq!(display_name("C:\\Users\\me\\a.txt"), "C:_Users_me_a.txt");
        let long = format!("{}.tar.gz", "x".repeat(10_000));
        let shown = display_name(&long);
        assert_eq!(shown.chars().count(), MAX_DISPLAY_CHARS);
        assert!(shown.ends_with("xxx.tar.gz"));
        assert!(shown.contains('…'));
    }

    #[test]
    fn content_disposition_is_one_safe_header() {
        for name in [
            "../../etc/passwd",
            "a\0b",
            "x\r\nSet-Cookie: a=b",
            "evil\u{202E}txt.exe",
            "\"<script>\"",
            "na\"me;x=y\\.txt",
            "résumé 2024.pdf",
            &"n".repeat(10_000),
        ] {
            let v = content_disposition(name);
            assert!(v.bytes().all(|b| (0x20..0x7f).contains(&b)), "{v:?}");
            assert!(hyper::header::HeaderValue::from_str(&v).is_ok());
            let (fallback, star) = v
                .strip_prefix("attachment; filename=\"")
                .and_then(|r| r.split_once("\"; filename*=UTF-8''"))
                .unwrap();
            assert!(!fallback.contains('"') && !fallback.contains('\\'));
            assert!(!star.contains(' ') && !star.contains('"') && !star.contains(';'));
        }
        assert_eq!(
            content_disposition("résumé 2024.pdf"),
            "attachment; filename=\"r_sum_ 2024.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf"
        );
    }

    #[test]
    fn content_types_are_reduced_to_their_essence() {
        assert_eq!(sanitise_content_type(Some("Image/PNG")), "image/png");
        assert_eq!(
            sanitise_content_type(Some("text/plain; charset=utf-8")),
            "text/plain"
        );
        for odd in [
            None,
            Some(""),
            Some("text"),
            Some("a/b/c"),
            Some("text/<x>"),
        ] {
            assert_eq!(sanitise_content_type(odd), "application/octet-stream");
        }
    }

    #[test]
    fn chunks_round_trip_and_wrong_keys_fail() {
        let key = SecretKey::generate();
        let token = seal_chunk(&key, b"chunk", 3, false).unwrap();
        let mut line = token.clone();
        line.push(b'\n');
        let (plain, stamp) = open_chunk(&key, &line).unwrap();
        assert_eq!((plain.as_ref(), stamp), (&b"chunk"[..], 6));
        assert!(open_chunk(&SecretKey::generate(), &token).is_err());
        assert!(open_chunk(&key, b"\xff\xfe").is_err());
        // Its place is checked: index 3 of more than 4 chunks only.
        assert_eq!(open_chunk_at(&key, &line, 3, 5).unwrap().as_ref(), b"chunk");
        assert_eq!(
            open_chunk_at(&key, &line, 2, 5).unwrap_err(),
            ChunkError::Place
        );
        assert_eq!(
            open_chunk_at(&key, &line, 3, 4).unwrap_err(),
            ChunkError::Place,
            "not last"
        );
        let last = seal_chunk(&key, b"end", 4, true).unwrap();
        assert!(open_chunk_at(&key, &last, 4, 5).is_ok());
        assert_eq!(
            open_chunk_at(&key, &last, 4, 6).unwrap_err(),
            ChunkError::Place
        );
        assert_eq!(
            open_chunk_at(&SecretKey::generate(), &last, 4, 5).unwrap_err(),
            ChunkError::Key
        );
    }

    #[test]
    fn blobs_decrypt_line_by_line() {
        let key = SecretKey::generate();
        let mut blob = Vec::new();
        let parts = [&b"hello "[..], b"world", b""];
        let mut tokens = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let token = seal_chunk(&key, part, i as u32, i == parts.len() - 1).unwrap();
            tokens.push(token.clone());
            blob.extend_from_slice(&token);
            blob.push(b'\n');
        }
        let join = |order: &[usize]| {
            let mut b = Vec::new();
            for &i in order {
                b.extend_from_slice(&tokens[i]);
                b.push(b'\n');
            }
            b
        };
        // Reordered, cut, or with a token after the last: refused.
        assert!(matches!(
            decrypt_blob(&key, &mut &join(&[1, 0, 2])[..], &mut Vec::new()),
            Err(BlobError::OutOfPlace(1))
        ));
        assert!(matches!(
            decrypt_blob(&key, &mut &join(&[0, 1])[..], &mut Vec::new()),
            Err(BlobError::Truncated)
        ));
        assert!(matches!(
            decrypt_blob(&key, &mut &join(&[0, 1, 2, 2])[..], &mut Vec::new()),
            Err(BlobError::OutOfPlace(4))
        ));
        let mut out = Vec::new();
        let n = decrypt_blob(&key, &mut &blob[..], &mut out).unwrap();
        assert_eq!((n, &out[..]), (11, &b"hello world"[..]));
        assert!(matches!(
            decrypt_blob(&SecretKey::generate(), &mut &blob[..], &mut Vec::new()),
            Err(BlobError::WrongKey)
        ));
        let mut damaged = blob.clone();
        let second = damaged.iter().position(|&b| b == b'\n').unwrap() + 20;
        damaged[second] ^= 1;
        assert!(matches!(
            decrypt_blob(&key, &mut &damaged[..], &mut Vec::new()),
            Err(BlobError::Corrupt(2))
        ));
        assert!(matches!(
            decrypt_blob(&key, &mut &b""[..], &mut Vec::new()),
            Err(BlobError::Empty)
        ));
    }

    #[test]
    fn entered_keys_must_be_fernet_keys() {
        let key = SecretKey::generate();
        let text = key.to_base64();
        let parsed = parse_entered_key(&format!(" {}\n", &*text))
            .unwrap()
            .unwrap();
        assert_eq!(parsed.expose(), key.expose());
        assert!(parse_entered_key("").unwrap().is_none());
        assert!(parse_entered_key(" \t\r\n").unwrap().is_none());
        // A key with both - and _ in it, and its standard-base64 twin.
        let url = "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8=";
        assert!(parse_entered_key(url).unwrap().is_some());
        let standard = url.replace('-', "+").replace('_', "/");
        for (bad, problem) in [
            (&standard[..], KeyProblem::StandardBase64),
            (&text[..43], KeyProblem::MissingPadding),
            (&text[..40], KeyProblem::Length(40)),
            (&format!("{}A", &*text), KeyProblem::Length(45)),
            ("short", KeyProblem::Length(5)),
            (&format!("{}é=", &text[..42]), KeyProblem::Alphabet),
            (&format!("{} =", &text[..42]), KeyProblem::Alphabet),
            (&format!("{}.=", &text[..42]), KeyProblem::Alphabet),
            // The low bits of the last character must be zero ("-_8=" ends in 8; 9 is not).
            (
                "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_9=",
                KeyProblem::Encoding,
            ),
            (&format!("{}==", &text[..42]), KeyProblem::Encoding),
            (&format!("={}", &text[..43]), KeyProblem::Encoding),
        ] {
            assert_eq!(parse_entered_key(bad).err(), Some(problem), "{bad:?}");
            assert!(!problem.message().contains(&*text));
        }
    }

    #[test]
    fn metadata_seals_and_hides_in_debug() {
        let key = SecretKey::generate();
        let meta = FileMeta {
            name: "secret-plan.txt".into(),
            content_type: "text/plain".into(),
        };
        let sealed = meta.seal(&key).unwrap();
        assert!(!sealed.contains("secret"));
        let back = FileMeta::open(&sealed, &key).unwrap();
        assert_eq!(back.name, "secret-plan.txt");
        assert_eq!(format!("{back:?}"), "FileMeta(..)");
        assert!(FileMeta::open(&sealed, &SecretKey::generate()).is_err());
    }
}
