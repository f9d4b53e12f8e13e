//! The onion service: arti bootstraps in-process and publishes a v3 onion service whose
//! identity key we keep in the database. Every rendezvous stream to port 80 is handed to
//! the same hyper service as the TCP listener ([`crate::web::server::serve_connection`]);
//! any other stream request shuts its circuit.
//!
//! arti keeps its state and directory cache under `<data dir>/arti/`; its keystore is
//! in memory only, so no key of ours is ever written by arti.

pub mod client_auth;
pub mod key;

use std::sync::Arc;

use arti_client::config::TorClientConfigBuilder;
use arti_client::config::dir::FallbackDir;
use arti_client::config::onion_service::OnionServiceConfigBuilder;
use arti_client::{TorClient, TorClientConfig};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::sync::watch;
use tor_cell::relaycell::msg::Connected;
use tor_config::ExplicitOrAuto;
use tor_hsservice::config::TokenBucketConfig;
use tor_hsservice::{HsNickname, RunningOnionService};
use tor_keymgr::config::ArtiKeystoreKind;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;
use tor_proto::stream::IncomingStreamRequest;

use crate::app::AppState;
use crate::config::TorConfig;
use crate::web::Door;
use key::OnionKey;

/// The service's nickname inside arti (names its state directory).
const NICKNAME: &str = "ghostcache";

/// Why the onion service could not start.
#[derive(Debug, thiserror::Error)]
pub enum OnionError {
    #[error("tor configuration: {0}")]
    Config(String),
    #[error("arti: {0}")]
    Arti(String),
    #[error("{0}")]
    Key(#[from] key::KeyError),
}

/// Live state of the onion side, for `status` and the log.
#[derive(Debug, Clone, Default)]
pub struct OnionStatus {
    /// The last bootstrap progress line from arti.
    pub bootstrap: String,
    /// Whether the service has been launched.
    pub launched: bool,
    /// The last service state reported by arti (e.g. "Running").
    pub service_state: String,
}

/// A running onion service. Dropping it stops the service.
pub struct Onion {
    _client: Arc<TorClient<tor_rtcompat::PreferredRuntime>>,
    service: Arc<RunningOnionService>,
    /// The `.onion` address (for the operator; never logged unless configured).
    pub address: String,
}

impl Onion {
    /// A handle for changing the running service's settings (the control socket's).
    pub fn handle(&self) -> ServiceHandle {
        ServiceHandle {
            service: Arc::clone(&self.service),
        }
    }
}

/// Changes a running onion service without restarting it.
#[derive(Clone)]
pub struct ServiceHandle {
    service: Arc<RunningOnionService>,
}

impl std::fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHandle").finish_non_exhaustive()
    }
}

impl ServiceHandle {
    /// Hand arti a new list of authorized clients. arti builds and publishes a new
    /// descriptor (its publisher waits at least a minute between uploads); introduction
    /// points, circuits and sessions stay as they are.
    pub fn set_clients(
        &self,
        cfg: &TorConfig,
        clients: &[(String, client_auth::ClientAuthRecord)],
    ) -> Result<(), OnionError> {
        let config = service_config(cfg, clients)?;
        self.service
            .reconfigure(config, tor_config::Reconfigure::AllOrNothing)
            .map_err(|e| OnionError::Arti(e.to_string()))
    }
}

impl std::fmt::Debug for Onion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Onion").finish_non_exhaustive()
    }
}

/// arti's client configuration from ours.
pub fn client_config(
    cfg: &TorConfig,
    arti_dir: &std::path::Path,
) -> Result<TorClientConfig, OnionError> {
    let bad = |m: String| OnionError::Config(m);
    let mut b =
        TorClientConfigBuilder::from_directories(arti_dir.join("state"), arti_dir.join("cache"));
    // The identity key is handed over in memory; nothing arti derives from it is written.
    b.storage()
        .keystore()
        .primary()
        .kind(ExplicitOrAuto::Explicit(ArtiKeystoreKind::Ephemeral));
    // An onion service never needs exit circuits: build none ahead of time.
    b.preemptive_circuits()
        .disable_at_threshold(0)
        .set_initial_predicted_ports(vec![]);
    // Full vanguards: the strongest defence arti has against guard discovery.
    b.vanguards()
        .mode(ExplicitOrAuto::Explicit(tor_guardmgr::VanguardMode::Full));
    if let Some(net) = &cfg.network {
        let ids = net
            .authorities
            .iter()
            .map(|h| {
                RsaIdentity::from_hex(h)
                    .ok_or_else(|| bad(format!("bad authority v3 identity {h}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        b.tor_network().authorities().set_v3idents(ids);
        let mut fallbacks = Vec::with_capacity(net.fallbacks.len());
        for f in &net.fallbacks {
            let rsa = RsaIdentity::from_hex(&f.rsa_identity)
                .ok_or_else(|| bad(format!("bad fallback RSA identity {}", f.rsa_identity)))?;
            let ed = Ed25519Identity::from_base64(&f.ed25519_identity).ok_or_else(|| {
                bad(format!(
                    "bad fallback ed25519 identity {}",
                    f.ed25519_identity
                ))
            })?;
            let mut fb = FallbackDir::builder();
            fb.rsa_identity(rsa).ed_identity(ed);
            fb.orports().push(f.orport);
            fallbacks.push(fb);
        }
        b.tor_network().set_fallback_caches(fallbacks);
        b.path_rules()
            .ipv4_subnet_family_prefix(net.ipv4_subnet_family_prefix)
            .ipv6_subnet_family_prefix(net.ipv6_subnet_family_prefix);
        b.address_filter().allow_local_addrs(net.allow_local_addrs);
        let params = b.override_net_params();
        for (k, v) in &net.net_params {
            params.insert(k.clone(), *v);
        }
    }
    b.build().map_err(|e| bad(e.to_string()))
}

/// arti's onion-service configuration from ours. With `tor.restricted_discovery`, the
/// descriptor is encrypted to `clients` (padded, see [`client_auth`]).
pub fn service_config(
    cfg: &TorConfig,
    clients: &[(String, client_auth::ClientAuthRecord)],
) -> Result<tor_hsservice::OnionServiceConfig, OnionError> {
    let bad = |m: String| OnionError::Config(m);
    let mut b = OnionServiceConfigBuilder::default();
    if cfg.restricted_discovery {
        let keys = client_auth::keys_for_arti(clients).map_err(bad)?;
        let rd = b.restricted_discovery();
        rd.enabled(true);
        rd.static_keys().access().extend(keys);
    }
    b.nickname(HsNickname::new(NICKNAME.to_owned()).map_err(|e| bad(e.to_string()))?)
        .num_intro_points(cfg.num_intro_points)
        .max_concurrent_streams_per_circuit(cfg.max_streams_per_circuit)
        .rate_limit_at_intro(
            (cfg.intro_rate_per_sec > 0)
                .then(|| TokenBucketConfig::new(cfg.intro_rate_per_sec, cfg.intro_burst)),
        )
        .enable_pow(cfg.proof_of_work);
    b.build().map_err(|e| bad(e.to_string()))
}

/// Bootstrap arti and launch the onion service with `identity`, serving every accepted
/// stream through the web layer until `shutdown`. Progress goes to the log and to
/// `status`; the identity is wiped from our memory once arti holds it.
pub async fn launch(
    state: Arc<AppState>,
    identity: OnionKey,
    status: Arc<Mutex<OnionStatus>>,
    shutdown: watch::Receiver<bool>,
) -> Result<Onion, OnionError> {
    let cfg = &state.config.tor;
    let arti_dir = state.config.resolved_data_dir().join("arti");
    crate::hardening::create_private_dir(&arti_dir)
        .map_err(|e| OnionError::Config(e.to_string()))?;
    let client_cfg = client_config(cfg, &arti_dir)?;
    let clients = state
        .store
        .run(client_auth::list)
        .await
        .map_err(|e| OnionError::Config(e.to_string()))?;
    if cfg.restricted_discovery {
        tracing::info!(
            clients = clients.len(),
            "restricted discovery: only authorized clients can reach the service"
        );
        if clients.is_empty() {
            tracing::warn!(
                "restricted discovery is on and no client is authorized: nobody can reach the \
                 service until `ghostcache client-auth add NAME`"
            );
        }
    }
    let service_cfg = service_config(cfg, &clients)?;

    let client = TorClient::builder()
        .config(client_cfg)
        .create_unbootstrapped_async()
        .await
        .map_err(|e| OnionError::Arti(e.to_string()))?;
    let mut events = client.bootstrap_events();
    let progress = Arc::clone(&status);
    tokio::spawn(async move {
        let mut last = String::new();
        while let Some(ev) = events.next().await {
            let line = ev.to_string();
            if line != last {
                tracing::info!(progress = %line, "tor bootstrap");
                crate::notify::status(&format!("tor: {line}"));
                progress.lock().bootstrap = line.clone();
                last = line;
            }
        }
    });
    client
        .bootstrap()
        .await
        .map_err(|e| OnionError::Arti(e.to_string()))?;

    let address = identity.address()?;
    let redacted = identity.address_redacted()?;
    let keypair = identity.keypair()?;
    drop(identity);
    let (service, requests) = client
        .launch_onion_service_with_hsid(service_cfg, keypair)
        .map_err(|e| OnionError::Arti(e.to_string()))?
        .ok_or_else(|| {
            OnionError::Config("the onion service is disabled in arti's configuration".into())
        })?;
    status.lock().launched = true;
    if cfg.log_onion_address {
        tracing::info!(address = %address, "onion service launched");
    } else {
        tracing::info!(address = %redacted, "onion service launched (run `ghostcache onion-address` for the full address)");
    }

    let mut service_events = service.status_events();
    let service_status = Arc::clone(&status);
    tokio::spawn(async move {
        let mut last = String::new();
        while let Some(s) = service_events.next().await {
            let line = format!("{:?}", s.state());
            if line != last {
                tracing::info!(state = %line, "onion service state");
                service_status.lock().service_state = line.clone();
                last = line;
            }
        }
    });

    tokio::spawn(serve_streams(requests, state, shutdown));
    Ok(Onion {
        _client: client,
        service,
        address,
    })
}

/// Accept BEGIN to port 80 and serve it; shut the circuit for anything else (other ports,
/// directory requests, RESOLVE).
async fn serve_streams(
    requests: impl futures_util::Stream<Item = tor_hsservice::RendRequest> + Send + 'static,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let streams = tor_hsservice::handle_rend_requests(requests);
    futures_util::pin_mut!(streams);
    let limit = Arc::new(tokio::sync::Semaphore::new(
        state.config.server.max_connections,
    ));
    loop {
        let next = tokio::select! {
            n = streams.next() => n,
            _ = shutdown.changed() => return,
        };
        let Some(req) = next else { return };
        let port_80 = matches!(req.request(), IncomingStreamRequest::Begin(b) if b.port() == 80);
        if !port_80 {
            let _ = req.shutdown_circuit();
            continue;
        }
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            // Over capacity: refuse this stream rather than queue without bound.
            let _ = req.shutdown_circuit();
            continue;
        };
        let state = Arc::clone(&state);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Ok(stream) = req.accept(Connected::new_empty()).await {
                crate::web::server::serve_connection(
                    TokioIo::new(stream),
                    state,
                    Door::Onion,
                    shutdown,
                )
                .await;
            }
            drop(permit);
        });
    }
}
