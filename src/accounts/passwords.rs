//! Registration and password changes. Every change of a member's credentials seals them
//! under a *new* erasure key and erases the old one ([`reseal`]), so that no copy of the
//! old credentials that redb leaves in free pages can ever be opened: a password that was
//! changed because someone else knew it opens nothing from the file afterwards.

use redb::ReadableTable;

use super::credentials::{self, Check, Which};
use super::{AccountError, Policy, Username, crypto_to_store, day_of, open_credentials};
use crate::clock::UnixTime;
use crate::crypto::rsa_keys::RsaPrivate;
use crate::crypto::{SecretKey, random_bytes};
use crate::store::tables::{SKELETON_TO_USER, USERNAME_TO_USER, USERS};
use crate::store::{Credentials, Id, Record, Store, StoreError, UserRecord};

/// Create an account. Runs argon2id twice (password and destruction password) and takes
/// a pre-generated delivery key pair.
pub fn create_account(
    store: &Store,
    policy: &Policy,
    username: &Username,
    password: &[u8],
    destruction: &[u8],
    delivery: RsaPrivate,
    now: UnixTime,
) -> Result<Result<Id, AccountError>, StoreError> {
    let data_key = SecretKey::generate();
    let Some(creds) = credentials::create(
        password,
        destruction,
        policy.kdf,
        &data_key,
        policy.pepper(),
    )
    .map_err(crypto_to_store)?
    else {
        return Ok(Err(AccountError::SamePasswords));
    };
    let private_der = delivery.to_der().map_err(crypto_to_store)?;
    let delivery_public = delivery.public().to_der().map_err(crypto_to_store)?;
    let delivery_private_sealed = data_key.seal(&private_der).map_err(crypto_to_store)?;
    let (slot, key) = store.keys().allocate()?;
    let record = UserRecord {
        username: username.as_str().to_owned(),
        delivery_public,
        delivery_private_sealed,
        last_login_day: day_of(now),
        kept_out_day: 0,
        erasure_slot: slot,
        credentials_sealed: creds.seal(&key)?,
        erasing: false,
    };
    let id: Id = random_bytes();
    let txn = store.write()?;
    let taken = {
        let mut names = txn.open_table(USERNAME_TO_USER)?;
        let mut skeletons = txn.open_table(SKELETON_TO_USER)?;
        if names.get(username.as_str())?.is_some() || skeletons.get(username.skeleton())?.is_some()
        {
            true
        } else {
            names.insert(username.as_str(), id)?;
            skeletons.insert(username.skeleton(), id)?;
            txn.open_table(USERS)?
                .insert(id, record.encode()?.as_slice())?;
            false
        }
    };
    if taken {
        drop(txn);
        store.keys().erase(slot)?;
        return Ok(Err(AccountError::Taken));
    }
    txn.commit()?;
    store.keys().ensure_reserve()?;
    Ok(Ok(id))
}

/// Seal `creds` under a new erasure key and put them in place of what `seen` holds, if
/// nobody changed the record since `seen` was read (compare-and-swap); `change` edits the
/// rest of the record in the same commit. The old key is erased after the commit.
pub(super) fn reseal(
    store: &Store,
    id: &Id,
    seen: &UserRecord,
    creds: &Credentials,
    change: impl FnOnce(&mut UserRecord),
) -> Result<Result<UserRecord, AccountError>, StoreError> {
    let (slot, key) = store.keys().allocate()?;
    let sealed = creds.seal(&key)?;
    let txn = store.write()?;
    let mut updated = None;
    let swapped = super::update_if_unchanged(&txn, id, seen, |c| {
        c.erasure_slot = slot;
        c.credentials_sealed = sealed;
        change(c);
        updated = Some(c.clone());
        true
    })?;
    match updated.filter(|_| swapped) {
        Some(record) => {
            txn.commit()?;
            store.keys().erase(seen.erasure_slot)?;
            Ok(Ok(record))
        }
        None => {
            drop(txn);
            store.keys().erase(slot)?;
            Ok(Err(AccountError::Conflict))
        }
    }
}

/// Verify the current password of a member.
fn verify_current(
    store: &Store,
    policy: &Policy,
    id: &Id,
    current: &[u8],
) -> Result<Result<(UserRecord, Credentials, Check), AccountError>, StoreError> {
    let Some(record) = super::load_user(store, id)? else {
        return Ok(Err(AccountError::WrongPassword));
    };
    let Some(creds) = open_credentials(store, &record)? else {
        return Ok(Err(AccountError::WrongPassword));
    };
    let check = credentials::check(&creds, current, policy.pepper()).map_err(crypto_to_store)?;
    if !check.password || record.erasing {
        return Ok(Err(AccountError::WrongPassword));
    }
    Ok(Ok((record, creds, check)))
}

fn change(
    store: &Store,
    policy: &Policy,
    id: &Id,
    current: &[u8],
    which: Which,
    new: &[u8],
) -> Result<Result<(), AccountError>, StoreError> {
    let (record, creds, check) = match verify_current(store, policy, id, current)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let Some(updated) = credentials::replace(&creds, &check, which, new, policy.pepper())
        .map_err(crypto_to_store)?
    else {
        return Ok(Err(AccountError::SamePasswords));
    };
    Ok(reseal(store, id, &record, &updated, |_| {})?.map(|_| ()))
}

/// Change the password: the data key is re-wrapped under the new password's key.
pub fn change_password(
    store: &Store,
    policy: &Policy,
    id: &Id,
    current: &[u8],
    new: &[u8],
) -> Result<Result<(), AccountError>, StoreError> {
    change(store, policy, id, current, Which::Password, new)
}

/// Change the destruction password (authorised by the current password).
pub fn change_destruction_password(
    store: &Store,
    policy: &Policy,
    id: &Id,
    current: &[u8],
    new_destruction: &[u8],
) -> Result<Result<(), AccountError>, StoreError> {
    change(
        store,
        policy,
        id,
        current,
        Which::Destruction,
        new_destruction,
    )
}

/// Check the password before a member deletes their own account.
pub fn check_password_for_deletion(
    store: &Store,
    policy: &Policy,
    id: &Id,
    current: &[u8],
) -> Result<Result<(), AccountError>, StoreError> {
    Ok(verify_current(store, policy, id, current)?.map(|_| ()))
}
