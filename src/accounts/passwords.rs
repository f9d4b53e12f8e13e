//! Registration and password changes. Every change of a member's credentials seals them
//! under a *new* erasure key and erases the old one ([`reseal`]), so that no copy of the
//! old credentials that redb leaves in free pages can ever be opened: a password that was
//! changed because someone else knew it opens nothing from the file afterwards.

use redb::ReadableTable;

use super::credentials::{self, Check, Refused, Which};
use super::secret::{self, Presented};
use super::{AccountError, Policy, Username, crypto_to_store, day_of, open_credentials};
use crate::clock::UnixTime;
use crate::crypto::rsa_keys::RsaPrivate;
use crate::crypto::{SecretKey, random_bytes};
use crate::store::tables::{SKELETON_TO_USER, USERNAME_TO_USER, USERS};
use crate::store::{Credentials, Id, Record, Store, StoreError, UserRecord};

/// Create an account. Runs argon2id twice (password and destruction password, each as a
/// login secret: the browser's, or derived here) and takes a pre-generated delivery key
/// pair.
pub fn create_account(
    store: &Store,
    policy: &Policy,
    username: &Username,
    password: &Presented,
    destruction: &Presented,
    delivery: RsaPrivate,
    now: UnixTime,
) -> Result<Result<Id, AccountError>, StoreError> {
    let data_key = SecretKey::generate();
    let name_salt = secret::salt(&secret::installation_secret(store)?, username.as_str());
    let Some(creds) = credentials::create(
        password,
        destruction,
        &name_salt,
        policy.login_iterations,
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

/// What else a credentials change writes in its commit (e.g. the end-to-end key ring the
/// browser wrapped again under the new password): refusing drops the whole change.
pub type Also<'a> =
    Box<dyn FnOnce(&redb::WriteTransaction) -> Result<Result<(), AccountError>, StoreError> + 'a>;

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
    reseal_with(store, id, seen, creds, change, None)
}

fn reseal_with(
    store: &Store,
    id: &Id,
    seen: &UserRecord,
    creds: &Credentials,
    change: impl FnOnce(&mut UserRecord),
    also: Option<Also<'_>>,
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
    let also_ok = match (swapped, also) {
        (true, Some(f)) => f(&txn)?,
        _ => Ok(()),
    };
    if let Err(e) = also_ok {
        drop(txn);
        store.keys().erase(slot)?;
        return Ok(Err(e));
    }
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
    current: &Presented,
) -> Result<Result<(UserRecord, Credentials, Check), AccountError>, StoreError> {
    let Some(record) = super::load_user(store, id)? else {
        return Ok(Err(AccountError::WrongPassword));
    };
    let Some(creds) = open_credentials(store, &record)? else {
        return Ok(Err(AccountError::WrongPassword));
    };
    let name_salt = name_salt(store, &record)?;
    let check = credentials::check(&creds, current, &name_salt, policy.pepper())
        .map_err(crypto_to_store)?;
    if !check.password || record.erasing {
        return Ok(Err(AccountError::WrongPassword));
    }
    Ok(Ok((record, creds, check)))
}

/// The salt of a member's name.
fn name_salt(store: &Store, record: &UserRecord) -> Result<[u8; 16], StoreError> {
    Ok(secret::salt(
        &secret::installation_secret(store)?,
        &record.username,
    ))
}

/// Change one password (authorised by the current one); `also` writes in the same commit.
pub fn change(
    store: &Store,
    policy: &Policy,
    id: &Id,
    current: &Presented,
    which: Which,
    new: &Presented,
    also: Option<Also<'_>>,
) -> Result<Result<(), AccountError>, StoreError> {
    let (record, creds, check) = match verify_current(store, policy, id, current)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let name_salt = name_salt(store, &record)?;
    let updated = match credentials::replace(
        &creds,
        current,
        &check,
        which,
        new,
        &name_salt,
        policy.login_iterations,
        policy.pepper(),
    )
    .map_err(crypto_to_store)?
    {
        Ok(u) => u,
        Err(Refused::SameAsOther) => return Ok(Err(AccountError::SamePasswords)),
        Err(Refused::NeedsPasswords) => return Ok(Err(AccountError::OlderLogin)),
    };
    Ok(reseal_with(store, id, &record, &updated, |_| {}, also)?.map(|_| ()))
}

/// Change the password: the data key is re-wrapped under the new password's key.
pub fn change_password(
    store: &Store,
    policy: &Policy,
    id: &Id,
    current: &Presented,
    new: &Presented,
) -> Result<Result<(), AccountError>, StoreError> {
    change(store, policy, id, current, Which::Password, new, None)
}

/// Change the destruction password (authorised by the current password). An account
/// that predates login secrets moves to them here when both came as passwords.
pub fn change_destruction_password(
    store: &Store,
    policy: &Policy,
    id: &Id,
    current: &Presented,
    new_destruction: &Presented,
) -> Result<Result<(), AccountError>, StoreError> {
    change(
        store,
        policy,
        id,
        current,
        Which::Destruction,
        new_destruction,
        None,
    )
}

/// Check the password before a member deletes their own account.
pub fn check_password_for_deletion(
    store: &Store,
    policy: &Policy,
    id: &Id,
    current: &Presented,
) -> Result<Result<(), AccountError>, StoreError> {
    Ok(verify_current(store, policy, id, current)?.map(|_| ()))
}

/// Whether a member's account still uses the scheme that predates login secrets.
pub fn uses_older_login(store: &Store, id: &Id) -> Result<bool, StoreError> {
    let Some(record) = super::load_user(store, id)? else {
        return Ok(false);
    };
    Ok(open_credentials(store, &record)?
        .is_some_and(|c| matches!(c.scheme, crate::store::CredentialScheme::Argon2Hkdf { .. })))
}
