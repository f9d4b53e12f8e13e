//! Configuration: defaults → TOML file → `GHOSTCACHE_*` environment → command-line flags.
//!
//! Every layer is merged into one TOML table and deserialised once with
//! `deny_unknown_fields`, so a misspelt key in any layer is an error rather than a
//! silently ignored setting. The result is validated once at start-up.
//!
//! Environment variables map onto keys by stripping `GHOSTCACHE_`, lowercasing, and
//! splitting sections on a double underscore: `GHOSTCACHE_SERVER__LISTEN=127.0.0.1:8080`
//! sets `server.listen`, `GHOSTCACHE_DATA_DIR` sets `data_dir`. Values are read as TOML
//! values when they parse as one (numbers, booleans) and as strings otherwise.
//! `GHOSTCACHE_CONFIG` (the file) and `GHOSTCACHE_LOG` (the log filter) are not settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variables that are read by the CLI itself, not merged as settings.
pub const RESERVED_ENV: &[&str] = &["GHOSTCACHE_CONFIG", "GHOSTCACHE_LOG"];

/// Prefix of every environment variable that sets a configuration key.
pub const ENV_PREFIX: &str = "GHOSTCACHE_";

/// The whole configuration. Field docs are what `check-config` and the README describe.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory holding `ghostcache.redb`. Defaults to `$STATE_DIRECTORY` under systemd,
    /// otherwise `./ghostcache-data`.
    pub data_dir: Option<PathBuf>,
    /// Name of a systemd credential (`$CREDENTIALS_DIRECTORY/<name>`) holding the master
    /// key: at least 32 random bytes from which the key sealing the onion identity and the
    /// password pepper are derived. Without a master key, a copy of the database alone can
    /// test guessed passwords (a warning is logged at start-up).
    pub master_key_credential: Option<String>,
    /// Path of a file holding the master key (mode 0600 or stricter). At most one of
    /// `master_key_credential` and `master_key_file` may be set.
    pub master_key_file: Option<PathBuf>,
    pub server: ServerConfig,
    pub accounts: AccountsConfig,
    pub crypto: CryptoConfig,
    pub rate_limits: RateLimitConfig,
    pub tor: TorConfig,
    pub files: FilesConfig,
    pub connections: ConnectionsConfig,
    pub chat: ChatConfig,
}

/// The HTTP layer and its front doors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Optional plain-HTTP listener. Off by default. Must be a loopback address unless
    /// `no_tor` is set (the LAN demo) or `allow_public_listen` is true.
    pub listen: Option<SocketAddr>,
    /// Serve without Tor at all (air-gapped LAN demo). Every page shows a banner.
    pub no_tor: bool,
    /// Allow `listen` on a non-loopback address while Tor is on.
    pub allow_public_listen: bool,
    /// A client must finish sending its request headers within this many seconds.
    pub header_read_timeout_secs: u64,
    /// A client must finish sending a form body within this many seconds. An upload must
    /// bring at least `files.upload_min_bytes_per_sec` (and one byte) in every window of
    /// this many seconds.
    pub body_timeout_secs: u64,
    /// Connections served at once per front door; more wait in the kernel backlog.
    pub max_connections: usize,
    /// Largest accepted `application/x-www-form-urlencoded` or JSON body, in bytes.
    pub max_form_bytes: usize,
    /// Most request headers accepted; more get 431.
    pub max_headers: usize,
    /// Name cookies `__Host-…` on the onion door. Tor Browser treats `.onion` as a secure
    /// context and keeps such cookies; other browsers (Chromium) refuse prefixed cookies on
    /// plain-HTTP `.onion` pages. Turn off only to reach the onion with such a browser.
    pub onion_cookie_prefix: bool,
    /// Host names the plain-HTTP listener answers to besides IP literals and `localhost`
    /// (anything else gets 421, so a DNS-rebinding page cannot talk to it).
    pub allowed_hosts: Vec<String>,
}

/// Accounts, sessions and automatic deletion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Accounts whose owner has not logged in for this many days are deleted.
    pub inactivity_days: u32,
    /// How often the background sweeper runs, in seconds (it also runs at start-up).
    pub sweep_interval_secs: u64,
    /// A session unused for this many seconds ends.
    pub session_idle_timeout_secs: u64,
    /// A session ends this many seconds after login whatever its use.
    pub session_lifetime_secs: u64,
    /// Minimum length, in characters, of both the password and the destruction password.
    pub min_password_chars: usize,
    /// Who may register: `open` (anyone), `invite` (with an invitation code) or `closed`.
    pub registration: crate::invites::RegistrationMode,
    /// In `invite` mode, members may make invitation codes on their settings page.
    pub members_may_invite: bool,
    /// Codes one member may hold at a time (a code counts until it expires, used or not).
    pub invites_per_member: u32,
    /// Days a member's code stays valid.
    pub invite_days: u32,
}

/// Cost parameters of the cryptography.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoConfig {
    /// argon2id memory cost in KiB of new passwords (at least 19456, OWASP's minimum;
    /// 65536 by default). Each account keeps the cost it was registered with.
    pub argon2_memory_kib: u32,
    /// argon2id iterations (at least 2).
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// Password hashes computed at once; further logins wait their turn. Each uses
    /// `argon2_memory_kib` of RAM while it runs.
    pub max_concurrent_hashes: usize,
    /// RSA modulus size for delivery and per-connection keys: 2048, 3072 or 4096.
    pub rsa_bits: usize,
    /// RSA key pairs kept generated in memory so that registering and accepting a
    /// connection (two pairs) are fast.
    pub rsa_pool_size: usize,
}

/// Rate limits (per minute, with the same number as burst).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Password checks per username per minute. Further login attempts for that name are
    /// not refused but wait their turn, one at a time (see the README, "Logging in while
    /// someone guesses"). Also the limit per member for checks of the current password in
    /// the settings.
    pub login_per_username_per_minute: u32,
    /// Registrations per minute, for the whole server.
    pub register_per_minute: u32,
    /// File uploads per member per minute.
    pub uploads_per_member_per_minute: u32,
    /// Connection requests a member may send per minute.
    pub connection_requests_per_minute: u32,
    /// Member searches per member per minute (searching is how names are probed).
    pub searches_per_minute: u32,
    /// Chat messages a member may send per minute.
    pub messages_per_minute: u32,
    /// Group invitations a member may send per minute, with a burst of at least
    /// `chat.max_group_members`, so that filling a new group in one go works.
    pub group_invites_per_minute: u32,
}

/// Encrypted file hosting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Largest file accepted, in bytes (of the file itself, not the form around it).
    pub max_upload_bytes: u64,
    /// Most bytes one member's files may take together (uploads in progress included).
    pub quota_bytes_per_member: u64,
    /// An upload must bring at least this many bytes per second, on average over every
    /// `server.body_timeout_secs`, or it is dropped (408, nothing kept).
    pub upload_min_bytes_per_sec: u64,
    /// An upload must be complete within this many seconds of its first byte.
    pub upload_deadline_secs: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50_000_000,
            quota_bytes_per_member: 500_000_000,
            upload_min_bytes_per_sec: 1024,
            upload_deadline_secs: 3600,
        }
    }
}

/// The onion service (arti, in-process).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TorConfig {
    /// The former name of the top-level `master_key_credential`; still accepted.
    pub master_key_credential: Option<String>,
    /// The former name of the top-level `master_key_file`; still accepted.
    pub master_key_file: Option<PathBuf>,
    /// Introduction points of the onion service (1–20).
    pub num_intro_points: u8,
    /// Streams one rendezvous circuit may have open at once; more close the circuit.
    pub max_streams_per_circuit: u32,
    /// INTRODUCE2 cells per second the introduction points let through (0: no limit).
    pub intro_rate_per_sec: u32,
    /// Burst of INTRODUCE2 cells the introduction points let through.
    pub intro_burst: u32,
    /// Offer the onion-service proof-of-work defence (experimental in arti).
    pub proof_of_work: bool,
    /// Write the full onion address to the log. Off by default: the log shows it
    /// redacted, and `ghostcache onion-address` prints it.
    pub log_onion_address: bool,
    /// Restricted discovery (onion client authorization): only Tor clients holding a key
    /// added with `ghostcache client-auth add` can find the service. Turning it on or off
    /// needs a restart; adding and removing keys does not.
    pub restricted_discovery: bool,
    /// Join a private Tor network instead of the public one (tests, air-gapped demos).
    pub network: Option<TorNetworkConfig>,
}

/// A private Tor network: its authorities and fallback directory caches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TorNetworkConfig {
    /// v3 identities (hex) of the directory authorities.
    pub authorities: Vec<String>,
    /// Fallback directory caches arti bootstraps from.
    pub fallbacks: Vec<FallbackConfig>,
    /// Let arti connect to relays on local and private addresses.
    #[serde(default)]
    pub allow_local_addrs: bool,
    /// Relays in the same IPv4 /N are one family (33 disables it, for loopback networks).
    #[serde(default = "default_v4_prefix")]
    pub ipv4_subnet_family_prefix: u8,
    /// Relays in the same IPv6 /N are one family (129 disables it).
    #[serde(default = "default_v6_prefix")]
    pub ipv6_subnet_family_prefix: u8,
    /// Consensus parameter overrides, e.g. `hsdir_interval = 12` (minutes).
    #[serde(default)]
    pub net_params: std::collections::BTreeMap<String, i32>,
}

fn default_v4_prefix() -> u8 {
    16
}
fn default_v6_prefix() -> u8 {
    32
}

/// One fallback directory cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// RSA identity fingerprint, 40 hex digits.
    pub rsa_identity: String,
    /// ed25519 identity, base64 without padding.
    pub ed25519_identity: String,
    /// ORPort address.
    pub orport: SocketAddr,
}

impl Default for TorConfig {
    fn default() -> Self {
        Self {
            master_key_credential: None,
            master_key_file: None,
            num_intro_points: 3,
            max_streams_per_circuit: 64,
            intro_rate_per_sec: 25,
            intro_burst: 200,
            proof_of_work: false,
            log_onion_address: false,
            restricted_discovery: false,
            network: None,
        }
    }
}

/// Finding members and connecting to them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Search by prefix (at least 3 characters) instead of exact name. Off by default: an
    /// exact search does not let members list everybody.
    pub search_prefix: bool,
}

/// One-to-one chat, its live stream and online status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Longest message, in bytes of UTF-8 text.
    pub max_message_bytes: usize,
    /// A live stream ends after this many seconds and reloads itself.
    pub stream_lifetime_secs: u64,
    /// Seconds between keep-alive comments on a live stream.
    pub stream_keepalive_secs: u64,
    /// Live streams one member may hold open at once (tabs, devices).
    pub max_streams_per_member: usize,
    /// Events buffered per member for their live streams; a stream that falls further
    /// behind reloads itself and catches up from the store.
    pub channel_capacity: usize,
    /// A member without an open live stream counts as online for this many seconds after
    /// their last page load.
    pub presence_window_secs: u64,
    /// Most members of a group, pending invitations included.
    pub max_group_members: usize,
    /// Longest wait, in seconds, between two checks for self-destructing messages that
    /// are due (the check also wakes at the earliest deadline). Deletion happens at most
    /// this long after a deadline.
    pub expiry_check_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: None,
            no_tor: false,
            allow_public_listen: false,
            header_read_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 1024,
            max_form_bytes: 64 * 1024,
            max_headers: 100,
            onion_cookie_prefix: true,
            allowed_hosts: Vec::new(),
        }
    }
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            inactivity_days: 30,
            sweep_interval_secs: 3600,
            session_idle_timeout_secs: 15 * 60,
            session_lifetime_secs: 12 * 3600,
            min_password_chars: 10,
            registration: crate::invites::RegistrationMode::Open,
            members_may_invite: false,
            invites_per_member: 3,
            invite_days: 7,
        }
    }
}

impl Default for CryptoConfig {
    fn default() -> Self {
        Self {
            // The most this 2-core machine bore, quiet, with a whole login four at once
            // staying within 250 ms at p99 (README, "Keys and what is stored").
            // More memory rather than more passes, as RFC 9106 advises.
            argon2_memory_kib: 64 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 4,
            rsa_bits: 3072,
            rsa_pool_size: 4,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            login_per_username_per_minute: 10,
            register_per_minute: 20,
            uploads_per_member_per_minute: 10,
            connection_requests_per_minute: 5,
            searches_per_minute: 30,
            messages_per_minute: 60,
            group_invites_per_minute: 30,
        }
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 4096,
            stream_lifetime_secs: 300,
            stream_keepalive_secs: 5,
            max_streams_per_member: 8,
            channel_capacity: 64,
            presence_window_secs: 120,
            max_group_members: 50,
            expiry_check_secs: 1,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name} is not a known setting ({message})")]
    Env { name: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Overrides given as command-line flags (the last layer).
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub no_tor: bool,
}

impl Config {
    /// Merge every layer and validate. `env` is the process environment (a parameter so
    /// tests need not mutate the real one).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &FlagOverrides,
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            table = text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if RESERVED_ENV.contains(&name.as_str()) || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest
                .to_ascii_lowercase()
                .split("__")
                .map(str::to_owned)
                .collect();
            insert_path(&mut table, &path, parse_env_value(&value)).map_err(|message| {
                ConfigError::Env {
                    name: name.clone(),
                    message,
                }
            })?;
        }
        let mut config: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        if let Some(dir) = &flags.data_dir {
            config.data_dir = Some(dir.clone());
        }
        if let Some(addr) = flags.listen {
            config.server.listen = Some(addr);
        }
        if flags.no_tor {
            config.server.no_tor = true;
        }
        config.validate()?;
        Ok(config)
    }

    /// The data directory: configured, else `$STATE_DIRECTORY` (systemd), else
    /// `./ghostcache-data`.
    pub fn resolved_data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        if let Ok(state) = std::env::var("STATE_DIRECTORY") {
            // systemd passes a colon-separated list when several are configured.
            if let Some(first) = state.split(':').find(|s| !s.is_empty()) {
                return PathBuf::from(first);
            }
        }
        PathBuf::from("./ghostcache-data")
    }

    /// Check every rule that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        let s = &self.server;
        if let Some(addr) = s.listen
            && !addr.ip().is_loopback()
            && !s.no_tor
            && !s.allow_public_listen
        {
            return bad(
                "server.listen is not a loopback address; the plain-HTTP listener is loopback-only \
                 unless --no-tor (LAN demo) or server.allow_public_listen = true",
            );
        }
        if s.no_tor && s.listen.is_none() {
            return bad(
                "--no-tor needs --listen ADDR: without Tor the listener is the only way in",
            );
        }
        if s.header_read_timeout_secs == 0 || s.body_timeout_secs == 0 {
            return bad("server timeouts must be at least 1 second");
        }
        if s.max_connections == 0 {
            return bad("server.max_connections must be at least 1");
        }
        if !(1024..=16 * 1024 * 1024).contains(&s.max_form_bytes) {
            return bad("server.max_form_bytes must be between 1024 and 16777216");
        }
        if !(16..=1000).contains(&s.max_headers) {
            return bad("server.max_headers must be between 16 and 1000");
        }
        let a = &self.accounts;
        if a.inactivity_days == 0 {
            return bad("accounts.inactivity_days must be at least 1");
        }
        if a.sweep_interval_secs == 0 {
            return bad("accounts.sweep_interval_secs must be at least 1");
        }
        if a.session_idle_timeout_secs == 0 || a.session_lifetime_secs == 0 {
            return bad("session timeouts must be at least 1 second");
        }
        if a.session_idle_timeout_secs > a.session_lifetime_secs {
            return bad("accounts.session_idle_timeout_secs cannot exceed session_lifetime_secs");
        }
        if !(8..=256).contains(&a.min_password_chars) {
            return bad("accounts.min_password_chars must be between 8 and 256");
        }
        if !(1..=100).contains(&a.invites_per_member) {
            return bad("accounts.invites_per_member must be between 1 and 100");
        }
        if !(1..=crate::invites::MAX_DAYS).contains(&a.invite_days) {
            return bad("accounts.invite_days must be between 1 and 365");
        }
        let c = &self.crypto;
        if c.argon2_memory_kib < 19 * 1024 || c.argon2_iterations < 2 {
            return bad(
                "crypto.argon2_memory_kib must be at least 19456 and crypto.argon2_iterations at \
                 least 2 (OWASP's minimum for argon2id)",
            );
        }
        if c.argon2_memory_kib > 4 * 1024 * 1024 || c.argon2_iterations > 64 {
            return bad(
                "crypto.argon2 cost is unreasonably high (memory ≤ 4 GiB, iterations ≤ 64)",
            );
        }
        if !(1..=16).contains(&c.argon2_parallelism) {
            return bad("crypto.argon2_parallelism must be between 1 and 16");
        }
        if !(1..=256).contains(&c.max_concurrent_hashes) {
            return bad("crypto.max_concurrent_hashes must be between 1 and 256");
        }
        if ![2048, 3072, 4096].contains(&c.rsa_bits) {
            return bad("crypto.rsa_bits must be 2048, 3072 or 4096");
        }
        if c.rsa_pool_size > 256 {
            return bad("crypto.rsa_pool_size must be at most 256");
        }
        let r = &self.rate_limits;
        if r.login_per_username_per_minute == 0
            || r.register_per_minute == 0
            || r.uploads_per_member_per_minute == 0
            || r.connection_requests_per_minute == 0
            || r.searches_per_minute == 0
            || r.messages_per_minute == 0
            || r.group_invites_per_minute == 0
        {
            return bad("rate limits must be at least 1 per minute");
        }
        let t = &self.tor;
        let master_keys = [
            self.master_key_credential.is_some(),
            self.master_key_file.is_some(),
            t.master_key_credential.is_some(),
            t.master_key_file.is_some(),
        ];
        if master_keys.iter().filter(|set| **set).count() > 1 {
            return bad(
                "set at most one of master_key_credential and master_key_file (or of their \
                 former names tor.master_key_credential and tor.master_key_file)",
            );
        }
        if let Some(name) = self
            .master_key_credential
            .as_ref()
            .or(t.master_key_credential.as_ref())
            && (name.is_empty() || name.contains('/') || name.starts_with('.'))
        {
            return bad("master_key_credential is a credential name, not a path");
        }
        if !(1..=20).contains(&t.num_intro_points) {
            return bad("tor.num_intro_points must be between 1 and 20");
        }
        if t.max_streams_per_circuit == 0 {
            return bad("tor.max_streams_per_circuit must be at least 1");
        }
        if t.intro_rate_per_sec > 0 && t.intro_burst < t.intro_rate_per_sec {
            return bad("tor.intro_burst must be at least tor.intro_rate_per_sec");
        }
        if let Some(n) = &t.network {
            if n.authorities.is_empty() || n.fallbacks.is_empty() {
                return bad("tor.network needs at least one authority and one fallback");
            }
            if n.authorities
                .iter()
                .any(|a| a.len() != 40 || !a.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return bad("tor.network.authorities are 40-digit hex v3 identities");
            }
            if n.ipv4_subnet_family_prefix > 33 || n.ipv6_subnet_family_prefix > 129 {
                return bad(
                    "tor.network subnet family prefixes are at most 33 (IPv4) and 129 (IPv6)",
                );
            }
        }
        let f = &self.files;
        if !(1..=1 << 40).contains(&f.max_upload_bytes) {
            return bad("files.max_upload_bytes must be between 1 and 1099511627776 (1 TiB)");
        }
        if f.quota_bytes_per_member < f.max_upload_bytes {
            return bad(
                "files.quota_bytes_per_member cannot be smaller than files.max_upload_bytes",
            );
        }
        if f.upload_min_bytes_per_sec > 1 << 30 {
            return bad("files.upload_min_bytes_per_sec must be at most 1073741824 (1 GiB/s)");
        }
        if !(1..=7 * 86_400).contains(&f.upload_deadline_secs) {
            return bad("files.upload_deadline_secs must be between 1 and 604800 (7 days)");
        }
        let ch = &self.chat;
        if !(1..=65_536).contains(&ch.max_message_bytes) {
            return bad("chat.max_message_bytes must be between 1 and 65536");
        }
        if ch.max_message_bytes > s.max_form_bytes / 3 {
            return bad(
                "chat.max_message_bytes must be at most a third of server.max_form_bytes (a \
                 percent-encoded message is up to three times its size)",
            );
        }
        if !(10..=3600).contains(&ch.stream_lifetime_secs) {
            return bad("chat.stream_lifetime_secs must be between 10 and 3600");
        }
        if ch.stream_keepalive_secs == 0 || ch.stream_keepalive_secs >= ch.stream_lifetime_secs {
            return bad(
                "chat.stream_keepalive_secs must be at least 1 and less than stream_lifetime_secs",
            );
        }
        if !(1..=64).contains(&ch.max_streams_per_member) {
            return bad("chat.max_streams_per_member must be between 1 and 64");
        }
        if !(4..=4096).contains(&ch.channel_capacity) {
            return bad("chat.channel_capacity must be between 4 and 4096");
        }
        if !(1..=3600).contains(&ch.presence_window_secs) {
            return bad("chat.presence_window_secs must be between 1 and 3600");
        }
        if !(2..=500).contains(&ch.max_group_members) {
            return bad("chat.max_group_members must be between 2 and 500");
        }
        if !(1..=60).contains(&ch.expiry_check_secs) {
            return bad("chat.expiry_check_secs must be between 1 and 60");
        }
        Ok(())
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    // A bare TOML value (`42`, `true`, `[1, 2]`) is taken as such; anything else is a string.
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".to_owned()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => insert_path(inner, rest, value),
                _ => Err(format!("{first} is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[accounts]\ninactivity_days = 10\nsession_idle_timeout_secs = 60\n",
        )
        .unwrap();
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:9999".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::load(
            Some(&file),
            env(&[
                ("GHOSTCACHE_ACCOUNTS__INACTIVITY_DAYS", "12"),
                ("GHOSTCACHE_SERVER__LISTEN", "127.0.0.1:1"),
                ("GHOSTCACHE_CONFIG", "ignored"),
                ("PATH", "/bin"),
            ]),
            &flags,
        )
        .unwrap();
        assert_eq!(c.accounts.inactivity_days, 12, "env beats file");
        assert_eq!(
            c.accounts.session_idle_timeout_secs, 60,
            "file beats default"
        );
        assert_eq!(
            c.server.listen,
            Some("127.0.0.1:9999".parse().unwrap()),
            "flag beats env"
        );
    }

    #[test]
    fn unknown_keys_are_errors_in_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[accounts]\ninactivty_days = 10\n").unwrap();
        let err = Config::load(Some(&file), env(&[]), &FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("inactivty_days"), "{err}");

        let err = Config::load(
            None,
            env(&[("GHOSTCACHE_SERVR__LISTEN", "x")]),
            &FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("servr"), "{err}");
    }

    #[test]
    fn public_listen_needs_no_tor_or_explicit_permission() {
        let flags = FlagOverrides {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..Default::default()
        };
        assert!(Config::load(None, env(&[]), &flags).is_err());
        let flags = FlagOverrides {
            no_tor: true,
            ..flags
        };
        assert!(Config::load(None, env(&[]), &flags).is_ok());
    }

    #[test]
    fn weak_argon2_is_refused() {
        let e = Config::load(
            None,
            env(&[("GHOSTCACHE_CRYPTO__ARGON2_MEMORY_KIB", "1024")]),
            &FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("19456"));
    }

    #[test]
    fn registration_modes_parse_and_refuse_unknown_ones() {
        let load =
            |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &FlagOverrides::default());
        assert_eq!(
            load(&[]).unwrap().accounts.registration,
            crate::invites::RegistrationMode::Open
        );
        for (text, mode) in [
            ("invite", crate::invites::RegistrationMode::Invite),
            ("closed", crate::invites::RegistrationMode::Closed),
        ] {
            let c = load(&[("GHOSTCACHE_ACCOUNTS__REGISTRATION", text)]).unwrap();
            assert_eq!(c.accounts.registration, mode);
        }
        assert!(load(&[("GHOSTCACHE_ACCOUNTS__REGISTRATION", "invited")]).is_err());
        assert!(load(&[("GHOSTCACHE_ACCOUNTS__INVITES_PER_MEMBER", "0")]).is_err());
        assert!(load(&[("GHOSTCACHE_ACCOUNTS__INVITE_DAYS", "366")]).is_err());
    }

    #[test]
    fn file_limits_are_validated() {
        let load =
            |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &FlagOverrides::default());
        let c = load(&[("GHOSTCACHE_FILES__MAX_UPLOAD_BYTES", "1000")]).unwrap();
        assert_eq!(c.files.max_upload_bytes, 1000);
        assert_eq!(c.files.quota_bytes_per_member, 500_000_000);
        assert!(load(&[("GHOSTCACHE_FILES__MAX_UPLOAD_BYTES", "0")]).is_err());
        let e = load(&[("GHOSTCACHE_FILES__QUOTA_BYTES_PER_MEMBER", "1000")]).unwrap_err();
        assert!(e.to_string().contains("quota_bytes_per_member"), "{e}");
        assert!(load(&[("GHOSTCACHE_RATE_LIMITS__UPLOADS_PER_MEMBER_PER_MINUTE", "0")]).is_err());
        let c = load(&[
            ("GHOSTCACHE_FILES__UPLOAD_MIN_BYTES_PER_SEC", "0"),
            ("GHOSTCACHE_FILES__UPLOAD_DEADLINE_SECS", "60"),
        ])
        .unwrap();
        assert_eq!(
            (
                c.files.upload_min_bytes_per_sec,
                c.files.upload_deadline_secs
            ),
            (0, 60)
        );
        assert!(load(&[("GHOSTCACHE_FILES__UPLOAD_DEADLINE_SECS", "0")]).is_err());
        assert!(load(&[("GHOSTCACHE_FILES__UPLOAD_MIN_BYTES_PER_SEC", "9999999999")]).is_err());
    }
}
