//! Each member's choice of signature scheme, and fresh signing keys in that scheme.
//!
//! A member signs with RSA-PSS-SHA256 (the default) or DSA 2048/256 (SHA-256), chosen in
//! settings. The choice applies to *new* keys: a connection accepted, or a group created
//! or joined, after the change. Existing connections and memberships keep the key they
//! have, so the scheme of every stored signature stays what its verifying key says, and
//! readers verify either scheme.
//!
//! Fresh keys never come from an async worker: RSA pairs come from the key pool (refilled
//! by a blocking task), DSA pairs are made on the blocking pool under the installation's
//! domain parameters (generated once, see `crypto::dsa_keys`).

use std::sync::Arc;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::connections::keys::{SignatureScheme, SigningKey};
use crate::crypto::dsa_keys::{DsaParams, DsaPrivate};
use crate::store::tables::{MEMBER_SETTINGS, META};
use crate::store::{Id, Record, Store, StoreError};
use crate::web::error::AppError;

/// Key of the DSA domain parameters in the `meta` table.
const DSA_PARAMS_KEY: &str = "dsa_params_v1";

/// A member's settings (the stored value of `MEMBER_SETTINGS`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemberSettingsRecord {
    pub signature_scheme: SignatureScheme,
}

impl Record for MemberSettingsRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "member settings";
}

/// The scheme `member` signs new keys with.
pub fn scheme_of(store: &Store, member: &Id) -> Result<SignatureScheme, StoreError> {
    let txn = store.read()?;
    let table = txn.open_table(MEMBER_SETTINGS)?;
    Ok(table
        .get(member)?
        .map(|b| MemberSettingsRecord::decode(b.value()))
        .transpose()?
        .unwrap_or_default()
        .signature_scheme)
}

/// Change the scheme `member` signs new keys with.
pub fn set_scheme(store: &Store, member: &Id, scheme: SignatureScheme) -> Result<(), StoreError> {
    let txn = store.write()?;
    {
        let mut table = txn.open_table(MEMBER_SETTINGS)?;
        if scheme == SignatureScheme::default() {
            // Defaults are no row: the file then says nothing about this member's choice.
            table.remove(member)?;
        } else {
            let record = MemberSettingsRecord {
                signature_scheme: scheme,
            };
            table.insert(member, record.encode()?.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Account deletion (registered in the member deletion cascade): the member's settings go,
/// however they leave (inside the caller's transaction).
pub fn erase_member_in(
    txn: &WriteTransaction,
    member: &Id,
    _removal: crate::store::cascade::Removal,
) -> Result<(), StoreError> {
    txn.open_table(MEMBER_SETTINGS)?.remove(member)?;
    Ok(())
}

/// The installation's DSA domain parameters: read and checked from the `meta` table, or
/// generated (slow: seconds) and stored the first time. Blocking.
pub fn load_or_create_dsa_params(store: &Store) -> Result<DsaParams, StoreError> {
    let corrupt =
        |e: crate::crypto::CryptoError| StoreError::Corrupt(format!("DSA parameters: {e}"));
    let stored = {
        let txn = store.read()?;
        let meta = txn.open_table(META)?;
        meta.get(DSA_PARAMS_KEY)?.map(|v| v.value().to_vec())
    };
    if let Some(der) = stored {
        return DsaParams::from_der(&der).map_err(corrupt);
    }
    tracing::info!("generating this installation's DSA domain parameters (once)");
    let params = DsaParams::generate();
    let der = params.to_der().map_err(corrupt)?;
    let txn = store.write()?;
    let winner = {
        let mut meta = txn.open_table(META)?;
        // Another generation may have finished first: keep the one stored.
        let existing = meta.get(DSA_PARAMS_KEY)?.map(|v| v.value().to_vec());
        match existing {
            Some(der) => Some(der),
            None => {
                meta.insert(DSA_PARAMS_KEY, der.as_slice())?;
                None
            }
        }
    };
    txn.commit()?;
    match winner {
        Some(der) => DsaParams::from_der(&der).map_err(corrupt),
        None => Ok(params),
    }
}

impl AppState {
    /// The DSA domain parameters, loaded (or generated) once per process on the blocking
    /// pool.
    pub async fn dsa_params(&self) -> Result<Arc<DsaParams>, AppError> {
        let store = self.store.clone();
        let params = self
            .dsa_params
            .get_or_try_init(|| async move {
                store
                    .run(|s| load_or_create_dsa_params(s).map(Arc::new))
                    .await
            })
            .await?;
        Ok(Arc::clone(params))
    }

    /// A fresh signing key pair in `scheme`, used by one connection side or one group
    /// membership only.
    pub async fn new_signing_key(&self, scheme: SignatureScheme) -> Result<SigningKey, AppError> {
        match scheme {
            SignatureScheme::RsaPss => Ok(SigningKey::RsaPss(self.keypool.take().await?)),
            SignatureScheme::Dsa => {
                let params = self.dsa_params().await?;
                tokio::task::spawn_blocking(move || SigningKey::Dsa(DsaPrivate::generate(&params)))
                    .await
                    .map_err(|_| AppError::Internal("DSA key generation failed".into()))
            }
        }
    }

    /// A fresh signing key pair in the scheme `member` chose.
    pub async fn new_signing_key_for(&self, member: Id) -> Result<SigningKey, AppError> {
        let scheme = self.store.run(move |s| scheme_of(s, &member)).await?;
        self.new_signing_key(scheme).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_defaults_to_rsa_and_is_stored_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let m = [1u8; 16];
        assert_eq!(scheme_of(&store, &m).unwrap(), SignatureScheme::RsaPss);
        set_scheme(&store, &m, SignatureScheme::Dsa).unwrap();
        assert_eq!(scheme_of(&store, &m).unwrap(), SignatureScheme::Dsa);
        set_scheme(&store, &m, SignatureScheme::RsaPss).unwrap();
        assert_eq!(scheme_of(&store, &m).unwrap(), SignatureScheme::RsaPss);
        let txn = store.read().unwrap();
        use redb::ReadableTableMetadata;
        assert_eq!(txn.open_table(MEMBER_SETTINGS).unwrap().len().unwrap(), 0);
    }

    #[test]
    fn form_values_round_trip() {
        for s in [SignatureScheme::RsaPss, SignatureScheme::Dsa] {
            assert_eq!(SignatureScheme::from_form(s.form_value()), Some(s));
        }
        assert_eq!(SignatureScheme::from_form("ecdsa"), None);
    }
}
