//! All integration tests, compiled into ONE test binary (every file directly under
//! `tests/` is a separate link; do not add more there).
//!
//! Tests speak HTTP to a real server on a loopback port exactly as a browser would:
//! cookies, forms with their CSRF fields, multipart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test with its message"
)]

mod support;

mod accounts;
mod browser;
mod chat;
mod connections;
mod crypto;
mod decoy;
mod deleting;
mod e2e;
mod erasure;
mod files;
mod fixture;
mod groups;
mod home;
mod lockout;
mod login_secret;
mod logs;
mod onion;
mod onion_auth;
mod operator;
mod ops;
mod roles;
mod tornet;
mod web;
