//! The onion service's identity key: generated on first start, kept in the database
//! (sealed under the master key when one is configured), handed to arti's in-memory
//! keystore at launch and wiped from our memory after.

use serde::{Deserialize, Serialize};
use tor_hscrypto::pk::{HsId, HsIdKey, HsIdKeypair};
use tor_llcrypto::pk::ed25519;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::crypto::SecretKey;
use crate::crypto::master::{MasterKeyError, MasterSecret};
use redb::ReadableTable;

use crate::store::{Record, Store, StoreError, tables};

/// META key under which the identity is stored.
const META_KEY: &str = "onion_identity";

/// A v3 onion identity secret key in the expanded form (32-byte scalar ‖ 32-byte hash
/// prefix) that C tor and arti use. Zeroized on drop, never printed.
pub struct OnionKey(Zeroizing<[u8; 64]>);

impl std::fmt::Debug for OnionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnionKey(..)")
    }
}

/// Why the identity key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "the onion identity key in the database is sealed under a master key, but none is \
         configured: set master_key_credential or master_key_file"
    )]
    MasterKeyMissing,
    #[error("the configured master key does not open the onion identity key in the database")]
    MasterKeyWrong,
    #[error("cannot read the master key from {path}: {reason}")]
    MasterKeyUnreadable { path: String, reason: String },
    #[error("the onion identity key in the database is malformed")]
    Malformed,
    #[error("no onion identity key yet: start `ghostcache serve` once to create it")]
    NotCreated,
}

macro_rules! key_error_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for KeyError {
            fn from(e: $t) -> Self {
                KeyError::Store(e.into())
            }
        }
    )*};
}
key_error_from_redb!(
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::TransactionError
);

/// How the identity is stored in the META table.
#[derive(Serialize, Deserialize)]
enum StoredIdentity {
    /// Unsealed (no master key configured).
    Plain(Vec<u8>),
    /// Fernet token under the master key.
    Sealed(String),
}

impl Record for StoredIdentity {
    const VERSION: u8 = 1;
    const NAME: &'static str = "onion identity";
}

impl OnionKey {
    /// A fresh random identity.
    pub fn generate() -> Self {
        let kp = ed25519::Keypair::generate(&mut tor_llcrypto::rng::CautiousRng);
        Self(Zeroizing::new(
            ed25519::ExpandedKeypair::from(&kp).to_secret_key_bytes(),
        ))
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 64] = bytes.try_into().map_err(|_| KeyError::Malformed)?;
        let arr = Zeroizing::new(arr);
        ed25519::ExpandedKeypair::from_secret_key_bytes(*arr).ok_or(KeyError::Malformed)?;
        Ok(Self(arr))
    }

    /// arti's key pair, built from our bytes (handed to the ephemeral keystore).
    pub fn keypair(&self) -> Result<HsIdKeypair, KeyError> {
        ed25519::ExpandedKeypair::from_secret_key_bytes(*self.0)
            .map(HsIdKeypair::from)
            .ok_or(KeyError::Malformed)
    }

    /// The service's identity.
    pub fn hs_id(&self) -> Result<HsId, KeyError> {
        Ok(HsIdKey::from(&self.keypair()?).id())
    }

    /// `<56 base32 characters>.onion`.
    pub fn address(&self) -> Result<String, KeyError> {
        use safelog::DisplayRedacted;
        Ok(self.hs_id()?.display_unredacted().to_string())
    }

    /// The address with most of it hidden, for logs.
    pub fn address_redacted(&self) -> Result<String, KeyError> {
        use safelog::DisplayRedacted;
        Ok(self.hs_id()?.display_redacted().to_string())
    }
}

/// The key that seals the identity, derived from the master key named by the
/// configuration (see `crypto::master`), if one is configured.
pub fn load_master_key(config: &Config) -> Result<Option<SecretKey>, KeyError> {
    let master = MasterSecret::load(config).map_err(|e| match e {
        MasterKeyError::Unreadable { path, reason } => {
            KeyError::MasterKeyUnreadable { path, reason }
        }
    })?;
    Ok(master.map(|m| m.onion_key()))
}

fn decode(stored: &StoredIdentity, master: Option<&SecretKey>) -> Result<OnionKey, KeyError> {
    match (stored, master) {
        (StoredIdentity::Plain(bytes), _) => OnionKey::from_bytes(bytes),
        (StoredIdentity::Sealed(_), None) => Err(KeyError::MasterKeyMissing),
        (StoredIdentity::Sealed(token), Some(m)) => {
            let bytes = m.open(token).map_err(|_| KeyError::MasterKeyWrong)?;
            OnionKey::from_bytes(&bytes)
        }
    }
}

fn encode(key: &OnionKey, master: Option<&SecretKey>) -> Result<StoredIdentity, KeyError> {
    Ok(match master {
        Some(m) => StoredIdentity::Sealed(m.seal(key.0.as_ref()).map_err(|_| KeyError::Malformed)?),
        None => StoredIdentity::Plain(key.0.to_vec()),
    })
}

/// Load the identity, creating it on first start. A key stored unsealed is sealed as
/// soon as a master key is configured.
pub fn load_or_create(store: &Store, master: Option<&SecretKey>) -> Result<OnionKey, KeyError> {
    let txn = store.write()?;
    let key = {
        let mut meta = txn.open_table(tables::META)?;
        let existing = meta
            .get(META_KEY)?
            .map(|v| StoredIdentity::decode(v.value()))
            .transpose()?;
        let (key, rewrite) = match existing {
            Some(stored) => {
                let key = decode(&stored, master)?;
                let upgrade = matches!(stored, StoredIdentity::Plain(_)) && master.is_some();
                (key, upgrade)
            }
            None => (OnionKey::generate(), true),
        };
        if rewrite {
            let encoded = Zeroizing::new(encode(&key, master)?.encode()?);
            meta.insert(META_KEY, encoded.as_slice())?;
        }
        key
    };
    txn.commit()?;
    Ok(key)
}

/// Read the identity from a (possibly running) database without changing anything.
pub fn read(db: &redb::ReadOnlyDatabase, master: Option<&SecretKey>) -> Result<OnionKey, KeyError> {
    use redb::ReadableDatabase;
    let txn = db.begin_read().map_err(StoreError::from)?;
    let meta = txn.open_table(tables::META).map_err(StoreError::from)?;
    let stored = meta
        .get(META_KEY)
        .map_err(StoreError::from)?
        .ok_or(KeyError::NotCreated)?;
    let stored = StoredIdentity::decode(stored.value())?;
    decode(&stored, master)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_and_sealed_when_a_master_key_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(crate::store::DB_FILE)).unwrap();
        let a = load_or_create(&store, None).unwrap().address().unwrap();
        assert!(a.ends_with(".onion") && a.len() == 62, "{a}");
        assert_eq!(load_or_create(&store, None).unwrap().address().unwrap(), a);

        let master = SecretKey::generate();
        assert_eq!(
            load_or_create(&store, Some(&master))
                .unwrap()
                .address()
                .unwrap(),
            a,
            "sealed on upgrade"
        );
        assert!(matches!(
            load_or_create(&store, None),
            Err(KeyError::MasterKeyMissing)
        ));
        assert!(matches!(
            load_or_create(&store, Some(&SecretKey::generate())),
            Err(KeyError::MasterKeyWrong)
        ));
        assert_eq!(
            load_or_create(&store, Some(&master))
                .unwrap()
                .address()
                .unwrap(),
            a
        );
        assert_eq!(format!("{:?}", OnionKey::generate()), "OnionKey(..)");
    }
}
