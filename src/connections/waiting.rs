//! What waits for a member among their connections, counted cheaply for the navigation
//! (which every page shows): the requests they received and have not answered.

use super::{Relation, load_connection, load_pair, pair_key, relation};
use crate::store::tables::{CONNECTIONS, MEMBER_TO_PAIRED, PAIRS};
use crate::store::{Id, StoreError};

/// The number of pending requests `member` received (from members they may see), read
/// in the caller's read transaction. Reads the member's pair index and, for each pair,
/// its record and connection: no names, no keys.
pub fn requests_received_in(txn: &redb::ReadTransaction, member: &Id) -> Result<usize, StoreError> {
    let index = txn.open_table(MEMBER_TO_PAIRED)?;
    let pairs = txn.open_table(PAIRS)?;
    let connections = txn.open_table(CONNECTIONS)?;
    let mut count = 0;
    for row in index.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
        let (_, other) = row?.0.value();
        let (key, me) = pair_key(member, &other);
        let pair = load_pair(&pairs, key)?;
        let Some(id) = pair.connection else {
            continue;
        };
        let connection = load_connection(&connections, &id)?;
        if matches!(
            relation(member, &other, &pair, me, connection.as_ref()),
            Relation::RequestReceived(_)
        ) {
            count += 1;
        }
    }
    Ok(count)
}
