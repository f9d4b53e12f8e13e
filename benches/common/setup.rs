//! What the benchmarks that set members up through the library share: accounts made
//! with the fast test KDF and a copied delivery key, their data keys, signing keys copied
//! from one template, and reporting percentiles. Included with
//! `#[path = "common/setup.rs"] mod setup;` by the benchmarks that use it.

use std::time::Duration;

use ghostcache::accounts::{self, LoginOutcome, Username};
use ghostcache::connections::keys::SigningKey;
use ghostcache::crypto::rsa_keys::RsaPrivate;
use ghostcache::crypto::{KdfParams, SecretKey};
use ghostcache::store::{Id, Store, StoreError};

use super::common::PASSWORD;

const DESTRUCTION: &str = "bench destroy 000001";

/// The test KDF cost: setting up hundreds of members must not take minutes.
const KDF: KdfParams = KdfParams::DANGER_FAST;

/// The account rules the benchmarks set members up with: the test KDF, no pepper (the
/// bench servers have no master key), the default inactivity limit.
fn policy() -> accounts::Policy {
    accounts::Policy::new(KDF, None, 30, ghostcache::app::member_cascade()).unwrap()
}

/// Now, for the accounts made here (a member last seen long ago could not log in).
fn now() -> i64 {
    ghostcache::clock::Clock::system().now()
}

/// Create the member `name` (password [`PASSWORD`]) with a copy of the delivery key
/// `delivery_der`; their id and data key, as a login would give them.
pub fn create_member(
    store: &Store,
    name: &str,
    delivery_der: &[u8],
) -> Result<(Id, SecretKey), StoreError> {
    let username = Username::parse(name).unwrap();
    let delivery = RsaPrivate::from_der(delivery_der).unwrap();
    accounts::create_account(
        store,
        &policy(),
        &username,
        &ghostcache::accounts::secret::Presented::password(PASSWORD.as_bytes()),
        &ghostcache::accounts::secret::Presented::password(DESTRUCTION.as_bytes()),
        delivery,
        now(),
    )?
    .unwrap();
    let key = data_key_of(store, name);
    let id = accounts::find_user(store, &username)?.unwrap().0;
    Ok((id, key))
}

/// The data key of member `name`, as their login unwraps it.
pub fn data_key_of(store: &Store, name: &str) -> SecretKey {
    match accounts::check_login(
        store,
        &policy(),
        &Username::parse(name).unwrap(),
        &ghostcache::accounts::secret::Presented::password(PASSWORD.as_bytes()),
        now(),
    )
    .unwrap()
    {
        LoginOutcome::Success { data_key, .. } => data_key,
        _ => panic!("bench login"),
    }
}

/// A signing key copied from a template (so that setup does not generate hundreds).
pub fn signing_copy(template: &SigningKey) -> SigningKey {
    let (scheme, der) = template.to_tagged_der().unwrap();
    SigningKey::from_tagged_der(scheme, &der).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Print the median, 99th percentile and maximum of `v`.
pub fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<46} n={:<4} p50={:>7.3} ms  p99={:>7.3} ms  max={:>7.3} ms",
        v.len(),
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(*v.last().unwrap())
    );
}

/// Start the server in-process on a loopback port, in a private temporary directory,
/// with `rsa_bits` keys, the test KDF, and the login limit lifted; `tweak` changes the
/// rest. The directory must live as long as the server.
pub async fn start_server(
    rsa_bits: usize,
    tweak: impl FnOnce(&mut ghostcache::config::Config),
) -> (ghostcache::app::RunningApp, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut config = ghostcache::config::Config {
        data_dir: Some(dir.path().join("data")),
        ..ghostcache::config::Config::default()
    };
    config.server.listen = Some("127.0.0.1:0".parse().unwrap());
    config.server.no_tor = true;
    config.crypto.rsa_bits = rsa_bits;
    config.crypto.rsa_pool_size = 1;
    config.rate_limits.login_per_username_per_minute = 1_000_000;
    tweak(&mut config);
    let options = ghostcache::app::StartOptions {
        clock: ghostcache::clock::Clock::system(),
        danger_fast_kdf: true,
    };
    (ghostcache::app::start(config, options).await.unwrap(), dir)
}
