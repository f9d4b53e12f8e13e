//! `member list` and `member remove`: what an operator sees of members, and removing one.
//!
//! The list shows names and the day of each member's last login, nothing else. A member
//! who departed (destruction password, their own deletion, or `member remove`) stays
//! behind as a decoy that holds the name until inactivity frees it (see
//! `accounts::departure`); the list shows it like any other account, with the day of the
//! last real login. Telling decoys apart here would let anyone who can make the operator
//! run this command (or who seizes the server) learn who used their destruction password.

use std::sync::Arc;

use redb::ReadableTable;

use super::{MemberRow, Reply, error, parse_member_name};
use crate::app::AppState;
use crate::store::tables::USERS;
use crate::store::{Record, Store, StoreError, UserRecord};

/// Every member, by name.
pub fn list(store: &Store) -> Result<Vec<MemberRow>, StoreError> {
    let txn = store.read()?;
    let users = txn.open_table(USERS)?;
    let mut out = Vec::new();
    for row in users.iter()? {
        let (_, v) = row?;
        let record = UserRecord::decode(v.value())?;
        out.push(MemberRow {
            name: record.username,
            last_login_day: record.last_login_day,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Remove a member exactly as their own deletion from the settings page does
/// (`AppState::delete_member`): everything of theirs is erased, their sessions and live
/// streams end at once, and a decoy holds the name until inactivity frees it.
pub async fn remove(state: &Arc<AppState>, raw_name: &str) -> Reply {
    let name = match parse_member_name(raw_name) {
        Ok(n) => n,
        Err(m) => return error(m),
    };
    let lookup = name.clone();
    let found = match state
        .store
        .run(move |s| crate::accounts::find_user(s, &lookup))
        .await
    {
        Ok(f) => f,
        Err(e) => return error(e),
    };
    let Some((id, _)) = found else {
        return error(format_args!("no member is named {}", name.as_str()));
    };
    if let Err(e) = state.delete_member(id).await {
        return error(format_args!("removing the member failed: {e}"));
    }
    tracing::info!("member removed by the operator");
    Reply::Done {
        message: format!(
            "member {} removed: the account and everything in it are deleted, and its \
             sessions have ended; as after a member's own deletion, the name stays taken (and \
             listed) until inactivity frees it",
            name.as_str()
        ),
    }
}
