//! The command line. `main.rs` calls [`main`]; each subcommand is a small function here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, FlagOverrides};

/// ghostcache: a private meeting place reached only through Tor Browser.
///
/// Configuration is read in layers: built-in defaults, then the TOML file given with
/// --config (or GHOSTCACHE_CONFIG), then GHOSTCACHE_* environment variables (sections
/// separated by a double underscore, e.g. GHOSTCACHE_SERVER__LISTEN=127.0.0.1:8080), then
/// the flags below. Unknown keys in any layer are errors. See README.md for every key.
#[derive(Debug, Parser)]
#[command(name = "ghostcache", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Load and validate the configuration, print it resolved, and exit (0 when valid).
    CheckConfig(ConfigArgs),
    /// Write a consistent copy of the database to PATH, and of its erasure key file to
    /// PATH.keys, while the server keeps running.
    ///
    /// To restore: stop the service, copy PATH over ghostcache.redb and PATH.keys over
    /// ghostcache.redb.keys in the data directory (keeping both private: chmod 600), start
    /// the service. The two files belong together: the database without its key file
    /// lets nobody log in.
    Backup(BackupArgs),
    /// Compact the database while the server is stopped: rewrite it so that what was
    /// deleted (expired and self-destructed messages, deleted accounts, files) leaves no
    /// bytes behind in free pages, and shrink the file. Refused while the server runs.
    Compact(ConfigArgs),
    /// Print the onion address (http://….onion/) without starting anything. Works while
    /// the server runs. Needs the master key when one is configured.
    OnionAddress(ConfigArgs),
    /// Show whether the server runs, its uptime, Tor's state, counts and database size.
    /// Never shows names.
    Status(ConfigArgs),
    /// Members: list names and last-login days, or remove a member while the server runs.
    Member {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        command: crate::control::commands::MemberCommand,
    },
    /// Restricted discovery (onion client authorization): add, list and remove the keys
    /// of the Tor clients that may reach the service (tor.restricted_discovery = true).
    /// Changes apply to a running service without a restart.
    ClientAuth {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        command: crate::control::commands::ClientAuthCommand,
    },
    /// Make an invitation code (accounts.registration = "invite") and print it once; only
    /// its hash is stored.
    Invite {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        args: crate::control::commands::InviteArgs,
    },
    /// Decrypt a file's encrypted blob (as downloaded from its page) with its key, offline.
    ///
    /// The key is read from a file, or from standard input with `--key-file -`; it is never
    /// taken as an argument, where other users could read it in the process list. OUT is
    /// written to a temporary file beside it and renamed only once every token verified.
    Decrypt(DecryptArgs),
    /// Print the scripts this binary serves to its end-to-end pages: path and SHA-256, as
    /// a Markdown table (the README publishes the same table, so members can compare).
    ScriptHashes,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// File holding the key (44 characters, as shown at upload), or - for standard input.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// The encrypted blob.
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Where to write the decrypted file.
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Where to write the backup (a new file, with PATH.keys beside it; never
    /// overwritten).
    #[arg(
        value_name = "PATH",
        required_unless_present = "into",
        conflicts_with = "into"
    )]
    pub path: Option<PathBuf>,
    /// Write the backup into this directory instead, named after the time
    /// (ghostcache-YYYY-MM-DDTHHMMSSZ.redb, UTC), then delete the oldest such backups
    /// there beyond --keep. This is what the backup timer runs.
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,
    /// With --into: how many backups to keep.
    #[arg(long, value_name = "N", default_value_t = 7, requires = "into",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub keep: u32,
}

/// Where the configuration comes from.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "GHOSTCACHE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory holding ghostcache.redb [default: $STATE_DIRECTORY under systemd,
    /// otherwise ./ghostcache-data].
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Also serve plain HTTP on this address (e.g. 127.0.0.1:8080). Loopback only,
    /// unless --no-tor (the LAN demo) or server.allow_public_listen is set.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Run without Tor: the air-gapped LAN demo. Every page shows a "not anonymous"
    /// banner. Needs --listen.
    #[arg(long)]
    pub no_tor: bool,
}

impl ConfigArgs {
    fn load(
        &self,
        listen: Option<std::net::SocketAddr>,
        no_tor: bool,
    ) -> Result<Config, crate::config::ConfigError> {
        let flags = FlagOverrides {
            data_dir: self.data_dir.clone(),
            listen,
            no_tor,
        };
        Config::load(self.config.as_deref(), std::env::vars(), &flags)
    }
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Backup(args) => backup(args),
        Command::Compact(args) => compact(&args),
        Command::OnionAddress(args) => onion_address(args),
        Command::Status(args) => status(args),
        Command::Decrypt(args) => decrypt(&args),
        Command::Member { config, command } => {
            with_config(&config, |c| crate::control::commands::member(c, command))
        }
        Command::ClientAuth { config, command } => with_config(&config, |c| {
            crate::control::commands::client_auth(c, command)
        }),
        Command::Invite { config, args } => {
            with_config(&config, |c| crate::control::commands::invite(c, &args))
        }
        Command::ScriptHashes => script_hashes(),
    }
}

/// Load the configuration, then run `f` with it.
fn with_config(args: &ConfigArgs, f: impl FnOnce(&Config) -> ExitCode) -> ExitCode {
    match args.load(None, false) {
        Ok(config) => f(&config),
        Err(e) => fail(e),
    }
}

#[allow(clippy::print_stdout, reason = "the command's output")]
fn script_hashes() -> ExitCode {
    println!("| script | SHA-256 |");
    println!("| --- | --- |");
    for s in crate::web::assets::scripts() {
        println!("| `{}` | `{}` |", s.asset.path, s.sha256_hex);
    }
    ExitCode::SUCCESS
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("GHOSTCACHE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("ghostcache: {message}");
    ExitCode::from(1)
}

fn serve(args: ServeArgs) -> ExitCode {
    if let Err(e) = crate::hardening::harden_process() {
        return fail(e);
    }
    let config = match args.config.load(args.listen, args.no_tor) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format_args!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(crate::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

#[allow(
    clippy::print_stdout,
    reason = "check-config prints the resolved configuration"
)]
fn check_config(args: ConfigArgs) -> ExitCode {
    match args.load(None, false) {
        Ok(config) => {
            match toml::to_string_pretty(&config) {
                Ok(text) => println!("{text}"),
                Err(e) => return fail(e),
            }
            eprintln!("ghostcache: configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn compact(args: &ConfigArgs) -> ExitCode {
    let config = match args.load(None, false) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let path = config.resolved_data_dir().join(crate::store::DB_FILE);
    match crate::store::compact(&path) {
        Ok(r) => {
            eprintln!(
                "ghostcache: compacted {} ({} bytes before, {} after)",
                path.display(),
                r.before,
                r.after
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn backup(args: BackupArgs) -> ExitCode {
    let config = match args.config.load(None, false) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let source = config.resolved_data_dir().join(crate::store::DB_FILE);
    if let Some(dir) = &args.into {
        let now = crate::clock::Clock::system().now();
        let keep = usize::try_from(args.keep).unwrap_or(usize::MAX);
        return match crate::store::rotate::backup_and_rotate(&source, dir, keep, now) {
            Ok(r) => {
                eprintln!(
                    "ghostcache: backup written to {} ({} rows, {} bytes, {:.2} s); {} old \
                     backup{} removed",
                    r.written.display(),
                    r.backup.rows,
                    r.backup.bytes,
                    r.backup.elapsed.as_secs_f64(),
                    r.removed.len(),
                    if r.removed.len() == 1 { "" } else { "s" }
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let Some(path) = args.path else {
        return fail("give a PATH or --into DIR");
    };
    match crate::store::backup::backup(&source, &path) {
        Ok(report) => {
            eprintln!(
                "ghostcache: backup written to {} and {} ({} tables, {} rows, {} bytes, {:.2} s)",
                path.display(),
                crate::store::erasure::keys_path(&path).display(),
                report.tables,
                report.rows,
                report.bytes,
                report.elapsed.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[allow(clippy::print_stdout, reason = "the address is this command's output")]
fn onion_address(args: ConfigArgs) -> ExitCode {
    let config = match args.load(None, false) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let path = config.resolved_data_dir().join(crate::store::DB_FILE);
    let result = (|| -> Result<String, String> {
        let master = crate::onion::key::load_master_key(&config).map_err(|e| e.to_string())?;
        let db = crate::store::open_read_only(&path).map_err(|e| e.to_string())?;
        let key = crate::onion::key::read(&db, master.as_ref()).map_err(|e| e.to_string())?;
        key.address().map_err(|e| e.to_string())
    })();
    match result {
        Ok(address) => {
            println!("http://{address}/");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[allow(clippy::print_stdout, reason = "the status is this command's output")]
fn status(args: ConfigArgs) -> ExitCode {
    let config = match args.load(None, false) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let dir = config.resolved_data_dir();
    match crate::status::read_runtime(&dir) {
        Some(rt) => {
            println!("server:         running (pid {})", rt.pid);
            let uptime = crate::clock::Clock::system()
                .now()
                .saturating_sub(rt.started_at);
            println!(
                "uptime:         {}d {:02}h {:02}m {:02}s",
                uptime / 86_400,
                uptime % 86_400 / 3600,
                uptime % 3600 / 60,
                uptime % 60
            );
            println!("tor bootstrap:  {}", rt.tor_bootstrap);
            println!("onion service:  {}", rt.onion_service);
        }
        None => println!("server:         not running"),
    }
    match crate::status::counts(&dir.join(crate::store::DB_FILE)) {
        Ok(c) => {
            for (name, n) in c.rows {
                println!("{:<15} {n}", format!("{name}:"));
            }
            println!("database size:  {} bytes", c.file_bytes);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Read a file key from a file or standard input, into zeroizing memory.
fn read_key(path: &std::path::Path) -> Result<crate::crypto::SecretKey, String> {
    use std::io::Read;
    // Room for everything `take(1024)` lets through, so the buffer never grows: growing
    // would leave unzeroized copies of the key in freed memory.
    let mut text = zeroize::Zeroizing::new(String::with_capacity(1024));
    let read = if path.as_os_str() == "-" {
        std::io::stdin().take(1024).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(1024).read_to_string(&mut text))
    };
    read.map_err(|e| format!("cannot read the key: {e}"))?;
    crate::crypto::SecretKey::from_base64(&text).map_err(|_| {
        "the key file does not hold a file key (44 characters of letters, digits, - and _, \
         ending in =)"
            .to_owned()
    })
}

fn decrypt(args: &DecryptArgs) -> ExitCode {
    match decrypt_to(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

fn decrypt_to(args: &DecryptArgs) -> Result<(), String> {
    use std::io::Write;
    let key = read_key(&args.key_file)?;
    let input = std::fs::File::open(&args.input)
        .map_err(|e| format!("cannot open {}: {e}", args.input.display()))?;
    let dir = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = args
        .output
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", args.output.display()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(
        ".{}.partial",
        crate::crypto::b64url(&crate::crypto::random_bytes::<6>())
    ));
    let temp = dir.join(temp_name);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
    let mut writer = std::io::BufWriter::new(out);
    let result = crate::files::decrypt_blob(&key, &mut std::io::BufReader::new(input), &mut writer)
        .map_err(|e| e.to_string())
        .and_then(|_| writer.flush().map_err(|e| e.to_string()))
        .and_then(|()| writer.get_ref().sync_all().map_err(|e| e.to_string()))
        .and_then(|()| std::fs::rename(&temp, &args.output).map_err(|e| e.to_string()));
    if let Err(e) = result {
        drop(writer);
        let _ = std::fs::remove_file(&temp);
        return Err(format!("{e}; {} was not written", args.output.display()));
    }
    Ok(())
}
