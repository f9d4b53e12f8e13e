//! Restricted discovery (onion client authorization, issue 12.1) over the private Tor
//! network: the real binary with `tor.restricted_discovery = true`, and the C tor client
//! of the shared network (tests/it/tornet.rs) as the member's Tor.
//!
//! 1. With no key, the client cannot reach the service: its SOCKS port answers 0xF4
//!    ("onion service missing client authorization").
//! 2. `ghostcache client-auth add` on the running service prints the
//!    `<address>:descriptor:x25519:<key>` line; in a file of the client's
//!    `ClientOnionAuthDir`, the client reaches the service and a member registers and
//!    logs in — with nothing restarted.
//!    Authorizing a second client later leaves that member's session as it was.
//! 3. After `client-auth remove`, the service's next descriptor is not readable with that
//!    key: a fresh lookup answers 0xF5 ("wrong client authorization"), again with nothing
//!    restarted.
//!
//! NEWNYM before each lookup makes the client forget the descriptor it fetched.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::support::process::{self, Serve};
use crate::support::{Client, DPW, PW};
use crate::tornet::TorNet;

/// Wait for the next onion time period when fewer than this many seconds are left.
const PERIOD_BUDGET_SECS: u64 = 360;

/// How one lookup through the C tor client ended.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// The onion answered this HTTP status.
    Http(StatusCode),
    /// The SOCKS port refused with this reply code.
    Socks(u8),
    /// Anything else (time-out, a broken stream).
    Other(String),
}

async fn lookup(net: &TorNet, address: &str) -> Lookup {
    let attempt = async {
        let stream = match crate::support::socks::connect(net.socks_addr(), address, 80).await {
            Ok(s) => s,
            Err(e) => {
                let text = e.to_string();
                return match text
                    .strip_prefix("socks: connect failed, reply 0x")
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(code) => Lookup::Socks(code),
                    None => Lookup::Other(text),
                };
            }
        };
        let mut c = Client::via_tor(net.socks_addr(), address);
        let mut req = hyper::Request::get("/")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        Lookup::Http(
            c.send_on(hyper_util::rt::TokioIo::new(stream), &mut req)
                .await
                .status,
        )
    };
    tokio::time::timeout(Duration::from_secs(45), attempt)
        .await
        .unwrap_or_else(|_| Lookup::Other("timed out".into()))
}

/// NEWNYM, then look up, until `want` says yes (or `limit` passes); the last result.
async fn lookup_until(
    net: &TorNet,
    address: &str,
    limit: Duration,
    what: &str,
    want: impl Fn(&Lookup) -> bool,
) -> Lookup {
    let started = Instant::now();
    loop {
        let _ = net.newnym();
        let got = lookup(net, address).await;
        eprintln!(
            "onion auth: {what}: {got:?} after {:.0} s",
            started.elapsed().as_secs_f64()
        );
        if want(&got) || started.elapsed() > limit {
            return got;
        }
        // C tor takes NEWNYM at most every 10 s.
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// `ghostcache ARGS --config CONFIG`, checked.
fn gc(config: &Path, args: &[&str]) -> (String, String) {
    let mut all = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    let out = process::run(&all);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "ghostcache {args:?}: {stderr}");
    (stdout, stderr)
}

#[test]
fn restricted_discovery_admits_only_authorized_tor_clients() {
    let (net, _turn) = crate::tornet::shared();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onion-auth");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let left = net.secs_until_time_period_change();
    if left < PERIOD_BUDGET_SECS {
        eprintln!("onion auth: {left} s left in this time period; waiting for the next one");
        std::thread::sleep(Duration::from_secs(left + 45));
    }

    let config = process::onion_config(
        net,
        &out,
        "ghostcache.toml",
        "",
        "restricted_discovery = true\n",
    );
    let gc_serve = Serve::start(
        &["--config", config.to_str().unwrap()],
        &out.join("ghostcache.stderr"),
        None,
    );
    let address = gc_serve.onion.clone().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // 1. No key: the descriptor is published, but this client cannot read it.
    let got = rt.block_on(lookup_until(
        net,
        &address,
        Duration::from_secs(240),
        "without a key",
        |l| *l == Lookup::Socks(0xF4),
    ));
    assert_eq!(
        got,
        Lookup::Socks(0xF4),
        "no key: missing client authorization"
    );

    // 2. The operator authorizes a client on the running service.
    let (stdout, stderr) = gc(&config, &["client-auth", "add", "member1"]);
    assert!(
        stderr.contains("publishes a new descriptor"),
        "applied to the running service: {stderr}"
    );
    let host = address.trim_end_matches(".onion");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{host}:descriptor:x25519:")))
        .unwrap_or_else(|| panic!("no ClientOnionAuthDir line in {stdout}"))
        .to_owned();
    let private = stdout.lines().nth(1).unwrap();
    assert!(
        line.ends_with(private),
        "the same private key for both forms"
    );
    let auth_dir = out.join("client-auth");
    std::fs::create_dir(&auth_dir).unwrap();
    std::fs::set_permissions(&auth_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key_file = auth_dir.join("member1.auth_private");
    std::fs::write(&key_file, format!("{line}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // C tor reads ClientOnionAuthDir whenever its options are set.
    net.control()
        .unwrap()
        .cmd(&format!(
            "SETCONF ClientOnionAuthDir=\"{}\"",
            auth_dir.display()
        ))
        .unwrap();
    let got = rt.block_on(lookup_until(
        net,
        &address,
        Duration::from_secs(300),
        "with the key",
        |l| matches!(l, Lookup::Http(_)),
    ));
    assert_eq!(got, Lookup::Http(StatusCode::OK), "with the key: reachable");
    let mut member = Client::via_tor(net.socks_addr(), &address);
    rt.block_on(async {
        member.register("rdmember", PW, DPW).await;
        let r = member.login("rdmember", PW).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "login through Tor");
        assert_eq!(member.get("/settings").await.status, StatusCode::OK);
    });
    // Another client is authorized: the member's session goes on.
    let (_, stderr) = gc(&config, &["client-auth", "add", "member2"]);
    assert!(stderr.contains("client member2 is authorized"), "{stderr}");
    rt.block_on(async {
        assert_eq!(member.get("/settings").await.status, StatusCode::OK);
    });
    let (list, _) = gc(&config, &["client-auth", "list"]);
    assert!(
        list.contains("member1") && list.contains("member2"),
        "{list}"
    );
    assert!(!list.contains(private), "the private key is not listed");

    // 3. Removed: the next descriptor is not for this key any more.
    let (_, stderr) = gc(&config, &["client-auth", "remove", "member1"]);
    assert!(stderr.contains("no longer authorized"), "{stderr}");
    let got = rt.block_on(lookup_until(
        net,
        &address,
        Duration::from_secs(300),
        "after removal",
        |l| *l == Lookup::Socks(0xF5),
    ));
    assert_eq!(
        got,
        Lookup::Socks(0xF5),
        "removed: wrong client authorization"
    );
    // A second fresh lookup answers the same: not a passing glitch.
    let got = rt.block_on(lookup_until(
        net,
        &address,
        Duration::ZERO,
        "after removal, again",
        |_| true,
    ));
    assert_eq!(got, Lookup::Socks(0xF5));

    let _ = net.control().unwrap().cmd("RESETCONF ClientOnionAuthDir");
    let stderr = gc_serve.stderr();
    assert!(
        !stderr.contains("rdmember") && !stderr.contains("member1") && !stderr.contains(host),
        "no names or address in the log"
    );
    assert!(gc_serve.stop().success(), "the service ran throughout");
}
