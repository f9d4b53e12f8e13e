//! Resumable raw downloads: one byte range of the blob (`Range`, RFC 9110 §14), guarded by
//! a strong `ETag` through `If-Range`, and the preconditions `If-Match` and
//! `If-None-Match` (§13) that a server sending an `ETag` must evaluate.
//!
//! What is answered how:
//! - no `Range`, a `Range` that is not valid syntax, another unit than `bytes`, several
//!   `Range` fields, or several ranges in one: the whole blob (`200`), as §14.2 allows
//!   ("a server MAY ignore the Range header field"). Several ranges would need a
//!   `multipart/byteranges` answer that no download manager asks for; the whole blob is
//!   a correct answer to them.
//! - one valid range that overlaps the blob: `206` with `Content-Range`, clipped to the
//!   end (`bytes=100-99999999999999999999` is the rest from byte 100).
//! - one valid range that does not (starts at or past the end, or `bytes=-0`): `416` with
//!   `Content-Range: bytes */<length>`.
//! - `If-Range` that is not exactly the current strong `ETag` (a date, a weak or an old
//!   tag): the whole blob, so a resumed download never splices two different blobs.
//! - `HEAD` ignores `Range` (§14.2 defines ranges for `GET` only) and answers as a `GET`
//!   without it would.

use hyper::HeaderMap;
use hyper::header::{IF_MATCH, IF_NONE_MATCH, IF_RANGE, RANGE};

/// What a request asks for, once `Range` and `If-Range` are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// The whole representation.
    Whole,
    /// Bytes `start..=end` (both within the representation).
    Part { start: u64, end: u64 },
    /// A valid range that lies wholly outside the representation.
    Unsatisfiable,
}

/// What `If-Match` and `If-None-Match` decide, before `Range` is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Go on.
    Pass,
    /// `If-None-Match` matched: `304 Not Modified`.
    NotModified,
    /// `If-Match` did not: `412 Precondition Failed`.
    Failed,
}

/// Evaluate `If-Match` and `If-None-Match` against `etag` (a strong tag, with its quotes)
/// for a `GET` or `HEAD` (RFC 9110 §13.2.2, steps 1 and 3).
pub fn precondition(headers: &HeaderMap, etag: &str) -> Precondition {
    let lists = |name| -> Option<Vec<&str>> {
        let mut all = Vec::new();
        for value in headers.get_all(name) {
            all.push(value.to_str().ok()?);
        }
        (!all.is_empty()).then_some(all)
    };
    if let Some(values) = lists(IF_MATCH) {
        let matched = values
            .iter()
            .any(|v| list_matches(v, etag, Comparison::Strong));
        if !matched {
            return Precondition::Failed;
        }
    }
    if let Some(values) = lists(IF_NONE_MATCH)
        && values
            .iter()
            .any(|v| list_matches(v, etag, Comparison::Weak))
    {
        return Precondition::NotModified;
    }
    Precondition::Pass
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// Whether an `If-Match`/`If-None-Match` value (`*` or a list of entity tags) matches
/// `etag`. A malformed list matches nothing.
fn list_matches(value: &str, etag: &str, how: Comparison) -> bool {
    if value.trim() == "*" {
        return true;
    }
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let (weak, after) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let Some(inner) = after.strip_prefix('"') else {
            return false;
        };
        let Some(close) = inner.find('"') else {
            return false;
        };
        let (tag, tail) = inner.split_at(close);
        let quoted = format!("\"{tag}\"");
        if quoted == etag && (how == Comparison::Weak || !weak) {
            return true;
        }
        rest = tail.get(1..).unwrap_or("");
    }
}

/// Read `Range` (with `If-Range`) for a `GET` of a representation of `len` bytes whose
/// strong entity tag is `etag`.
pub fn ask(headers: &HeaderMap, etag: &str, len: u64) -> Ask {
    let mut ranges = headers.get_all(RANGE).iter();
    let (Some(range), None) = (ranges.next(), ranges.next()) else {
        return Ask::Whole;
    };
    let mut if_range = headers.get_all(IF_RANGE).iter();
    match (if_range.next(), if_range.next()) {
        (None, _) => {}
        // Only the exact strong tag: an HTTP-date can never match (no Last-Modified is
        // sent), a weak tag never may (§13.1.5).
        (Some(v), None) if v.as_bytes() == etag.as_bytes() => {}
        _ => return Ask::Whole,
    }
    let Ok(range) = range.to_str() else {
        return Ask::Whole;
    };
    match parse(range) {
        Some(Spec::From(first, last)) => {
            if first >= len {
                Ask::Unsatisfiable
            } else {
                Ask::Part {
                    start: first,
                    end: last.unwrap_or(u64::MAX).min(len - 1),
                }
            }
        }
        Some(Spec::Suffix(n)) => {
            if n == 0 || len == 0 {
                Ask::Unsatisfiable
            } else {
                Ask::Part {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        None => Ask::Whole,
    }
}

/// One range-spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last` (last ≥ first).
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Parse a `Range` value holding exactly one valid byte range; `None` for anything else
/// (invalid syntax, another unit, several ranges).
fn parse(value: &str) -> Option<Spec> {
    let (unit, set) = value.split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    // A list (`1#range-spec`): empty elements and whitespace around commas are allowed.
    let mut specs = set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return None;
    };
    let (first, last) = spec.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(number(last)?));
    }
    let first = number(first)?;
    if last.is_empty() {
        return Some(Spec::From(first, None));
    }
    let last = number(last)?;
    // last < first makes the range-spec invalid (§14.1.1), and so the whole field.
    (last >= first).then_some(Spec::From(first, Some(last)))
}

/// One or more ASCII digits; numbers too large for 64 bits count as the largest one (any
/// such position is past the end of every file).
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "\"abc\"";

    fn with(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn range(v: &str) -> Ask {
        ask(&with(&[("range", v)]), TAG, 1000)
    }

    #[test]
    fn single_ranges_are_served_and_clipped() {
        assert_eq!(range("bytes=0-99"), Ask::Part { start: 0, end: 99 });
        assert_eq!(
            range("bytes=990-"),
            Ask::Part {
                start: 990,
                end: 999
            }
        );
        assert_eq!(
            range("bytes=-10"),
            Ask::Part {
                start: 990,
                end: 999
            }
        );
        assert_eq!(range("bytes=-5000"), Ask::Part { start: 0, end: 999 });
        assert_eq!(range("bytes=5-5"), Ask::Part { start: 5, end: 5 });
        assert_eq!(range("BYTES=5-9"), Ask::Part { start: 5, end: 9 });
        assert_eq!(range("bytes= 5-9 ,"), Ask::Part { start: 5, end: 9 });
        assert_eq!(
            range("bytes=100-99999999999999999999999999"),
            Ask::Part {
                start: 100,
                end: 999
            }
        );
    }

    #[test]
    fn ranges_outside_the_file_are_unsatisfiable() {
        for v in [
            "bytes=1000-",
            "bytes=1000-2000",
            "bytes=-0",
            "bytes=99999999999999999999999999-",
        ] {
            assert_eq!(range(v), Ask::Unsatisfiable, "{v}");
        }
        assert_eq!(
            ask(&with(&[("range", "bytes=0-")]), TAG, 0),
            Ask::Unsatisfiable
        );
    }

    #[test]
    fn anything_else_gets_the_whole_file() {
        for v in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=5",
            "bytes=a-b",
            "bytes=10-5",
            "bytes=-5-10",
            "bytes=--5",
            "bytes=+5-",
            "bytes=0x10-",
            "bytes=1-2-3",
            "bytes=0-1,5-9",
            "bytes=0-1,,2-3",
            "items=0-5",
            "bytes =0-5",
            "bytes=\u{663}-",
            "bytes=５-",
        ] {
            if let Ok(value) = hyper::header::HeaderValue::from_str(v) {
                let mut h = HeaderMap::new();
                h.insert(RANGE, value);
                assert_eq!(ask(&h, TAG, 1000), Ask::Whole, "{v:?}");
            }
        }
        let two = with(&[("range", "bytes=0-1"), ("range", "bytes=2-3")]);
        assert_eq!(ask(&two, TAG, 1000), Ask::Whole);
        let latin1 = {
            let mut h = HeaderMap::new();
            h.insert(
                RANGE,
                hyper::header::HeaderValue::from_bytes(b"bytes=\xe9-").unwrap(),
            );
            h
        };
        assert_eq!(ask(&latin1, TAG, 1000), Ask::Whole);
    }

    #[test]
    fn if_range_must_be_the_current_strong_tag() {
        let r = |v: &str| ask(&with(&[("range", "bytes=10-"), ("if-range", v)]), TAG, 1000);
        assert_eq!(
            r(TAG),
            Ask::Part {
                start: 10,
                end: 999
            }
        );
        for other in [
            "\"abd\"",
            "W/\"abc\"",
            "abc",
            "Tue, 15 Nov 1994 08:12:31 GMT",
            "\"abc\", \"abc\"",
        ] {
            assert_eq!(r(other), Ask::Whole, "{other}");
        }
        let twice = with(&[("range", "bytes=10-"), ("if-range", TAG), ("if-range", TAG)]);
        assert_eq!(ask(&twice, TAG, 1000), Ask::Whole);
    }

    #[test]
    fn preconditions() {
        let p = |pairs: &[(&str, &str)]| precondition(&with(pairs), TAG);
        assert_eq!(p(&[]), Precondition::Pass);
        assert_eq!(p(&[("if-match", TAG)]), Precondition::Pass);
        assert_eq!(p(&[("if-match", "*")]), Precondition::Pass);
        assert_eq!(p(&[("if-match", "\"x\", \"abc\"")]), Precondition::Pass);
        assert_eq!(p(&[("if-match", "W/\"abc\"")]), Precondition::Failed);
        assert_eq!(p(&[("if-match", "\"x\"")]), Precondition::Failed);
        assert_eq!(p(&[("if-match", "garbage")]), Precondition::Failed);
        assert_eq!(
            p(&[("if-none-match", "W/\"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(p(&[("if-none-match", "*")]), Precondition::NotModified);
        assert_eq!(
            p(&[("if-none-match", "\"a,b\", \"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(p(&[("if-none-match", "\"x\"")]), Precondition::Pass);
        assert_eq!(p(&[("if-none-match", "\"abc")]), Precondition::Pass);
    }
}
