//! Building responses, and the security headers every response carries.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use maud::Markup;

/// Body type of every response (whole or streamed).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An HTML page.
pub fn html(status: StatusCode, markup: Markup) -> Response<Body> {
    let mut r = Response::new(full(markup.into_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// An HTML answer for a page made with `layout::page_with_scripts`: it carries
/// [`CSP_WITH_SCRIPTS`] in place of the strict policy.
pub fn html_with_scripts(status: StatusCode, markup: Markup) -> Response<Body> {
    let mut r = html(status, markup);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP_WITH_SCRIPTS),
    );
    r
}

/// `303 See Other` to a path on this site.
pub fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The Content-Security-Policy of every page.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// The Content-Security-Policy of a page that runs our end-to-end scripts: the strict one
/// plus scripts and connections (fetch, the WebSocket) to our own origin, nothing more.
pub const CSP_WITH_SCRIPTS: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                                    form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
                                    script-src 'self'; connect-src 'self'";

/// The security headers set on every response, errors included.
pub const SECURITY_HEADERS: [(&str, &str); 7] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// Add the security headers, leaving any a handler set deliberately (for example the
/// long cache lifetime of content-hashed assets).
pub fn apply_security_headers(r: &mut Response<Body>) {
    let headers = r.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        let name = HeaderName::from_static(name);
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    headers.remove(header::SERVER);
    headers.remove(header::DATE);
}
