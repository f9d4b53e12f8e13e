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
//! Sealed member-secrets payload: `scheme (1) || name key (32) || signing key (PKCS#8 DER)`.

use std::collections::BTreeMap;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::connections::keys::{Sealed, SigningKey, decode_key_and_signer, encode_key_and_signer};
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

/// A member's secrets of one group, opened. Zeroized on drop.
pub struct MemberSecrets {
    pub name_key: SecretKey,
    scheme: u8,
    signing_der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for MemberSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberSecrets(..)")
    }
}

impl MemberSecrets {
    pub fn new(name_key: SecretKey, signing: &SigningKey) -> Result<Self, CryptoError> {
        let (scheme, signing_der) = signing.to_tagged_der()?;
        Ok(Self {
            name_key,
            scheme,
            signing_der,
        })
    }

    /// Parse the signing key (only when signing).
    pub fn signing_key(&self) -> Result<SigningKey, CryptoError> {
        SigningKey::from_tagged_der(self.scheme, &self.signing_der)
    }

    pub fn seal_under(&self, data_key: &SecretKey) -> Result<MemberSecretsRecord, CryptoError> {
        let payload = encode_key_and_signer(&self.name_key, self.scheme, &self.signing_der);
        Ok(MemberSecretsRecord {
            token: data_key.seal(&payload)?,
        })
    }

    fn open(record: &MemberSecretsRecord, data_key: &SecretKey) -> Result<Self, CryptoError> {
        let payload = data_key.open(&record.token)?;
        let (name_key, scheme, signing_der) = decode_key_and_signer(&payload)?;
        Ok(Self {
            name_key,
            scheme,
            signing_der,
        })
    }
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
        let s = MemberSecrets::new(name_key.clone(), &signing).unwrap();
        let data_key = SecretKey::generate();
        let record = s.seal_under(&data_key).unwrap();
        let back = MemberSecrets::open(&record, &data_key).unwrap();
        assert_eq!(back.name_key.expose(), name_key.expose());
        let vk = signing.verifying_key().unwrap();
        let sig = back.signing_key().unwrap().sign(b"m").unwrap();
        assert!(vk.verify(b"m", &sig));
        assert!(MemberSecrets::open(&record, &SecretKey::generate()).is_err());
        assert_eq!(format!("{back:?}"), "MemberSecrets(..)");
    }
}
