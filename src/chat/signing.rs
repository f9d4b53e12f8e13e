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

/// Account deletion: the member's settings go (inside the caller's transaction).
pub fn delete_member_in(txn: &WriteTransaction, member: &Id) -> Result<(), StoreError> {
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

// ---------------------------------------------------------------------------------------
// `GET/POST /settings/signature`

fn page_markup(
    ctx: &crate::web::layout::PageCtx,
    current: SignatureScheme,
    notice: Option<&str>,
) -> maud::Markup {
    use crate::web::layout::{csrf_field, page};
    use maud::html;
    page(
        ctx,
        "Signature scheme",
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            p {
                "You sign with " strong.current-scheme { (current.name()) } ". "
                "The choice applies to connections you accept or that accept you, and to groups \
                 you create or join, from now on; existing ones keep their keys. Either way your \
                 contacts verify your signatures."
            }
            form.stack method="post" action="/settings/signature" {
                (csrf_field(ctx))
                fieldset {
                    legend { "Sign new connections and groups with" }
                    @for scheme in [SignatureScheme::RsaPss, SignatureScheme::Dsa] {
                        label {
                            input type="radio" name="scheme" value=(scheme.form_value())
                                checked[scheme == current];
                            " " (scheme.name())
                            @if scheme == SignatureScheme::RsaPss { " (default)" }
                        }
                    }
                }
                button type="submit" { "Save" }
            }
            p.muted {
                "Signatures are made by this server with keys it holds for you and unlocks while \
                 you are logged in. They show that a stored message was not altered or forged by \
                 someone without those keys; they do not prove authorship against the server's \
                 operator. The README's security section explains both schemes."
            }
            p { a href="/settings" { "Back to settings" } }
        },
    )
}

/// `GET /settings/signature`.
pub async fn settings_page(
    ctx: &mut crate::web::Ctx,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<crate::web::response::Body>, AppError> {
    use crate::web::response::{html, redirect};
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let q = crate::accounts::handlers::query(&req)?;
    let notice = q.get("saved").map(|_| "Saved.");
    let me = session.user_id;
    let current = ctx.state.store.run(move |s| scheme_of(s, &me)).await?;
    let page = ctx.page();
    Ok(html(
        hyper::StatusCode::OK,
        page_markup(&page, current, notice),
    ))
}

/// `POST /settings/signature` (`csrf`, `scheme`: `rsa-pss` or `dsa`).
pub async fn settings_submit(
    ctx: &mut crate::web::Ctx,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<crate::web::response::Body>, AppError> {
    let form = crate::accounts::handlers::form(ctx, req).await?;
    let session = ctx.check_member_form(&form)?;
    let scheme = SignatureScheme::from_form(form.text("scheme"))
        .ok_or_else(|| AppError::BadRequest("Choose RSA-PSS or DSA.".into()))?;
    if scheme == SignatureScheme::Dsa {
        // Make sure the installation's DSA parameters exist (generated once, seconds),
        // so that the next connection or group does not wait for them.
        ctx.state.dsa_params().await?;
    }
    let me = session.user_id;
    ctx.state
        .store
        .run(move |s| set_scheme(s, &me, scheme))
        .await?;
    Ok(crate::web::response::redirect(
        "/settings/signature?saved=1",
    ))
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
