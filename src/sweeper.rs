//! Background deletion and housekeeping.
//!
//! The sweeper runs at start-up and then every `accounts.sweep_interval_secs`: it deletes
//! accounts whose owner has not logged in for `accounts.inactivity_days`, expired files,
//! and incomplete uploads that no running upload owns (left by a crash). Expired files
//! are unreachable from the moment they expire; the sweep reclaims their rows. Housekeeping runs
//! every minute: it ends expired sessions and prunes rate-limit state.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::AppState;

/// What one sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub accounts_deleted: usize,
    /// Files deleted because they expired.
    pub files_deleted: usize,
    /// Incomplete uploads deleted because no upload was running for them.
    pub uploads_discarded: usize,
}

/// Run one sweep now.
pub async fn sweep(state: &Arc<AppState>) -> Result<SweepReport, crate::store::StoreError> {
    let now = state.clock.now();
    let days = state.config.accounts.inactivity_days;
    let deleted = state
        .store
        .run(move |store| crate::accounts::sweep_inactive(store, now, days))
        .await?;
    for id in &deleted {
        state.forget_member(id);
    }
    if !deleted.is_empty() {
        tracing::info!(count = deleted.len(), "deleted inactive accounts");
    }
    let sweep_state = Arc::clone(state);
    let files = state
        .store
        .run(move |store| crate::files::sweep(store, now, &sweep_state.uploads))
        .await?;
    if files.expired > 0 || files.abandoned > 0 {
        tracing::info!(
            expired = files.expired,
            abandoned = files.abandoned,
            "deleted files"
        );
    }
    Ok(SweepReport {
        accounts_deleted: deleted.len(),
        files_deleted: files.expired,
        uploads_discarded: files.abandoned,
    })
}

/// One housekeeping pass.
pub fn housekeeping(state: &AppState) {
    let now = state.clock.now();
    state.sessions.reap(now);
    state.hub.prune(now);
    state.limits.prune();
    state.keypool.refill();
}

/// Start the sweeper and housekeeping loops; they stop when `shutdown` turns true.
pub fn spawn(
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sweep_tick = tokio::time::interval(Duration::from_secs(
            state.config.accounts.sweep_interval_secs,
        ));
        let mut house_tick = tokio::time::interval(Duration::from_secs(60));
        sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        house_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sweep_tick.tick() => {
                    if let Err(e) = sweep(&state).await {
                        tracing::error!(error = %e, "sweep failed");
                    }
                }
                _ = house_tick.tick() => housekeeping(&state),
                _ = shutdown.changed() => break,
            }
        }
    })
}
