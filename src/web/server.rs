//! The hyper service and the front doors that feed it.
//!
//! Every door (the TCP listener here, the onion service in `onion/`) hands a byte stream
//! to [`serve_connection`], which runs HTTP/1.1 with a header-read timeout, bounded
//! headers and no `Date` header, and calls [`handle`] for each request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue, SET_COOKIE};
use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::error::AppError;
use super::layout;
use super::response::{Body, apply_security_headers, html};
use super::{Ctx, Door, router};
use crate::app::AppState;

/// Most headers hyper will parse; beyond `server.max_headers` (and up to this) we answer
/// with a rendered 431 page. Past this hyper itself answers a bare 431.
const HYPER_MAX_HEADERS: usize = 1000;
/// Largest request head hyper buffers, in bytes (hyper answers 431 beyond it).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Accept TCP connections until shutdown, at most `server.max_connections` at once.
pub async fn serve_tcp(
    listener: TcpListener,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(state.config.server.max_connections));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(TokioIo::new(stream), state, Door::Tcp, shutdown).await;
            drop(permit);
        });
    }
}

/// Serve HTTP/1.1 on one connection until it closes or the server shuts down.
pub async fn serve_connection<I>(
    io: I,
    state: Arc<AppState>,
    door: Door,
    mut shutdown: watch::Receiver<bool>,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let cfg = &state.config.server;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_read_timeout_secs))
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES)
        .auto_date_header(false)
        .keep_alive(true);
    let service_state = Arc::clone(&state);
    let service = service_fn(move |req| handle(Arc::clone(&service_state), door, req));
    // Upgrades: the end-to-end pages' WebSocket (`e2e::ws`).
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// Handle one request: checks that apply to every route, dispatch, error pages, cookies
/// and security headers. Never fails and never lets a handler panic escape.
pub async fn handle(
    state: Arc<AppState>,
    door: Door,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mut ctx = if router::is_passive(req.uri().path()) {
        Ctx::passive(state, door, req.headers())
    } else {
        Ctx::new(state, door, req.headers())
    };
    if matches!(*req.method(), Method::GET | Method::HEAD) && router::shows_nav(req.uri().path()) {
        ctx.load_nav().await;
    }
    let result = if !matches!(*req.method(), Method::GET | Method::HEAD | Method::POST) {
        Err(AppError::MethodNotAllowed {
            allow: "GET, HEAD, POST",
        })
    } else if req.headers().len() > ctx.state.config.server.max_headers {
        Err(AppError::HeadersTooLarge)
    } else if door == Door::Tcp
        && !host_allowed(req.headers(), &ctx.state.config.server.allowed_hosts)
    {
        Err(AppError::Misdirected)
    } else {
        match std::panic::AssertUnwindSafe(router::dispatch(&mut ctx, req))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(_) => Err(AppError::Internal("handler panicked".into())),
        }
    };
    let mut response = match result {
        Ok(r) => r,
        Err(e) => error_response(&mut ctx, &e),
    };
    for cookie in ctx.set_cookies.drain(..) {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, v);
        }
    }
    apply_security_headers(&mut response);
    Ok(response)
}

/// Whether the plain-HTTP door answers to the request's `Host`: IP literals, `localhost`
/// and the configured names only, so that a page on another site that rebinds its DNS
/// name to this address cannot use the listener from a visitor's browser.
pub fn host_allowed(headers: &hyper::HeaderMap, allowed: &[String]) -> bool {
    let Some(host) = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [IPv6]:port
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Render an error page; unexpected errors get a request id that is also logged.
pub fn error_response(ctx: &mut Ctx, e: &AppError) -> Response<Body> {
    let view = e.view();
    let request_id = match e {
        AppError::Internal(detail) => {
            let id = crate::crypto::b64url(&crate::crypto::random_bytes::<6>());
            tracing::error!(request_id = %id, detail = %detail, "request failed");
            Some(id)
        }
        _ => None,
    };
    let page = ctx.page();
    let mut response = html(
        view.status,
        layout::error_page(&page, &view, request_id.as_deref()),
    );
    if let AppError::MethodNotAllowed { allow } = e {
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> hyper::HeaderMap {
        let mut m = hyper::HeaderMap::new();
        m.insert(hyper::header::HOST, v.parse().unwrap());
        m
    }

    #[test]
    fn only_literal_addresses_localhost_and_configured_names() {
        let allowed = vec!["demo.lan".to_owned()];
        for ok in [
            "127.0.0.1:8080",
            "10.0.0.5",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "demo.lan:80",
        ] {
            assert!(host_allowed(&h(ok), &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "[::1",
            "localhost.evil",
        ] {
            assert!(!host_allowed(&h(bad), &allowed), "{bad}");
        }
        assert!(!host_allowed(&hyper::HeaderMap::new(), &allowed));
    }
}
