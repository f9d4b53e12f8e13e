//! Members leaving: the decoy, erasure, the deletion cascade, inactivity, and the pepper
//! moving in.
//!
//! A member who departs — by the destruction password, by deleting their account, or by
//! an operator's removal — is replaced by a *decoy*: the same id, name and public key,
//! credentials sealed under a new erasure key that match no password, and no data. The old
//! erasure key is overwritten, so nothing of the member opens any more (see
//! `store/erasure.rs`); then every feature's eraser runs (`Removal::Decoy`), in the
//! background after a destruction, resumed at start-up after a crash. To anyone else the
//! decoy is an account that never answers. The sweeper removes it, like any account, once
//! inactivity would have removed the member (counted from their last login), and then the
//! name is free (`Removal::Full`).

use std::collections::HashSet;

use redb::WriteTransaction;

use super::gate::NameKey;
use super::passwords::reseal;
use super::{
    AccountError, Policy, Username, activity_day, credentials, crypto_to_store, inactive,
    open_credentials, record_in, users_where,
};
use crate::clock::UnixTime;
use crate::crypto::master::Pepper;
use crate::store::cascade::Removal;
use crate::store::tables::{META, SKELETON_TO_USER, USERNAME_TO_USER, USERS};
use crate::store::{Id, Record, Store, StoreError, UserRecord};

/// META key of the value that tells whether the configured master key is the one the
/// accounts were peppered with.
const PEPPER_CHECK: &str = "pepper_check";

/// Replace a member by their decoy and erase their data, now: what their own deletion,
/// and an operator's removal, do. Returns whether there was such a member.
pub fn depart(store: &Store, policy: &Policy, id: &Id) -> Result<bool, StoreError> {
    loop {
        let Some(record) = super::load_user(store, id)? else {
            return Ok(false);
        };
        if record.erasing {
            break;
        }
        let creds = open_credentials(store, &record)?;
        let decoy = credentials::decoy(creds.as_ref().unwrap_or(&policy.dummy), policy.pepper())
            .map_err(crypto_to_store)?;
        let private = credentials::look_alike_token(&record.delivery_private_sealed)
            .map_err(crypto_to_store)?;
        match reseal(store, id, &record, &decoy, |r| {
            r.delivery_private_sealed = private;
            r.erasing = true;
        })? {
            Ok(_) => break,
            // Changed meanwhile (a password change, a login): read it again.
            Err(AccountError::Conflict) => continue,
            Err(_) => return Ok(false),
        }
    }
    finish_departure(store, policy, id)?;
    Ok(true)
}

/// Erase what a departed member left (every feature's eraser, `Removal::Decoy`) and
/// clear the decoy's mark, in one transaction. Nothing happens for a member who is not
/// departing.
pub fn finish_departure(store: &Store, policy: &Policy, id: &Id) -> Result<bool, StoreError> {
    let txn = store.write()?;
    let record = record_in(&txn.open_table(USERS)?, id)?;
    let Some(mut record) = record.filter(|r| r.erasing) else {
        return Ok(false);
    };
    policy.cascade.run(&txn, id, Removal::Decoy)?;
    record.erasing = false;
    txn.open_table(USERS)?
        .insert(id, record.encode()?.as_slice())?;
    txn.commit()?;
    store.keys().ensure_reserve()?;
    Ok(true)
}

/// Finish every departure that a crash interrupted (at start-up). Returns the members.
pub fn finish_departures(store: &Store, policy: &Policy) -> Result<Vec<Id>, StoreError> {
    let pending = users_where(store, |r| Ok(r.erasing))?;
    for (id, _) in &pending {
        finish_departure(store, policy, id)?;
    }
    Ok(pending.into_iter().map(|(id, _)| id).collect())
}

/// Remove a member entirely inside the caller's transaction: their record, their name, and
/// every feature's rows (`Removal::Full`). Returns the erasure slot to erase once the
/// transaction has committed.
fn remove_in(txn: &WriteTransaction, policy: &Policy, id: &Id) -> Result<Option<u32>, StoreError> {
    let record = {
        let mut users = txn.open_table(USERS)?;
        let removed = users.remove(id)?;
        match removed {
            Some(bytes) => UserRecord::decode(bytes.value())?,
            None => return Ok(None),
        }
    };
    let name = Username::from_stored(&record.username);
    txn.open_table(USERNAME_TO_USER)?.remove(name.as_str())?;
    txn.open_table(SKELETON_TO_USER)?.remove(name.skeleton())?;
    policy.cascade.run(txn, id, Removal::Full)?;
    Ok(Some(record.erasure_slot))
}

/// Remove every account (and decoy) inactive for more than `policy.inactivity_days`
/// days; returns their ids.
pub fn sweep_inactive(
    store: &Store,
    policy: &Policy,
    now: UnixTime,
) -> Result<Vec<Id>, StoreError> {
    let days = policy.inactivity_days;
    let stale = users_where(store, |r| Ok(inactive(activity_day(r), now, days)))?;
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    let txn = store.write()?;
    let mut deleted = Vec::with_capacity(stale.len());
    let mut slots = Vec::with_capacity(stale.len());
    for (id, _) in stale {
        // Re-check inside the write transaction: the member may have logged in meanwhile.
        let fresh = record_in(&txn.open_table(USERS)?, &id)?;
        if fresh.is_some_and(|r| inactive(activity_day(&r), now, days))
            && let Some(slot) = remove_in(&txn, policy, &id)?
        {
            deleted.push(id);
            slots.push(slot);
        }
    }
    txn.commit()?;
    for slot in slots {
        store.keys().erase(slot)?;
    }
    Ok(deleted)
}

/// Note that login attempts for these names (as the login gate keys them) were turned
/// away today, so that inactivity counts from today for them.
pub fn note_kept_out(
    store: &Store,
    names: &HashSet<NameKey>,
    key_of: impl Fn(&str) -> NameKey,
    today: i64,
) -> Result<usize, StoreError> {
    if names.is_empty() {
        return Ok(0);
    }
    let hit = users_where(store, |r| {
        Ok(r.kept_out_day != today && names.contains(&key_of(&r.username)))
    })?;
    if hit.is_empty() {
        return Ok(0);
    }
    let txn = store.write()?;
    let mut noted = 0;
    {
        let mut users = txn.open_table(USERS)?;
        for (id, _) in hit {
            if let Some(mut record) = record_in(&users, &id)? {
                record.kept_out_day = today;
                users.insert(id, record.encode()?.as_slice())?;
                noted += 1;
            }
        }
    }
    txn.commit()?;
    Ok(noted)
}

/// Why the accounts cannot be served with the configured master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PepperError {
    #[error(
        "the accounts in this database are protected by a master key, but none is configured: \
         set master_key_credential or master_key_file (without it, nobody can log in)"
    )]
    Missing,
    #[error(
        "the configured master key is not the one the accounts in this database were \
         protected with (without the right one, nobody can log in)"
    )]
    Wrong,
}

/// At start-up: check that the configured master key (if any) is the one the accounts
/// were peppered with, and move accounts that are not peppered yet to the peppered form
/// (without their passwords: see `credentials::apply_pepper`), each under a new erasure
/// key, in one transaction. Returns how many accounts moved.
pub fn prepare_pepper(
    store: &Store,
    pepper: Option<&Pepper>,
) -> Result<Result<usize, PepperError>, StoreError> {
    let stored: Option<Vec<u8>> = {
        let txn = store.read()?;
        let meta = txn.open_table(META)?;
        meta.get(PEPPER_CHECK)?.map(|v| v.value().to_vec())
    };
    let Some(pepper) = pepper else {
        return Ok(match stored {
            Some(_) => Err(PepperError::Missing),
            None => Ok(0),
        });
    };
    let check = pepper.check_value();
    if let Some(stored) = &stored
        && stored.as_slice() != check.as_slice()
    {
        return Ok(Err(PepperError::Wrong));
    }
    // Every account not yet peppered (all of them the first time; none after, unless a
    // backup from before was restored).
    let mut moves = Vec::new();
    for (id, record) in users_where(store, |_| Ok(true))? {
        let Some(creds) = open_credentials(store, &record)? else {
            continue;
        };
        if let Some(peppered) =
            credentials::apply_pepper(&creds, pepper).map_err(crypto_to_store)?
        {
            moves.push((id, record, peppered));
        }
    }
    let mut sealed = Vec::with_capacity(moves.len());
    for (id, record, peppered) in &moves {
        let (slot, key) = store.keys().allocate()?;
        sealed.push((*id, record.erasure_slot, slot, peppered.seal(&key)?));
    }
    let txn = store.write()?;
    {
        let mut users = txn.open_table(USERS)?;
        for (id, _, slot, token) in &sealed {
            if let Some(mut record) = record_in(&users, id)? {
                record.erasure_slot = *slot;
                record.credentials_sealed = token.clone();
                users.insert(id, record.encode()?.as_slice())?;
            }
        }
        txn.open_table(META)?
            .insert(PEPPER_CHECK, check.as_slice())?;
    }
    txn.commit()?;
    for (_, old, _, _) in &sealed {
        store.keys().erase(*old)?;
    }
    store.keys().ensure_reserve()?;
    Ok(Ok(sealed.len()))
}

/// How many records' credentials do not open (erased keys, or a key file that is not the
/// one of this database): told to the operator at start-up.
pub fn count_unopenable(store: &Store) -> Result<usize, StoreError> {
    Ok(users_where(store, |r| Ok(open_credentials(store, r)?.is_none()))?.len())
}
