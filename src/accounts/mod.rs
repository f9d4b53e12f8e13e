//! Accounts: registration, login with a destruction password, password changes, and
//! deletion (by the member, by the destruction password, or after inactivity).
//!
//! Functions here block (argon2id, redb) and are called through `Store::run` or
//! `AppState::hash_job`.

pub mod handlers;
pub mod username;
pub mod views;

use redb::ReadableTable;
use zeroize::Zeroizing;

use crate::clock::UnixTime;
use crate::crypto::rsa_keys::RsaPrivate;
use crate::crypto::{KdfParams, MasterKey, SecretKey, Verifier, random_bytes};
use crate::store::tables::{SKELETON_TO_USER, USERNAME_TO_USER, USERS};
use crate::store::{Id, Record, Store, StoreError, UserRecord};
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

/// Stand-in salt and verifiers used when a login names nobody, so that the attempt runs
/// the same argon2id computation and comparisons as a real one.
pub struct DummyCredentials {
    salt: [u8; 16],
    kdf: KdfParams,
    password_verifier: Verifier,
    destruction_verifier: Verifier,
}

impl DummyCredentials {
    pub fn new(kdf: KdfParams) -> Self {
        Self {
            salt: random_bytes(),
            kdf,
            password_verifier: Verifier(random_bytes()),
            destruction_verifier: Verifier(random_bytes()),
        }
    }
}

/// Create an account. Runs argon2id twice (password and destruction password) and takes
/// a pre-generated delivery key pair.
pub fn create_account(
    store: &Store,
    username: &Username,
    password: &[u8],
    destruction: &[u8],
    kdf: KdfParams,
    delivery: RsaPrivate,
    now: UnixTime,
) -> Result<Result<Id, AccountError>, StoreError> {
    let salt = random_bytes::<16>();
    let m_password = MasterKey::derive(password, &salt, kdf).map_err(crypto_to_store)?;
    let m_destruction = MasterKey::derive(destruction, &salt, kdf).map_err(crypto_to_store)?;
    let password_verifier = m_password.verifier();
    let destruction_verifier = m_destruction.verifier();
    if password_verifier.matches(&destruction_verifier) {
        return Ok(Err(AccountError::SamePasswords));
    }
    let data_key = SecretKey::generate();
    let wrapped_data_key = m_password.kek().wrap(&data_key).map_err(crypto_to_store)?;
    let private_der = delivery.to_der().map_err(crypto_to_store)?;
    let record = UserRecord {
        username: username.as_str().to_owned(),
        salt,
        kdf,
        password_verifier,
        destruction_verifier,
        wrapped_data_key,
        delivery_public: delivery.public().to_der().map_err(crypto_to_store)?,
        delivery_private_sealed: data_key.seal(&private_der).map_err(crypto_to_store)?,
        last_login_day: now.div_euclid(SECONDS_PER_DAY),
    };
    let id: Id = random_bytes();
    let txn = store.write()?;
    {
        let mut names = txn.open_table(USERNAME_TO_USER)?;
        let mut skeletons = txn.open_table(SKELETON_TO_USER)?;
        if names.get(username.as_str())?.is_some() || skeletons.get(username.skeleton())?.is_some()
        {
            return Ok(Err(AccountError::Taken));
        }
        names.insert(username.as_str(), id)?;
        skeletons.insert(username.skeleton(), id)?;
        txn.open_table(USERS)?
            .insert(id, record.encode()?.as_slice())?;
    }
    txn.commit()?;
    Ok(Ok(id))
}

fn crypto_to_store(e: crate::crypto::CryptoError) -> StoreError {
    StoreError::Encode(e.to_string())
}

/// What a login attempt found.
pub enum LoginOutcome {
    /// The password matched.
    Success {
        user_id: Id,
        username: String,
        data_key: SecretKey,
    },
    /// The destruction password matched.
    Destroy(Id),
    /// Nothing matched (or nobody has that name).
    Failure,
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
    let txn = store.read()?;
    let table = txn.open_table(USERS)?;
    table
        .get(id)?
        .map(|b| UserRecord::decode(b.value()))
        .transpose()
}

/// Check a login attempt: exactly one argon2id computation and two constant-time
/// comparisons, whether or not the member exists and whichever password was given.
pub fn check_login(
    store: &Store,
    username: &Username,
    password: &[u8],
    dummy: &DummyCredentials,
) -> Result<LoginOutcome, StoreError> {
    let found = find_user(store, username)?;
    let (salt, kdf, pv, dv) = match &found {
        Some((_, r)) => (r.salt, r.kdf, r.password_verifier, r.destruction_verifier),
        None => (
            dummy.salt,
            dummy.kdf,
            dummy.password_verifier,
            dummy.destruction_verifier,
        ),
    };
    let m = MasterKey::derive(password, &salt, kdf).map_err(crypto_to_store)?;
    let v = m.verifier();
    // Evaluate both comparisons, always.
    let password_ok = v.matches(&pv);
    let destruction_ok = v.matches(&dv);
    let Some((id, record)) = found else {
        return Ok(LoginOutcome::Failure);
    };
    if destruction_ok {
        return Ok(LoginOutcome::Destroy(id));
    }
    if !password_ok {
        return Ok(LoginOutcome::Failure);
    }
    let data_key = m
        .kek()
        .unwrap_key(&record.wrapped_data_key)
        .map_err(crypto_to_store)?;
    Ok(LoginOutcome::Success {
        user_id: id,
        username: record.username,
        data_key,
    })
}

/// Note a successful login (day-granular) so that inactivity deletion counts from today.
pub fn record_login(store: &Store, id: &Id, now: UnixTime) -> Result<(), StoreError> {
    let day = now.div_euclid(SECONDS_PER_DAY);
    let txn = store.write()?;
    {
        let mut users = txn.open_table(USERS)?;
        let record = users
            .get(id)?
            .map(|b| UserRecord::decode(b.value()))
            .transpose()?;
        if let Some(mut record) = record
            && record.last_login_day != day
        {
            record.last_login_day = day;
            users.insert(id, record.encode()?.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Verify the current password of a member; returns the record and the derived key.
fn verify_current(
    store: &Store,
    id: &Id,
    current: &[u8],
) -> Result<Result<(UserRecord, MasterKey), AccountError>, StoreError> {
    let Some(record) = load_user(store, id)? else {
        return Ok(Err(AccountError::WrongPassword));
    };
    let m = MasterKey::derive(current, &record.salt, record.kdf).map_err(crypto_to_store)?;
    if !m.verifier().matches(&record.password_verifier) {
        return Ok(Err(AccountError::WrongPassword));
    }
    Ok(Ok((record, m)))
}

/// Replace the record if nobody changed it since `seen` was read (compare-and-swap on
/// the verifiers), so two concurrent password changes cannot interleave.
fn replace_if_unchanged(
    store: &Store,
    id: &Id,
    seen: &UserRecord,
    new: &UserRecord,
) -> Result<Result<(), AccountError>, StoreError> {
    let txn = store.write()?;
    {
        let mut users = txn.open_table(USERS)?;
        let current = users
            .get(id)?
            .map(|b| UserRecord::decode(b.value()))
            .transpose()?;
        let unchanged = current.is_some_and(|c| {
            c.password_verifier == seen.password_verifier
                && c.destruction_verifier == seen.destruction_verifier
        });
        if !unchanged {
            return Ok(Err(AccountError::Conflict));
        }
        users.insert(id, new.encode()?.as_slice())?;
    }
    txn.commit()?;
    Ok(Ok(()))
}

/// Change the password: the data key is re-wrapped under the new password's key.
pub fn change_password(
    store: &Store,
    id: &Id,
    current: &[u8],
    new: &[u8],
) -> Result<Result<(), AccountError>, StoreError> {
    let (record, m_current) = match verify_current(store, id, current)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    // The salt and cost stay: the destruction verifier was derived with them and cannot
    // be recomputed without the destruction password.
    let m_new = MasterKey::derive(new, &record.salt, record.kdf).map_err(crypto_to_store)?;
    let v_new = m_new.verifier();
    if v_new.matches(&record.destruction_verifier) {
        return Ok(Err(AccountError::SamePasswords));
    }
    let data_key = m_current
        .kek()
        .unwrap_key(&record.wrapped_data_key)
        .map_err(crypto_to_store)?;
    let mut updated = record.clone();
    updated.password_verifier = v_new;
    updated.wrapped_data_key = m_new.kek().wrap(&data_key).map_err(crypto_to_store)?;
    replace_if_unchanged(store, id, &record, &updated)
}

/// Change the destruction password (authorised by the current password).
pub fn change_destruction_password(
    store: &Store,
    id: &Id,
    current: &[u8],
    new_destruction: &[u8],
) -> Result<Result<(), AccountError>, StoreError> {
    let (record, _) = match verify_current(store, id, current)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let m_new =
        MasterKey::derive(new_destruction, &record.salt, record.kdf).map_err(crypto_to_store)?;
    let v_new = m_new.verifier();
    if v_new.matches(&record.password_verifier) {
        return Ok(Err(AccountError::SamePasswords));
    }
    let mut updated = record.clone();
    updated.destruction_verifier = v_new;
    replace_if_unchanged(store, id, &record, &updated)
}

/// Check the password before a member deletes their own account.
pub fn check_password_for_deletion(
    store: &Store,
    id: &Id,
    current: &[u8],
) -> Result<Result<(), AccountError>, StoreError> {
    Ok(verify_current(store, id, current)?.map(|_| ()))
}

/// Delete a member and every row of theirs, in one transaction. Returns whether the
/// member existed.
pub fn delete_member(store: &Store, id: &Id) -> Result<bool, StoreError> {
    let txn = store.write()?;
    let existed = delete_member_in(&txn, id)?;
    txn.commit()?;
    Ok(existed)
}

/// The deletion itself, inside a caller's transaction.
pub fn delete_member_in(txn: &redb::WriteTransaction, id: &Id) -> Result<bool, StoreError> {
    let mut users = txn.open_table(USERS)?;
    let Some(bytes) = users.remove(id)? else {
        return Ok(false);
    };
    let record = UserRecord::decode(bytes.value())?;
    drop(bytes);
    // Groups re-wrap keys for the remaining members: they read `USERS` too.
    drop(users);
    let name = Username::from_stored(&record.username);
    txn.open_table(USERNAME_TO_USER)?.remove(name.as_str())?;
    txn.open_table(SKELETON_TO_USER)?.remove(name.skeleton())?;
    crate::files::delete_member_files_in(txn, id)?;
    crate::connections::delete_member_in(txn, id)?;
    crate::groups::delete_member_in(txn, id)?;
    crate::chat::signing::delete_member_in(txn, id)?;
    crate::e2e::store::delete_member_in(txn, id)?;
    Ok(true)
}

/// Whether an account last used on `last_login_day` has been inactive for more than
/// `days` full days at `now`. Counting from the end of that day means nobody is deleted
/// early because the file only keeps the day.
pub fn inactive(last_login_day: i64, now: UnixTime, days: u32) -> bool {
    let deadline = (last_login_day + 1 + i64::from(days)).saturating_mul(SECONDS_PER_DAY);
    now >= deadline
}

/// Delete every account inactive for more than `days` days; returns their ids.
pub fn sweep_inactive(store: &Store, now: UnixTime, days: u32) -> Result<Vec<Id>, StoreError> {
    let stale: Vec<Id> = {
        let txn = store.read()?;
        let users = txn.open_table(USERS)?;
        let mut stale = Vec::new();
        for row in users.iter()? {
            let (k, v) = row?;
            let record = UserRecord::decode(v.value())?;
            if inactive(record.last_login_day, now, days) {
                stale.push(k.value());
            }
        }
        stale
    };
    if stale.is_empty() {
        return Ok(stale);
    }
    let txn = store.write()?;
    let mut deleted = Vec::with_capacity(stale.len());
    for id in stale {
        // Re-check inside the write transaction: the member may have logged in meanwhile.
        let fresh = {
            let users = txn.open_table(USERS)?;
            users
                .get(id)?
                .map(|b| UserRecord::decode(b.value()))
                .transpose()?
        };
        if fresh.is_some_and(|r| inactive(r.last_login_day, now, days))
            && delete_member_in(&txn, &id)?
        {
            deleted.push(id);
        }
    }
    txn.commit()?;
    Ok(deleted)
}

/// Number of members (for status).
pub fn count_members(store: &Store) -> Result<u64, StoreError> {
    use redb::ReadableTableMetadata;
    let txn = store.read()?;
    Ok(txn.open_table(USERS)?.len()?)
}

/// Keep a password in a zeroizing buffer.
pub fn secret_bytes(s: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(s.as_bytes().to_vec())
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
