//! Background deletion and housekeeping.
//!
//! The sweeper runs at start-up and then every `accounts.sweep_interval_secs`: it deletes
//! accounts whose owner has not logged in for `accounts.inactivity_days`, expired files,
//! and incomplete uploads that no running upload owns (left by a crash). Expired files
//! are unreachable from the moment they expire; the sweep reclaims their rows. Housekeeping runs
//! every minute: it ends expired sessions and prunes rate-limit state.
//!
//! Self-destructing messages have their own loop, because their timers are short (30 s
//! and up): it sleeps until the earliest deadline in the `message_deadlines` index, or at
//! most `chat.expiry_check_secs` (1 s by default, so that a newly sent message with an
//! earlier deadline, or a test's moved clock, is noticed), then deletes what is due and
//! tells open live streams. Each wake-up is one short read of the index's first row; the
//! message table is never scanned.

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
    note_kept_out(state).await?;
    let policy = Arc::clone(&state.accounts);
    let deleted = state
        .store
        .run(move |store| crate::accounts::sweep_inactive(store, &policy, now))
        .await?;
    for id in &deleted {
        state.forget_member(id);
    }
    // Counts only, and at debug level: a log line's time would tell when an account was
    // last used (or a file uploaded) long after the account or file is gone.
    if !deleted.is_empty() {
        tracing::debug!(count = deleted.len(), "deleted inactive accounts");
    }
    let invites = state
        .store
        .run(move |store| crate::invites::sweep(store, now))
        .await?;
    if invites > 0 {
        tracing::info!(count = invites, "deleted expired invitation codes");
    }
    let sweep_state = Arc::clone(state);
    let files = state
        .store
        .run(move |store| crate::files::sweep(store, now, &sweep_state.uploads))
        .await?;
    if files.expired > 0 || files.abandoned > 0 {
        tracing::debug!(
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

/// Delete the self-destructing messages that are due and tell open live streams. Returns
/// how many went.
pub async fn expire(state: &Arc<AppState>) -> Result<usize, crate::store::StoreError> {
    let mut total = 0;
    // Server-sealed messages, then end-to-end ones (their own deadline index, `e2e::store`).
    type ExpireDue = fn(
        &crate::store::Store,
        crate::clock::UnixTime,
    ) -> Result<Vec<crate::chat::Expired>, crate::store::StoreError>;
    let kinds: [ExpireDue; 2] = [crate::chat::expire_due, crate::e2e::store::expire_due];
    for expire_due in kinds {
        loop {
            let now = state.clock.now();
            let expired = state.store.run(move |store| expire_due(store, now)).await?;
            for e in &expired {
                state.hub.publish(
                    &e.members,
                    crate::chat::hub::Event::Expired {
                        conversation: e.conversation,
                        seq: e.seq,
                    },
                );
            }
            total += expired.len();
            if expired.len() < crate::chat::EXPIRY_BATCH {
                break;
            }
        }
    }
    if total > 0 {
        tracing::debug!(count = total, "self-destructing messages deleted");
    }
    Ok(total)
}

/// How long the expiry loop may sleep: until the earliest deadline, at most `max`.
async fn expiry_wait(state: &Arc<AppState>, max: Duration) -> Duration {
    let next = match state
        .store
        .run(|s| {
            let a = crate::chat::next_deadline(s)?;
            let b = crate::e2e::store::next_deadline(s)?;
            Ok(a.into_iter().chain(b).min())
        })
        .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "reading the next self-destruct deadline failed");
            None
        }
    };
    match next {
        Some(deadline) => {
            let left = deadline.saturating_sub(state.clock.now());
            let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
            left.min(max)
        }
        None => max,
    }
}

/// Write down the names whose login attempts the gate turned away, so that the sweeper
/// counts their inactivity from today (nobody our limiter kept out is deleted for it).
pub async fn note_kept_out(state: &Arc<AppState>) -> Result<(), crate::store::StoreError> {
    let names = state.gate.take_kept_out();
    if names.is_empty() {
        return Ok(());
    }
    let today = crate::accounts::day_of(state.clock.now());
    let gate_state = Arc::clone(state);
    state
        .store
        .run(move |store| {
            crate::accounts::departure::note_kept_out(
                store,
                &names,
                |name| gate_state.gate.key(name),
                today,
            )
        })
        .await?;
    Ok(())
}

/// One housekeeping pass.
pub async fn housekeeping(state: &Arc<AppState>) {
    let now = state.clock.now();
    state.sessions.reap(now);
    state.hub.prune(now);
    state.limits.prune();
    state.gate.prune();
    state.keypool.refill();
    if let Err(e) = note_kept_out(state).await {
        tracing::error!(error = %e, "noting names kept out by the login gate failed");
    }
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
        let expiry_max = Duration::from_secs(state.config.chat.expiry_check_secs);
        let mut expiry_due = Box::pin(tokio::time::sleep(Duration::ZERO));
        loop {
            tokio::select! {
                _ = sweep_tick.tick() => {
                    if let Err(e) = sweep(&state).await {
                        tracing::error!(error = %e, "sweep failed");
                    }
                }
                _ = house_tick.tick() => housekeeping(&state).await,
                () = &mut expiry_due => {
                    let wait = match expire(&state).await {
                        Ok(_) => expiry_wait(&state, expiry_max).await,
                        Err(e) => {
                            tracing::error!(error = %e, "deleting self-destructing messages failed");
                            expiry_max
                        }
                    };
                    expiry_due.as_mut().reset(tokio::time::Instant::now() + wait);
                }
                _ = shutdown.changed() => break,
            }
        }
    })
}
