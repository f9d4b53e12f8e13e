//! Reading requests: bodies with limits and timeouts, strict form decoding, cookies.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HeaderMap};

use super::error::AppError;

/// A decoded `application/x-www-form-urlencoded` body (or query string). Strict: a bad
/// percent escape or a byte sequence that is not UTF-8 is an error, never replaced.
#[derive(Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for Form {
    // Forms carry passwords: never print their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Drop for Form {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for (_, v) in &mut self.pairs {
            v.zeroize();
        }
    }
}

impl Form {
    /// Decode `a=1&b=2`. Returns `None` for malformed encoding or invalid UTF-8.
    pub fn parse(input: &[u8]) -> Option<Self> {
        let mut pairs = Vec::new();
        if input.is_empty() {
            return Some(Self { pairs });
        }
        for part in input.split(|&b| b == b'&') {
            if part.is_empty() {
                continue;
            }
            let (k, v) = match part.iter().position(|&b| b == b'=') {
                Some(i) => (part.get(..i)?, part.get(i + 1..)?),
                None => (part, &b""[..]),
            };
            pairs.push((decode_component(k)?, decode_component(v)?));
        }
        Some(Self { pairs })
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, or an empty string.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }
}

/// Percent-decode one form component (`+` is a space). `None` on a bad escape or on
/// bytes that are not UTF-8.
fn decode_component(input: &[u8]) -> Option<String> {
    percent_decode(input, true)
}

/// Strictly percent-decode one path segment (such as the name in `/u/<name>`): `+` stays
/// `+`. `None` on a bad escape or on bytes that are not UTF-8.
pub fn decode_path_segment(segment: &str) -> Option<String> {
    percent_decode(segment.as_bytes(), false)
}

/// Percent-decode, with `+` as a space when `plus_is_space` (forms) or as itself (paths).
fn percent_decode(input: &[u8], plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let hi = hex_val(*input.get(i + 1)?)?;
                let lo = hex_val(*input.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The declared Content-Length, if any and well-formed.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The media type of the body without parameters, lowercased.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next()?.trim().to_ascii_lowercase())
}

/// Read a whole (small) body: refuse it early when its declared length is over `limit`,
/// cut it off when it grows past `limit`, and give up when the client is slower than
/// `timeout` in total.
pub async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, AppError> {
    if content_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(AppError::PayloadTooLarge);
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(AppError::RequestTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(AppError::PayloadTooLarge),
        Ok(Err(_)) => Err(AppError::BadRequest(
            "The request body could not be read.".into(),
        )),
    }
}

/// Read and decode a form body. Only `application/x-www-form-urlencoded` is accepted.
pub async fn read_form(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Form, AppError> {
    if media_type(headers).as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(AppError::UnsupportedMediaType);
    }
    let bytes = read_body(headers, body, limit, timeout).await?;
    Form::parse(&bytes).ok_or_else(|| {
        AppError::BadRequest("The form was not correctly encoded (bad escape or not UTF-8).".into())
    })
}

/// The value of cookie `name`, if the request carries exactly that cookie.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_is_strict() {
        let f = Form::parse(b"a=1&b=x+y%21&c&d=%E2%82%AC").unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), Some("x y!"));
        assert_eq!(f.get("c"), Some(""));
        assert_eq!(f.get("d"), Some("€"));
        assert!(Form::parse(b"a=%ZZ").is_none());
        assert!(Form::parse(b"a=%4").is_none());
        assert!(Form::parse(b"a=%FF%FE").is_none(), "invalid UTF-8");
        assert!(Form::parse(b"a=\xff").is_none(), "raw invalid UTF-8");
    }

    #[test]
    fn path_segments_decode_strictly_and_keep_plus() {
        assert_eq!(decode_path_segment("a+b%20c").as_deref(), Some("a+b c"));
        assert_eq!(decode_path_segment("%C3%A9").as_deref(), Some("é"));
        assert_eq!(decode_path_segment("plain").as_deref(), Some("plain"));
        for bad in ["%", "%4", "%ZZ", "%FF", "%C3"] {
            assert_eq!(decode_path_segment(bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_hides_values() {
        let f = Form::parse(b"password=hunter2").unwrap();
        assert!(!format!("{f:?}").contains("hunter2"));
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; gc_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, "gc_session"), Some("abc"));
        assert_eq!(cookie(&h, "session"), None);
    }
}
