//! A login attempt, from the password to a durable outcome.
//!
//! One argon2id computation and two constant-time comparisons, whoever the name belongs
//! to (nobody, a member, a decoy) and whichever password was given; before it, when the
//! password itself came (no JavaScript), the PBKDF2 that makes it a login secret, for a
//! name nobody has as for a member (`secret.rs`). Then, before the
//! answer leaves, every attempt that does not log in writes durably, and all of them the
//! same way:
//!
//! | outcome | key file | redb (one write transaction, fsync) | key file |
//! |---|---|---|---|
//! | destruction password | a new key for the decoy | the member's record re-read, replaced by the decoy | old key overwritten with zeros |
//! | wrong password (member or decoy) | the member's key rewritten as it is | the record re-read, written back as it is | the key rewritten again |
//! | unknown name | the dummy slot rewritten | a dummy row written | the dummy slot rewritten again |
//!
//! and each of them builds (and the last two throw away) a decoy's credentials. So the
//! destruction is on disk before its answer is sent, nothing can log into the account
//! afterwards, and the answer's time does not tell it from a failure. A success re-reads
//! the record in the transaction that notes the login and fails if the credentials it
//! checked are no longer there (a destruction or password change that committed first).

use redb::ReadableTable;

use super::credentials;
use super::secret::{self, Presented};
use super::{
    Policy, Username, activity_day, crypto_to_store, day_of, find_user, inactive,
    update_if_unchanged,
};
use crate::clock::UnixTime;
use crate::crypto::SecretKey;
use crate::store::erasure::DUMMY_SLOT;
use crate::store::tables::META;
use crate::store::{Id, Record, Store, StoreError, UserRecord};

/// META key of the row that failed logins for unknown names rewrite.
const DUMMY_ROW: &str = "login_dummy";

/// What a login attempt found.
pub enum LoginOutcome {
    /// The password matched.
    Success {
        user_id: Id,
        username: String,
        data_key: SecretKey,
        /// The sealed credentials that matched (see [`still_current`]).
        credentials_sealed: String,
    },
    /// The destruction password matched: the decoy is in place, durably; the member's
    /// data is erased next (`departure::finish_departure`).
    Destroyed(Id),
    /// Nothing matched, nobody has that name, or the account cannot log in any more.
    Failure,
}

impl std::fmt::Debug for LoginOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoginOutcome::Success { .. } => "Success(..)",
            LoginOutcome::Destroyed(_) => "Destroyed(..)",
            LoginOutcome::Failure => "Failure",
        })
    }
}

enum Verdict {
    Success,
    Destroy,
    Failure,
}

/// Check a login attempt and make its outcome durable (see the module documentation).
pub fn check_login(
    store: &Store,
    policy: &Policy,
    username: &Username,
    presented: &Presented,
    now: UnixTime,
) -> Result<LoginOutcome, StoreError> {
    let pepper = policy.pepper();
    let name_salt = secret::salt(&secret::installation_secret(store)?, username.as_str());
    let found = find_user(store, username)?;
    let opened = match &found {
        Some((_, record)) => super::open_credentials(store, record)?,
        None => None,
    };
    let creds = opened.as_ref().unwrap_or(&policy.dummy);
    let check =
        credentials::check(creds, presented, &name_salt, pepper).map_err(crypto_to_store)?;
    // The decoy this attempt would leave, made whatever the outcome.
    let decoy = credentials::decoy(creds, pepper).map_err(crypto_to_store)?;
    let like = found
        .as_ref()
        .map_or(policy.dummy_private.as_str(), |(_, r)| {
            r.delivery_private_sealed.as_str()
        });
    let decoy_private = credentials::look_alike_token(like).map_err(crypto_to_store)?;
    let usable = match (&found, &opened) {
        (Some((_, r)), Some(_)) => {
            !r.erasing && !inactive(activity_day(r), now, policy.inactivity_days)
        }
        _ => false,
    };
    let verdict = match (usable, check.destruction, check.password) {
        (true, true, _) => Verdict::Destroy,
        (true, false, true) => Verdict::Success,
        _ => Verdict::Failure,
    };
    let Some((id, seen)) = found else {
        // Nobody has the name: the same writes, on the dummy slot and row.
        store.keys().rewrite(DUMMY_SLOT)?;
        let fake = UserRecord {
            username: String::new(),
            delivery_public: Vec::new(),
            delivery_private_sealed: decoy_private,
            last_login_day: 0,
            kept_out_day: 0,
            erasure_slot: DUMMY_SLOT,
            credentials_sealed: decoy.seal(&SecretKey::generate())?,
            erasing: false,
        };
        let txn = store.write()?;
        {
            let mut meta = txn.open_table(META)?;
            let _previous = meta.get(DUMMY_ROW)?.map(|v| v.value().len());
            meta.insert(DUMMY_ROW, fake.encode()?.as_slice())?;
        }
        txn.commit()?;
        store.keys().rewrite(DUMMY_SLOT)?;
        return Ok(LoginOutcome::Failure);
    };
    match verdict {
        Verdict::Success => {
            let data_key = check.data_key(creds, pepper).map_err(crypto_to_store)?;
            let txn = store.write()?;
            let today = day_of(now);
            let still = update_if_unchanged(&txn, &id, &seen, |c| {
                let new_day = c.last_login_day != today;
                c.last_login_day = today;
                new_day
            })?;
            if !still {
                return Ok(LoginOutcome::Failure);
            }
            txn.commit()?;
            Ok(LoginOutcome::Success {
                user_id: id,
                username: seen.username,
                data_key,
                credentials_sealed: seen.credentials_sealed,
            })
        }
        Verdict::Destroy => {
            let (slot, key) = store.keys().allocate()?;
            let sealed = decoy.seal(&key)?;
            let txn = store.write()?;
            let replaced = update_if_unchanged(&txn, &id, &seen, |c| {
                c.erasure_slot = slot;
                c.credentials_sealed = sealed;
                c.delivery_private_sealed = decoy_private;
                c.erasing = true;
                true
            })?;
            if !replaced {
                drop(txn);
                store.keys().erase(slot)?;
                return Ok(LoginOutcome::Failure);
            }
            txn.commit()?;
            store.keys().erase(seen.erasure_slot)?;
            Ok(LoginOutcome::Destroyed(id))
        }
        Verdict::Failure => {
            // The same writes as a destruction, changing nothing: the record is read and
            // written back as it is.
            store.keys().rewrite(seen.erasure_slot)?;
            let _thrown_away = decoy.seal(&SecretKey::generate())?;
            let txn = store.write()?;
            update_if_unchanged(&txn, &id, &seen, |_| true)?;
            txn.commit()?;
            store.keys().rewrite(seen.erasure_slot)?;
            Ok(LoginOutcome::Failure)
        }
    }
}

/// Whether `id` still holds the credentials a login checked (`credentials_sealed`), and
/// can log in: checked after the session is made, so that a destruction or password change
/// that committed in between ends it.
pub fn still_current(store: &Store, id: &Id, credentials_sealed: &str) -> Result<bool, StoreError> {
    Ok(super::load_user(store, id)?
        .is_some_and(|r| r.credentials_sealed == credentials_sealed && !r.erasing))
}
