//! Rate limits (governor). Keyed limiters hold one small entry per key; the housekeeping
//! task prunes entries that have recovered their full quota, so the maps do not grow
//! without bound.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::store::Id;

/// Every rate limiter of the server.
pub struct Limits {
    /// Checks of the current password by a logged-in member (settings: password changes,
    /// account deletion), keyed by member id. Logins themselves go through the login gate
    /// (`accounts::gate`), which never turns the right password away for good.
    password_checks: DefaultKeyedRateLimiter<Id>,
    /// Registrations, server-wide.
    register: DefaultDirectRateLimiter,
    /// File uploads, keyed by member id.
    upload: DefaultKeyedRateLimiter<Id>,
    /// Connection requests, keyed by the requesting member's id.
    connect: DefaultKeyedRateLimiter<Id>,
    /// Member searches, keyed by the searching member's id.
    search: DefaultKeyedRateLimiter<Id>,
    /// Chat messages, keyed by the sending member's id.
    messages: DefaultKeyedRateLimiter<Id>,
    /// Group invitations, keyed by the inviting member's id.
    group_invites: DefaultKeyedRateLimiter<Id>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("password_check_keys", &self.password_checks.len())
            .finish()
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Limits {
    /// The limiters of `cfg`. Group invitations replenish at their own rate and allow a
    /// burst of `max_group_members` (or the rate, if larger): one member can invite a
    /// whole group's worth of connections in a row.
    pub fn new(cfg: &RateLimitConfig, max_group_members: usize) -> Self {
        let burst = u32::try_from(max_group_members)
            .unwrap_or(u32::MAX)
            .max(cfg.group_invites_per_minute);
        let invites = per_minute(cfg.group_invites_per_minute)
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            password_checks: RateLimiter::keyed(per_minute(cfg.login_per_username_per_minute)),
            register: RateLimiter::direct(per_minute(cfg.register_per_minute)),
            upload: RateLimiter::keyed(per_minute(cfg.uploads_per_member_per_minute)),
            connect: RateLimiter::keyed(per_minute(cfg.connection_requests_per_minute)),
            search: RateLimiter::keyed(per_minute(cfg.searches_per_minute)),
            messages: RateLimiter::keyed(per_minute(cfg.messages_per_minute)),
            group_invites: RateLimiter::keyed(invites),
        }
    }

    /// Whether this member may have their current password checked once more now.
    pub fn password_check_allowed(&self, member: &Id) -> bool {
        self.password_checks.check_key(member).is_ok()
    }

    /// Whether one more registration is allowed now.
    pub fn register_allowed(&self) -> bool {
        self.register.check().is_ok()
    }

    /// Whether this member may start one more upload now.
    pub fn upload_allowed(&self, member: &Id) -> bool {
        self.upload.check_key(member).is_ok()
    }

    /// Whether this member may send one more connection request now.
    pub fn connect_allowed(&self, member: &Id) -> bool {
        self.connect.check_key(member).is_ok()
    }

    /// Whether this member may search once more now.
    pub fn search_allowed(&self, member: &Id) -> bool {
        self.search.check_key(member).is_ok()
    }

    /// Whether this member may send one more chat message now.
    pub fn message_allowed(&self, member: &Id) -> bool {
        self.messages.check_key(member).is_ok()
    }

    /// Whether this member may send one more group invitation now.
    pub fn group_invite_allowed(&self, member: &Id) -> bool {
        self.group_invites.check_key(member).is_ok()
    }

    /// Forget keys whose quota has fully recovered.
    pub fn prune(&self) {
        for keyed in [
            &self.password_checks,
            &self.upload,
            &self.connect,
            &self.search,
            &self.messages,
            &self.group_invites,
        ] {
            keyed.retain_recent();
            keyed.shrink_to_fit();
        }
    }
}
