//! The one source of wall-clock time.
//!
//! Every handler, domain rule and background task reads time from the [`Clock`] in
//! `AppState`, never from the system directly, so that tests can move time forward
//! (inactivity deletion, expiry, self-destruct timers) without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, UTC.
pub type UnixTime = i64;

/// A source of the current time.
#[derive(Clone)]
pub struct Clock {
    /// Seconds added to the system time. Always zero in production; tests move it.
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The real clock.
    pub fn system() -> Self {
        Self {
            offset: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Current time in whole seconds since the epoch.
    pub fn now(&self) -> UnixTime {
        system_seconds().saturating_add(self.offset.load(Ordering::Relaxed))
    }

    /// Move this clock (and every clone of it) forward by `seconds`.
    ///
    /// Only tests call this; the production binary never exposes it.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("offset", &self.offset.load(Ordering::Relaxed))
            .finish()
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "this is the one place that reads the system clock"
)]
fn system_seconds() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_every_clone() {
        let a = Clock::system();
        let b = a.clone();
        let before = b.now();
        a.advance(86_400);
        assert!(b.now() >= before + 86_400);
    }
}
