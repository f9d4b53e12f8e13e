//! The operator's commands that go through the control socket: `member`, `client-auth`
//! and `invite`. Each builds a [`Request`], hands it to the running server (or, when none
//! runs, carries it out on the database itself) and prints the [`Reply`].
//!
//! Secrets are made here and printed once: a client's private key and an invitation
//! code never reach the server, the socket or the database (only the public key and the
//! code's hash do).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{Reply, Request};
use crate::app::{StartOptions, StartupError};
use crate::config::Config;
use crate::onion::client_auth::{self, NewClientKey};
use crate::store::StoreError;

/// `ghostcache member …`
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Print every member's name and the day of their last login (UTC). Nothing else.
    List,
    /// Delete a member's account and everything in it, as their own deletion would;
    /// their sessions end at once. Works while the server runs.
    Remove {
        /// The member's username.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// `ghostcache client-auth …`
#[derive(Debug, Subcommand)]
pub enum ClientAuthCommand {
    /// Authorize a Tor client (restricted discovery). Without --public-key, makes a key
    /// pair and prints the private key once, for Tor Browser and for a C tor
    /// ClientOnionAuthDir; it is stored nowhere.
    Add {
        /// A name for this client: 1–32 of a-z, 0-9, - and _.
        #[arg(value_name = "NAME")]
        name: String,
        /// The client's own public key (descriptor:x25519:…), when the member made the
        /// key pair themselves. Nothing secret is printed then.
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
    },
    /// Print the authorized clients: name, public key, day added.
    List,
    /// Withdraw a client's authorization.
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// `ghostcache invite` options.
#[derive(Debug, Args)]
pub struct InviteArgs {
    /// How many registrations the code admits.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::invites::MAX_USES)))]
    pub uses: u32,
    /// Days the code stays valid.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::invites::MAX_DAYS)))]
    pub days: u32,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("ghostcache: {message}");
    ExitCode::from(1)
}

/// Send `request` to the server of this configuration's data directory, or carry it out
/// here when no server runs.
pub fn run(config: &Config, request: Request) -> Result<Reply, String> {
    let dir = config.resolved_data_dir();
    if let Some(reply) = super::send(&dir, &request)? {
        return Ok(reply);
    }
    let db = dir.join(crate::store::DB_FILE);
    if !db.exists() {
        return Err(format!(
            "no database at {}: give the data directory with --data-dir (or the configuration \
             with --config), or start `ghostcache serve` once first",
            db.display()
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let master = crate::crypto::master::MasterSecret::load(config).map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let state =
            crate::app::build_state(config.clone(), &StartOptions::default(), master.as_ref())
                .map_err(|e| match e {
                    StartupError::Store {
                        source: StoreError::Locked,
                        ..
                    } => "the server is running but its control socket does not answer yet (is it \
                      still starting?); try again in a minute"
                        .to_owned(),
                    e => e.to_string(),
                })?;
        Ok(super::execute(&state, None, false, request).await)
    })
}

/// Print a reply; the exit code says whether it was an error.
#[allow(clippy::print_stdout, reason = "lists are this command's output")]
fn report(reply: Reply) -> ExitCode {
    match reply {
        Reply::Done { message } => {
            eprintln!("ghostcache: {message}");
            ExitCode::SUCCESS
        }
        Reply::Error { message } => fail(message),
        Reply::Members { members } => {
            let today = crate::clock::Clock::system().now().div_euclid(86_400);
            println!("{:<32}  LAST LOGIN (UTC)", "NAME");
            for m in members {
                let ago = today.saturating_sub(m.last_login_day);
                println!(
                    "{:<32}  {} ({ago} day{} ago)",
                    m.name,
                    crate::chat::views::date_of_day(m.last_login_day),
                    if ago == 1 { "" } else { "s" }
                );
            }
            ExitCode::SUCCESS
        }
        Reply::Clients { clients } => {
            println!("{:<32}  {:<70}  ADDED (UTC)", "NAME", "PUBLIC KEY");
            for c in clients {
                println!(
                    "{:<32}  {:<70}  {}",
                    c.name,
                    c.public_key,
                    crate::chat::views::date_of_day(c.added_day)
                );
            }
            ExitCode::SUCCESS
        }
    }
}

/// `ghostcache member …`
pub fn member(config: &Config, command: MemberCommand) -> ExitCode {
    let request = match command {
        MemberCommand::List => Request::MemberList,
        MemberCommand::Remove { name } => {
            // Refuse a name that cannot exist before reaching the server at all.
            if let Err(m) = super::parse_member_name(&name) {
                return fail(m);
            }
            Request::MemberRemove { name }
        }
    };
    match run(config, request) {
        Ok(reply) => report(reply),
        Err(e) => fail(e),
    }
}

/// `ghostcache client-auth …`
pub fn client_auth(config: &Config, command: ClientAuthCommand) -> ExitCode {
    match command {
        ClientAuthCommand::List => match run(config, Request::ClientAuthList) {
            Ok(reply) => report(reply),
            Err(e) => fail(e),
        },
        ClientAuthCommand::Remove { name } => {
            if let Err(e) = client_auth::ClientName::parse(&name) {
                return fail(e);
            }
            match run(config, Request::ClientAuthRemove { name }) {
                Ok(reply) => report(reply),
                Err(e) => fail(e),
            }
        }
        ClientAuthCommand::Add { name, public_key } => add_client(config, name, public_key),
    }
}

fn add_client(config: &Config, name: String, public_key: Option<String>) -> ExitCode {
    let name = match client_auth::ClientName::parse(&name) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let (public, made) = match public_key {
        Some(text) => match client_auth::parse_public(&text) {
            Ok(k) => (k, None),
            Err(e) => return fail(e),
        },
        None => {
            let pair = NewClientKey::generate();
            (pair.public, Some(pair))
        }
    };
    let request = Request::ClientAuthAdd {
        name: name.as_str().to_owned(),
        public_key: client_auth::format_public(&public),
    };
    let reply = match run(config, request) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let ok = matches!(reply, Reply::Done { .. });
    let code = report(reply);
    if let (true, Some(pair)) = (ok, made) {
        print_private_key(config, name.as_str(), &pair);
    }
    code
}

/// Print a new client's private key, once: for Tor Browser, and as a C tor
/// `ClientOnionAuthDir` line.
#[allow(clippy::print_stdout, reason = "the key is this command's output")]
fn print_private_key(config: &Config, name: &str, pair: &NewClientKey) {
    let private = pair.private_base32();
    println!("Private key for {name} (shown once; it is stored nowhere):");
    println!("{}", private.as_str());
    println!();
    println!(
        "Tor Browser: open the onion address, click the key icon in the address bar \
         (\"Onion Service Authentication\"), paste the private key above and click Done."
    );
    match onion_address(config) {
        Ok(address) => {
            println!("C tor: save this line as {name}.auth_private in the ClientOnionAuthDir:");
            println!("{}", pair.auth_private_line(&address).as_str());
        }
        Err(e) => {
            println!(
                "C tor: save a line <address without .onion>:descriptor:x25519:<private key> as \
                 {name}.auth_private in the ClientOnionAuthDir (the address could not be read \
                 here: {e})"
            );
        }
    }
}

/// The onion address, read from the database as `onion-address` does.
fn onion_address(config: &Config) -> Result<String, String> {
    let path = config.resolved_data_dir().join(crate::store::DB_FILE);
    let master = crate::onion::key::load_master_key(config).map_err(|e| e.to_string())?;
    let db = crate::store::open_read_only(&path).map_err(|e| e.to_string())?;
    let key = crate::onion::key::read(&db, master.as_ref()).map_err(|e| e.to_string())?;
    key.address().map_err(|e| e.to_string())
}

/// `ghostcache invite`: make a code here, store its hash, print it once.
#[allow(clippy::print_stdout, reason = "the code is this command's output")]
pub fn invite(config: &Config, args: &InviteArgs) -> ExitCode {
    let code = crate::invites::new_code();
    let request = Request::InviteCreate {
        code_hash: crate::invites::hex32(&code.hash),
        uses: args.uses,
        days: args.days,
    };
    match run(config, request) {
        Ok(reply @ Reply::Done { .. }) => {
            let exit = report(reply);
            println!("{}", code.text.as_str());
            exit
        }
        Ok(reply) => report(reply),
        Err(e) => fail(e),
    }
}
