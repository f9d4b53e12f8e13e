//! Group keys.
//!
//! - **Epoch keys.** A group has one Fernet key per membership epoch. Every change of
//!   membership (a member joins, leaves, is removed, or their account is deleted) starts a
//!   new epoch with a fresh key, wrapped for each member of the new epoch with their
//!   delivery public key (RSA-OAEP-SHA256 through `crypto::hybrid`): that needs nobody's
//!   session, so it works while members are offline and when an account is deleted in the
//!   background. The first time a member uses a wrapped key, the server opens it with their
//!   delivery private key (unsealed by their session's `data_key`) and re-seals it under
//!   their `data_key`, so later reads need no RSA operation. A member holds the keys of the
//!   epochs since they joined, and no other: a new member cannot read what was sent before,
//!   and a departed member's rows are deleted, while later epochs are never wrapped for them.
//! - **Member secrets.** Each member's signing private key for this group (their own pair,
//!   in the scheme they chose, never used elsewhere) and the group's *name key* (a Fernet
//!   key that seals the group's name), sealed under the member's `data_key`. The name key
//!   does not change with epochs: a departed member already knew the name.
//!
//! - **Who is who.** The member secrets also hold a [`Book`]: for every member this member
//!   has seen in the group, the digest of their verifying key as it was then. Reading the
//!   group checks every membership record's key against it; a key rewritten in the file
//!   is not trusted (that member's messages do not verify), and a member not yet in the
//!   book is added on first sight (trust on first use, while the reader is logged in).
//!
//! Sealed member-secrets payload: see `connections::keys::KeyAndSigner` (the name key,
//! the signing key, the book as the trust, and `legacy_upto`).

use std::collections::BTreeMap;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::connections::keys::{KeyAndSigner, Sealed, SigningKey, VerifyingKey};
use crate::crypto::rsa_keys::RsaPublic;
use crate::crypto::{CryptoError, SecretKey, hybrid};
use crate::store::tables::{GROUP_EPOCH_KEYS, GROUP_MEMBER_SECRETS, USERS};
use crate::store::{Id, Record, Store, StoreError, UserRecord};

/// The stored value of `GROUP_EPOCH_KEYS`.
#[derive(Clone, Serialize, Deserialize)]
pub struct EpochKeyRecord {
    pub sealed: Sealed,
}

impl std::fmt::Debug for EpochKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EpochKeyRecord(..)")
    }
}

impl Record for EpochKeyRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "group epoch key";
}

impl EpochKeyRecord {
    /// Wrap `key` for a member who may be offline.
    pub fn to_delivery(delivery: &RsaPublic, key: &SecretKey) -> Result<Self, CryptoError> {
        Ok(Self {
            sealed: Sealed::ToDelivery(hybrid::seal_to(delivery, key.expose())?),
        })
    }

    /// Wrap `key` under a member's `data_key` (the member is here).
    pub fn under(data_key: &SecretKey, key: &SecretKey) -> Result<Self, CryptoError> {
        Ok(Self {
            sealed: Sealed::UnderDataKey(data_key.wrap(key)?),
        })
    }
}

/// The stored value of `GROUP_MEMBER_SECRETS`: a Fernet token under the member's
/// `data_key`.
#[derive(Clone, Serialize, Deserialize)]
pub struct MemberSecretsRecord {
    pub token: String,
}

impl std::fmt::Debug for MemberSecretsRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberSecretsRecord(..)")
    }
}

impl Record for MemberSecretsRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "group member secrets";
}

/// Who a member trusts in a group: each member's id and the digest of the verifying key
/// they had when this member first saw them (see [`member_key_digest`]).
pub type Book = BTreeMap<Id, [u8; 32]>;

/// The digest of `member`'s verifying key in `group`, as a [`Book`] keeps it.
pub fn member_key_digest(group: &Id, member: &Id, key: &VerifyingKey) -> [u8; 32] {
    let mut bytes = Vec::with_capacity(1024);
    bytes.extend_from_slice(b"ghostcache-member-key-v1\0");
    bytes.extend_from_slice(group);
    bytes.extend_from_slice(member);
    key.encode_into(&mut bytes);
    crate::crypto::sha256(&bytes)
}

fn encode_book(book: &Book) -> Vec<u8> {
    let mut out = Vec::with_capacity(book.len() * 48);
    for (member, digest) in book {
        out.extend_from_slice(member);
        out.extend_from_slice(digest);
    }
    out
}

fn decode_book(bytes: &[u8]) -> Result<Book, CryptoError> {
    if !bytes.len().is_multiple_of(48) {
        return Err(CryptoError::BadKey);
    }
    let mut book = Book::new();
    for entry in bytes.chunks_exact(48) {
        let (member, digest) = entry.split_at(16);
        book.insert(
            member.try_into().map_err(|_| CryptoError::BadKey)?,
            digest.try_into().map_err(|_| CryptoError::BadKey)?,
        );
    }
    Ok(book)
}

/// A member's secrets of one group, opened: the group's name key, their signing key for
/// the group, the [`Book`] of members' keys they vouch for, and how far older message
/// formats are accepted. Zeroized on drop.
pub struct MemberSecrets {
    inner: KeyAndSigner,
}

impl std::fmt::Debug for MemberSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberSecrets(..)")
    }
}

impl MemberSecrets {
    pub fn new(
        name_key: SecretKey,
        signing: &SigningKey,
        book: &Book,
    ) -> Result<Self, CryptoError> {
        Ok(Self {
            inner: KeyAndSigner::new(name_key, signing, encode_book(book))?,
        })
    }

    /// The key that seals the group's name.
    pub fn name_key(&self) -> &SecretKey {
        &self.inner.key
    }

    /// Parse the signing key (only when signing).
    pub fn signing_key(&self) -> Result<SigningKey, CryptoError> {
        self.inner.signing_key()
    }

    /// Messages in older formats are accepted up to this sequence number.
    pub fn legacy_upto(&self) -> u64 {
        self.inner.legacy_upto
    }

    /// The members' keys this member vouches for; `None` for secrets sealed by an
    /// earlier version, which vouch for nothing yet.
    pub fn book(&self) -> Result<Option<Book>, CryptoError> {
        self.inner.trust.as_deref().map(decode_book).transpose()
    }

    /// Vouch for `book` (and, for secrets of an earlier version, accept older message
    /// formats up to `legacy_upto`).
    pub fn set_book(&mut self, book: &Book, legacy_upto: Option<u64>) {
        self.inner.trust = Some(encode_book(book));
        if let Some(upto) = legacy_upto {
            self.inner.legacy_upto = upto;
        }
    }

    pub fn seal_under(&self, data_key: &SecretKey) -> Result<MemberSecretsRecord, CryptoError> {
        Ok(MemberSecretsRecord {
            token: data_key.seal(&self.inner.encode()?)?,
        })
    }

    fn open(record: &MemberSecretsRecord, data_key: &SecretKey) -> Result<Self, CryptoError> {
        let payload = data_key.open(&record.token)?;
        Ok(Self {
            inner: KeyAndSigner::decode(&payload)?,
        })
    }
}

/// Store re-sealed member secrets unless the row changed (or went) since `seen` was read.
pub fn replace_member_secrets_if_unchanged(
    store: &Store,
    group: &Id,
    member: &Id,
    seen: &MemberSecretsRecord,
    new: &MemberSecretsRecord,
) -> Result<(), StoreError> {
    let txn = store.write()?;
    {
        let mut table = txn.open_table(GROUP_MEMBER_SECRETS)?;
        let current = table
            .get((*group, *member))?
            .map(|b| MemberSecretsRecord::decode(b.value()))
            .transpose()?;
        if current.is_some_and(|c| c.token == seen.token) {
            table.insert((*group, *member), new.encode()?.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn corrupt(e: CryptoError) -> StoreError {
    StoreError::Corrupt(format!("group keys: {e}"))
}

/// `member`'s secrets of `group`, opened with their `data_key`; `None` when they have none
/// (not a current member).
pub fn open_member_secrets(
    store: &Store,
    group: &Id,
    member: &Id,
    data_key: &SecretKey,
) -> Result<Option<MemberSecrets>, StoreError> {
    let txn = store.read()?;
    let table = txn.open_table(GROUP_MEMBER_SECRETS)?;
    let Some(bytes) = table.get((*group, *member))? else {
        return Ok(None);
    };
    let record = MemberSecretsRecord::decode(bytes.value())?;
    MemberSecrets::open(&record, data_key)
        .map(Some)
        .map_err(corrupt)
}

/// Open a member-secrets row with the member's `data_key`.
pub fn open_member_secrets_record(
    record: &MemberSecretsRecord,
    data_key: &SecretKey,
) -> Result<MemberSecrets, StoreError> {
    MemberSecrets::open(record, data_key).map_err(corrupt)
}

/// Open `member`'s keys of `group` for the epochs in `epochs` that they hold. Keys still
/// wrapped to their delivery key are opened with it and re-sealed under `data_key` (one
/// write transaction that replaces only the rows it opened, if unchanged).
pub fn open_epoch_keys(
    store: &Store,
    group: &Id,
    member: &Id,
    data_key: &SecretKey,
    epochs: std::ops::RangeInclusive<u32>,
) -> Result<BTreeMap<u32, SecretKey>, StoreError> {
    let (rows, user) = {
        let txn = store.read()?;
        let table = txn.open_table(GROUP_EPOCH_KEYS)?;
        let mut rows: Vec<(u32, EpochKeyRecord)> = Vec::new();
        let (start, end) = (*epochs.start(), *epochs.end());
        for row in table.range((*group, start, [0u8; 16])..=(*group, end, [0xffu8; 16]))? {
            let (k, v) = row?;
            let (_, epoch, m) = k.value();
            if &m == member {
                rows.push((epoch, EpochKeyRecord::decode(v.value())?));
            }
        }
        let needs_delivery = rows
            .iter()
            .any(|(_, r)| matches!(r.sealed, Sealed::ToDelivery(_)));
        let user = if needs_delivery {
            txn.open_table(USERS)?
                .get(member)?
                .map(|b| UserRecord::decode(b.value()))
                .transpose()?
        } else {
            None
        };
        (rows, user)
    };
    let delivery = match &user {
        Some(u) => {
            Some(hybrid::unseal_private(&u.delivery_private_sealed, data_key).map_err(corrupt)?)
        }
        None => None,
    };
    let mut out = BTreeMap::new();
    let mut resealed: Vec<(u32, Sealed, EpochKeyRecord)> = Vec::new();
    for (epoch, record) in rows {
        match &record.sealed {
            Sealed::UnderDataKey(token) => {
                out.insert(epoch, data_key.unwrap_key(token).map_err(corrupt)?);
            }
            Sealed::ToDelivery(blob) => {
                let Some(delivery) = &delivery else {
                    continue;
                };
                // Sealed by this server when the epoch began: not client input.
                let bytes = hybrid::open_with(delivery, blob).map_err(corrupt)?;
                let key = SecretKey::from_slice(&bytes).map_err(corrupt)?;
                let again = EpochKeyRecord::under(data_key, &key).map_err(corrupt)?;
                resealed.push((epoch, record.sealed.clone(), again));
                out.insert(epoch, key);
            }
        }
    }
    if !resealed.is_empty() {
        let txn = store.write()?;
        {
            let mut table = txn.open_table(GROUP_EPOCH_KEYS)?;
            for (epoch, seen, new) in &resealed {
                let current = table
                    .get((*group, *epoch, *member))?
                    .map(|b| EpochKeyRecord::decode(b.value()))
                    .transpose()?;
                if current.is_some_and(|c| &c.sealed == seen) {
                    table.insert((*group, *epoch, *member), new.encode()?.as_slice())?;
                }
            }
        }
        txn.commit()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::rsa_keys::RsaPrivate;

    #[test]
    fn member_secrets_round_trip() {
        let signing = SigningKey::RsaPss(RsaPrivate::generate(2048).unwrap());
        let name_key = SecretKey::generate();
        let vk = signing.verifying_key().unwrap();
        let book = Book::from([([1u8; 16], member_key_digest(&[7; 16], &[1; 16], &vk))]);
        let s = MemberSecrets::new(name_key.clone(), &signing, &book).unwrap();
        let data_key = SecretKey::generate();
        let record = s.seal_under(&data_key).unwrap();
        let mut back = MemberSecrets::open(&record, &data_key).unwrap();
        assert_eq!(back.name_key().expose(), name_key.expose());
        assert_eq!(back.book().unwrap(), Some(book.clone()));
        assert_eq!(back.legacy_upto(), 0);
        let mut more = book.clone();
        more.insert([2; 16], [3; 32]);
        back.set_book(&more, Some(9));
        let again = MemberSecrets::open(&back.seal_under(&data_key).unwrap(), &data_key).unwrap();
        assert_eq!(again.book().unwrap(), Some(more));
        assert_eq!(again.legacy_upto(), 9);
        // The digest binds the group, the member and the key.
        let d = member_key_digest(&[7; 16], &[1; 16], &vk);
        assert_ne!(d, member_key_digest(&[8; 16], &[1; 16], &vk));
        assert_ne!(d, member_key_digest(&[7; 16], &[2; 16], &vk));
        let other = SigningKey::RsaPss(RsaPrivate::generate(2048).unwrap());
        assert_ne!(
            d,
            member_key_digest(&[7; 16], &[1; 16], &other.verifying_key().unwrap())
        );
        let sig = back.signing_key().unwrap().sign(b"m").unwrap();
        assert!(vk.verify(b"m", &sig));
        assert!(MemberSecrets::open(&record, &SecretKey::generate()).is_err());
        assert_eq!(format!("{back:?}"), "MemberSecrets(..)");
    }
}
