//! Test fixtures: an in-process server on a free loopback port with a movable clock, and
//! a cookie-keeping HTTP client that reads pages the way a browser does.

pub mod chat;
pub mod client;
pub mod process;
pub mod record;
pub mod server;
pub mod socks;
pub mod torbrowser;
pub mod webdriver;

pub use client::{Client, Resp};
pub use server::TestServer;

/// Passwords long enough for the default policy.
pub const PW: &str = "correct horse battery";
pub const DPW: &str = "destroy everything now";
