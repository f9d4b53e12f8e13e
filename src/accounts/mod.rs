//! Accounts: registration, login with a destruction password, password changes, and
//! departure (by the member, by the destruction password, by the operator, or after
//! inactivity).
//!
//! - `credentials`: the stored credentials and the one function that checks a password.
//! - `login`: a login attempt, durable before it is answered (a destruction puts the decoy
//!   in place in the same commit shape as a failure's).
//! - `passwords`: registration and password changes.
//! - `departure`: decoys, erasure and the member deletion cascade, inactivity.
//! - `gate`: the per-name login gate (no lockout by strangers).
//! - `secret`: the login secret a browser with JavaScript sends instead of the password.
//!
//! Functions here block (argon2id, redb, the key file) and are called through `Store::run`
//! or `AppState::hash_job`.

pub mod credentials;
pub mod departure;
pub mod gate;
pub mod handlers;
pub mod login;
pub mod passwords;
pub mod secret;
pub mod username;
pub mod views;

use crate::clock::UnixTime;
use crate::crypto::master::Pepper;
use crate::crypto::{KdfParams, SecretKey};
use crate::store::cascade::Cascade;
use crate::store::tables::{USERNAME_TO_USER, USERS};
use crate::store::{Credentials, Id, Record, Store, StoreError, UserRecord};
pub use departure::{depart, finish_departure, finish_departures, sweep_inactive};
pub use login::{LoginOutcome, check_login};
pub use passwords::{
    change_destruction_password, change_password, check_password_for_deletion, create_account,
};
pub use username::{Username, UsernameError};

/// Longest accepted password, in bytes (argon2id input is bounded anyway; this keeps
/// forms sane).
pub const MAX_PASSWORD_BYTES: usize = 1024;

const SECONDS_PER_DAY: i64 = 86_400;

/// Why registering or changing a password was refused. Shown to the member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Username(#[from] UsernameError),
    #[error("That username is taken, or looks too much like one that is.")]
    Taken,
    #[error("Passwords must be at least {0} characters long.")]
    PasswordTooShort(usize),
    #[error("Passwords may be at most 1024 bytes long.")]
    PasswordTooLong,
    #[error("The destruction password must be different from the password.")]
    SamePasswords,
    #[error("The current password is wrong.")]
    WrongPassword,
    #[error("The account changed while you were editing it. Try again.")]
    Conflict,
    #[error(
        "Your account still uses the older login. Set your destruction password again first \
         (it may be the same one); then this works."
    )]
    OlderLogin,
    #[error(
        "Your end-to-end keys are wrapped under your password, and only your browser can \
         wrap them again: change your password with JavaScript on (Tor Browser's \
         \u{201c}Standard\u{201d} or \u{201c}Safer\u{201d} level), or your keys would be lost."
    )]
    NeedsBrowser,
    #[error(
        "Your browser did not send your end-to-end keys wrapped again. Reload the page and try again."
    )]
    RingMissing,
}

/// Check one new password's length.
pub fn check_password_shape(password: &str, min_chars: usize) -> Result<(), AccountError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::PasswordTooLong);
    }
    if password.chars().count() < min_chars {
        return Err(AccountError::PasswordTooShort(min_chars));
    }
    Ok(())
}

/// What account operations need besides the store: the cost of new passwords, the pepper,
/// the inactivity limit and the deletion cascade.
pub struct Policy {
    /// argon2id cost of new passwords.
    pub kdf: KdfParams,
    /// PBKDF2 iterations of new login secrets (`secret::ITERATIONS`; fewer with the test
    /// key derivation).
    pub login_iterations: u32,
    /// The pepper, when a master key is configured.
    pub pepper: Option<Pepper>,
    /// Accounts not logged into for this many days are deleted, and refused until then.
    pub inactivity_days: u32,
    /// Every feature's eraser.
    pub cascade: Cascade,
    /// Stand-in credentials for names nobody has, so that a login for them runs the same
    /// checks and the same writes as one for a real name.
    dummy: Credentials,
    /// A stand-in sealed private key, the size of a real one, for the same purpose.
    dummy_private: String,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("kdf", &self.kdf)
            .field("peppered", &self.pepper.is_some())
            .field("inactivity_days", &self.inactivity_days)
            .field("cascade", &self.cascade)
            .finish_non_exhaustive()
    }
}

impl Policy {
    pub fn new(
        kdf: KdfParams,
        pepper: Option<Pepper>,
        inactivity_days: u32,
        cascade: Cascade,
    ) -> Result<Self, StoreError> {
        let login_iterations = secret::iterations_for(kdf);
        let dummy =
            credentials::dummy(kdf, login_iterations, pepper.as_ref()).map_err(crypto_to_store)?;
        // A 3072-bit RSA key in PKCS#8 DER is about 1.8 KB.
        let dummy_private = SecretKey::generate()
            .seal(&[0u8; 1790])
            .map_err(crypto_to_store)?;
        Ok(Self {
            kdf,
            login_iterations,
            pepper,
            inactivity_days,
            cascade,
            dummy,
            dummy_private,
        })
    }

    /// The pepper, if any.
    pub fn pepper(&self) -> Option<&Pepper> {
        self.pepper.as_ref()
    }
}

/// How a browser logs into a name: what `GET /login/salt` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginParams {
    /// The name as the server reads it (normalised), or as typed when it cannot be one.
    pub name: String,
    pub salt: [u8; 16],
    pub iterations: u32,
    /// Whether the browser sends the login secret (`false`: an account that predates
    /// login secrets, whose browser sends the password until it moves).
    pub sends_secret: bool,
}

/// What a browser needs to log into `typed`. The same shape for every name: one nobody
/// has, a decoy, a member. A decoy answers what its member's account answered.
pub fn login_params(
    store: &Store,
    policy: &Policy,
    typed: &str,
) -> Result<LoginParams, StoreError> {
    let installation = secret::installation_secret(store)?;
    let Ok(username) = Username::parse(typed) else {
        let name: String = typed.chars().take(64).collect();
        return Ok(LoginParams {
            salt: secret::salt(&installation, &name),
            name,
            iterations: policy.login_iterations,
            sends_secret: true,
        });
    };
    let scheme = match find_user(store, &username)? {
        Some((_, record)) => open_credentials(store, &record)?.map(|c| c.scheme),
        None => None,
    };
    let (iterations, sends_secret) = match scheme {
        Some(crate::store::CredentialScheme::LoginSecret { iterations, .. }) => (iterations, true),
        // The end-to-end tier's derivation for such accounts used the default count.
        Some(crate::store::CredentialScheme::Argon2Hkdf { .. }) => (secret::ITERATIONS, false),
        None => (policy.login_iterations, true),
    };
    Ok(LoginParams {
        salt: secret::salt(&installation, username.as_str()),
        name: username.as_str().to_owned(),
        iterations,
        sends_secret,
    })
}

fn crypto_to_store(e: crate::crypto::CryptoError) -> StoreError {
    StoreError::Encode(e.to_string())
}

/// Look up a member by normalised name.
pub fn find_user(
    store: &Store,
    username: &Username,
) -> Result<Option<(Id, UserRecord)>, StoreError> {
    let txn = store.read()?;
    let Some(id) = txn
        .open_table(USERNAME_TO_USER)?
        .get(username.as_str())?
        .map(|g| g.value())
    else {
        return Ok(None);
    };
    let Some(bytes) = txn.open_table(USERS)?.get(id)? else {
        return Ok(None);
    };
    Ok(Some((id, UserRecord::decode(bytes.value())?)))
}

/// Load a member by id.
pub fn load_user(store: &Store, id: &Id) -> Result<Option<UserRecord>, StoreError> {
    record_in(&store.read()?.open_table(USERS)?, id)
}

/// A member's record, read from a `USERS` table (of a read or write transaction).
pub fn record_in(
    users: &impl redb::ReadableTable<Id, &'static [u8]>,
    id: &Id,
) -> Result<Option<UserRecord>, StoreError> {
    users
        .get(id)?
        .map(|b| UserRecord::decode(b.value()))
        .transpose()
}

/// In a write transaction: if `id`'s record still holds the credentials `seen` held (and
/// is no decoy being erased), let `change` edit it and write it back when `change` says
/// so. Returns whether the record was still the one seen (compare-and-swap: two changes
/// of one account cannot interleave, and nothing logs into credentials that are gone).
pub fn update_if_unchanged(
    txn: &redb::WriteTransaction,
    id: &Id,
    seen: &UserRecord,
    change: impl FnOnce(&mut UserRecord) -> bool,
) -> Result<bool, StoreError> {
    let mut users = txn.open_table(USERS)?;
    let Some(mut current) = record_in(&users, id)? else {
        return Ok(false);
    };
    if current.erasure_slot != seen.erasure_slot
        || current.credentials_sealed != seen.credentials_sealed
        || current.erasing
    {
        return Ok(false);
    }
    if change(&mut current) {
        users.insert(id, current.encode()?.as_slice())?;
    }
    Ok(true)
}

/// Every member record (decoys included) for which `keep` says yes, from one snapshot.
pub fn users_where(
    store: &Store,
    mut keep: impl FnMut(&UserRecord) -> Result<bool, StoreError>,
) -> Result<Vec<(Id, UserRecord)>, StoreError> {
    use redb::ReadableTable;
    let txn = store.read()?;
    let users = txn.open_table(USERS)?;
    let mut out = Vec::new();
    for row in users.iter()? {
        let (k, v) = row?;
        let record = UserRecord::decode(v.value())?;
        if keep(&record)? {
            out.push((k.value(), record));
        }
    }
    Ok(out)
}

/// A member's credentials, opened with their erasure key; `None` when the key is gone
/// (the member was erased, or the key file is not the one of this database).
pub fn open_credentials(
    store: &Store,
    record: &UserRecord,
) -> Result<Option<Credentials>, StoreError> {
    let Some(key) = store.keys().read(record.erasure_slot)? else {
        return Ok(None);
    };
    match Credentials::open(&record.credentials_sealed, &key) {
        Ok(c) => Ok(Some(c)),
        Err(StoreError::Corrupt(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The day inactivity counts from: the later of the last login and the last day the
/// login gate turned an attempt for this name away.
pub fn activity_day(record: &UserRecord) -> i64 {
    record.last_login_day.max(record.kept_out_day)
}

/// Whether an account last active on `day` has been inactive for more than `days` full
/// days at `now`. Counting from the end of that day means nobody is deleted early because
/// the file only keeps the day.
pub fn inactive(day: i64, now: UnixTime, days: u32) -> bool {
    let deadline = (day + 1 + i64::from(days)).saturating_mul(SECONDS_PER_DAY);
    now >= deadline
}

/// Today's day number.
pub fn day_of(now: UnixTime) -> i64 {
    now.div_euclid(SECONDS_PER_DAY)
}

/// Number of members (decoys included: they are indistinguishable), for status.
pub fn count_members(store: &Store) -> Result<u64, StoreError> {
    use redb::ReadableTableMetadata;
    let txn = store.read()?;
    Ok(txn.open_table(USERS)?.len()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inactivity_counts_full_days_from_the_end_of_the_login_day() {
        let day = 20_000;
        let login_at = day * SECONDS_PER_DAY + 86_399; // last second of the day
        assert!(!inactive(day, login_at + 29 * SECONDS_PER_DAY, 30));
        assert!(!inactive(day, login_at + 30 * SECONDS_PER_DAY, 30));
        assert!(inactive(day, login_at + 31 * SECONDS_PER_DAY, 30));
        let login_at = day * SECONDS_PER_DAY; // first second of the day
        assert!(!inactive(day, login_at + 30 * SECONDS_PER_DAY, 30));
        assert!(inactive(day, login_at + 31 * SECONDS_PER_DAY, 30));
    }
}
