//! ghostcache: a private meeting place reached only through Tor Browser.
//!
//! One binary: an in-process onion service, server-rendered pages, and one redb file.
//! `main.rs` only parses the command line; everything else lives here so that the
//! integration tests drive the same code.

pub mod accounts;
pub mod app;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod control;
pub mod crypto;
pub mod e2e;
pub mod files;
pub mod groups;
pub mod hardening;
pub mod home;
pub mod invites;
pub mod limits;
pub mod notify;
pub mod onion;
pub mod profile;
pub mod status;
pub mod store;
pub mod sweeper;
pub mod web;
