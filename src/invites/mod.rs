//! Registration modes and invitation codes.
//!
//! `accounts.registration` is `open` (a name and two passwords, nothing else), `invite`
//! (the register form also asks for an invitation code) or `closed`. Codes come from the
//! operator (`ghostcache invite [--uses N] [--days D]`) and, with
//! `accounts.members_may_invite`, from members' settings pages, at most
//! `accounts.invites_per_member` codes per member at a time (a code counts until it
//! expires, used or not).
//!
//! A code is 160 random bits, shown as 32 base32 characters in groups of four. Only its
//! SHA-256 is stored. Every failed redemption — no code, a malformed one, an unknown, a
//! used-up or an expired code, or one whose maker's account is gone — runs the same
//! steps (hash, one write transaction that reads the row and the maker, then is dropped)
//! and gets the same answer; only a valid code commits anything.

pub mod handlers;
pub mod views;

use std::sync::Arc;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::app::AppState;
use crate::clock::UnixTime;
use crate::control::Reply;
use crate::store::tables::{INVITES, MEMBER_TO_INVITES, USERS};
use crate::store::{Id, Record, Store, StoreError};

/// Random bytes in a code (160 bits).
const CODE_BYTES: usize = 20;
/// Characters of a code without separators.
pub const CODE_CHARS: usize = 32;
/// Longest value of the form field that is even looked at.
const MAX_INPUT_BYTES: usize = 256;
/// Most uses one operator code may have, and most days it may last.
pub const MAX_USES: u32 = 1000;
pub const MAX_DAYS: u32 = 365;

/// How registration works (`accounts.registration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone with the address may register.
    #[default]
    Open,
    /// Registering needs an invitation code.
    Invite,
    /// Nobody may register.
    Closed,
}

/// What is stored per code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteRecord {
    /// Registrations the code still admits.
    pub uses_left: u32,
    /// Unix seconds, on the hour; the code is refused from then on.
    pub expires_at: UnixTime,
    /// The member who made it; none for the operator's codes.
    pub creator: Option<Id>,
}

impl Record for InviteRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "invitation";
}

/// A new code, as shown once. Zeroized on drop.
pub struct NewCode {
    pub text: Zeroizing<String>,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for NewCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewCode(..)")
    }
}

/// A fresh random code.
pub fn new_code() -> NewCode {
    let raw = Zeroizing::new(crate::crypto::random_bytes::<CODE_BYTES>());
    let plain = Zeroizing::new(
        data_encoding::BASE32_NOPAD
            .encode(raw.as_ref())
            .to_lowercase(),
    );
    let mut text = Zeroizing::new(String::with_capacity(CODE_CHARS + CODE_CHARS / 4));
    for (i, c) in plain.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            text.push('-');
        }
        text.push(c);
    }
    NewCode {
        text,
        hash: hash_code(&raw),
    }
}

fn hash_code(raw: &[u8; CODE_BYTES]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"ghostcache invitation v1\0");
    h.update(raw);
    h.finalize().into()
}

/// The hash of what a person typed: separators (`-`, spaces) dropped, any case. `None`
/// for anything that cannot be a code (wrong length or alphabet).
pub fn hash_input(input: &str) -> Option<[u8; 32]> {
    if input.len() > MAX_INPUT_BYTES {
        return None;
    }
    let mut plain = Zeroizing::new(String::with_capacity(CODE_CHARS));
    for c in input.chars() {
        match c {
            '-' | ' ' | '\t' => {}
            'a'..='z' | '2'..='7' => plain.push(c.to_ascii_uppercase()),
            'A'..='Z' => plain.push(c),
            _ => return None,
        }
    }
    if plain.len() != CODE_CHARS {
        return None;
    }
    let bytes = Zeroizing::new(data_encoding::BASE32_NOPAD.decode(plain.as_bytes()).ok()?);
    let raw: [u8; CODE_BYTES] = bytes.as_slice().try_into().ok()?;
    Some(hash_code(&raw))
}

/// Looked up in place of a code that cannot be one, so that a malformed code costs what
/// an unknown one does. No code hashes to it (it is not a SHA-256 of a code).
const NO_CODE: [u8; 32] = [0u8; 32];

/// Expiry of a code made at `now` for `days` days, on the hour.
fn expiry(now: UnixTime, days: u32) -> UnixTime {
    let t = now.saturating_add(i64::from(days) * 86_400);
    t - t.rem_euclid(3600)
}

/// Try to use one registration of the code typed as `input`. On success the use is spent
/// (durably) and its hash returned, to [`release`] if the registration then fails.
pub fn reserve(store: &Store, input: &str, now: UnixTime) -> Result<Option<[u8; 32]>, StoreError> {
    let hash = hash_input(input).unwrap_or(NO_CODE);
    let txn = store.write()?;
    let valid = {
        let mut invites = txn.open_table(INVITES)?;
        let record = invites
            .get(hash)?
            .map(|v| InviteRecord::decode(v.value()))
            .transpose()?;
        // The maker's row is read whether or not there is one to read.
        let maker = record.as_ref().and_then(|r| r.creator).unwrap_or([0u8; 16]);
        let maker_exists = txn.open_table(USERS)?.get(maker)?.is_some();
        match record {
            Some(mut r)
                if r.uses_left > 0
                    && now < r.expires_at
                    && (r.creator.is_none() || maker_exists) =>
            {
                r.uses_left -= 1;
                invites.insert(hash, r.encode()?.as_slice())?;
                true
            }
            _ => false,
        }
    };
    if !valid {
        // Dropped without a commit: nothing written, nothing made durable.
        return Ok(None);
    }
    txn.commit()?;
    Ok(Some(hash))
}

/// Give back a use taken by [`reserve`] when the registration failed after all (the name
/// was taken).
pub fn release(store: &Store, hash: &[u8; 32]) -> Result<(), StoreError> {
    let txn = store.write()?;
    {
        let mut invites = txn.open_table(INVITES)?;
        let record = invites
            .get(hash)?
            .map(|v| InviteRecord::decode(v.value()))
            .transpose()?;
        if let Some(mut r) = record {
            r.uses_left = r.uses_left.saturating_add(1);
            invites.insert(hash, r.encode()?.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Store an operator's code (given by its hash, hex).
pub fn store_operator_code(
    store: &Store,
    hash: [u8; 32],
    uses: u32,
    days: u32,
    now: UnixTime,
) -> Result<UnixTime, StoreError> {
    let record = InviteRecord {
        uses_left: uses,
        expires_at: expiry(now, days),
        creator: None,
    };
    let txn = store.write()?;
    txn.open_table(INVITES)?
        .insert(hash, record.encode()?.as_slice())?;
    txn.commit()?;
    Ok(record.expires_at)
}

/// `ghostcache invite`, on the server's side: check what the CLI sent and store it.
pub async fn create_by_operator(
    state: &Arc<AppState>,
    code_hash: &str,
    uses: u32,
    days: u32,
) -> Reply {
    let bad = |m: &str| Reply::Error {
        message: m.to_owned(),
    };
    let Some(hash) = parse_hex32(code_hash) else {
        return bad("malformed code hash");
    };
    if !(1..=MAX_USES).contains(&uses) {
        return bad("--uses must be between 1 and 1000");
    }
    if !(1..=MAX_DAYS).contains(&days) {
        return bad("--days must be between 1 and 365");
    }
    let now = state.clock.now();
    match state
        .store
        .run(move |s| store_operator_code(s, hash, uses, days, now))
        .await
    {
        Ok(expires) => {
            let mode = state.config.accounts.registration;
            let note = if mode == RegistrationMode::Invite {
                String::new()
            } else {
                format!(
                    "; note: accounts.registration is {}, so the register page does not ask \
                     for codes",
                    mode.name()
                )
            };
            Reply::Done {
                message: format!(
                    "invitation code stored: {uses} use{}, valid until {} UTC{note}",
                    if uses == 1 { "" } else { "s" },
                    crate::chat::views::utc_minute(expires)
                ),
            }
        }
        Err(e) => Reply::Error {
            message: e.to_string(),
        },
    }
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2)?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Hex of a hash, for the control socket.
pub fn hex32(hash: &[u8; 32]) -> String {
    use std::fmt::Write;
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl RegistrationMode {
    pub fn name(self) -> &'static str {
        match self {
            RegistrationMode::Open => "open",
            RegistrationMode::Invite => "invite",
            RegistrationMode::Closed => "closed",
        }
    }
}

/// One of a member's codes, as their settings page lists it (never the code itself).
#[derive(Debug, Clone)]
pub struct MemberCode {
    pub expires_at: UnixTime,
    pub used: bool,
}

/// A member's codes that have not expired, soonest expiry first.
pub fn member_codes(
    store: &Store,
    member: &Id,
    now: UnixTime,
) -> Result<Vec<MemberCode>, StoreError> {
    let txn = store.read()?;
    live_codes(
        &txn.open_table(MEMBER_TO_INVITES)?,
        &txn.open_table(INVITES)?,
        member,
        now,
    )
}

/// The member's codes that have not expired, from either kind of transaction.
fn live_codes(
    index: &impl ReadableTable<(Id, [u8; 32]), ()>,
    invites: &impl ReadableTable<[u8; 32], &'static [u8]>,
    member: &Id,
    now: UnixTime,
) -> Result<Vec<MemberCode>, StoreError> {
    let mut out = Vec::new();
    for row in index.range((*member, [0u8; 32])..=(*member, [0xffu8; 32]))? {
        let (k, _) = row?;
        let (_, hash) = k.value();
        if let Some(v) = invites.get(hash)? {
            let r = InviteRecord::decode(v.value())?;
            if now < r.expires_at {
                out.push(MemberCode {
                    expires_at: r.expires_at,
                    used: r.uses_left == 0,
                });
            }
        }
    }
    out.sort_by_key(|c| c.expires_at);
    Ok(out)
}

/// Why a member could not make a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberInviteError {
    /// The member already has `quota` codes that have not expired.
    Quota { quota: u32, next_free: UnixTime },
}

/// Make a single-use code for a member, within their quota.
pub fn create_for_member(
    store: &Store,
    member: &Id,
    quota: u32,
    days: u32,
    now: UnixTime,
) -> Result<Result<(NewCode, UnixTime), MemberInviteError>, StoreError> {
    let code = new_code();
    let txn = store.write()?;
    let expires_at = {
        let mut index = txn.open_table(MEMBER_TO_INVITES)?;
        let mut invites = txn.open_table(INVITES)?;
        let live = live_codes(&index, &invites, member, now)?;
        if live.len() >= usize::try_from(quota).unwrap_or(usize::MAX) {
            let next_free = live.first().map_or(now, |c| c.expires_at);
            return Ok(Err(MemberInviteError::Quota { quota, next_free }));
        }
        let record = InviteRecord {
            uses_left: 1,
            expires_at: expiry(now, days),
            creator: Some(*member),
        };
        invites.insert(code.hash, record.encode()?.as_slice())?;
        index.insert((*member, code.hash), ())?;
        record.expires_at
    };
    txn.commit()?;
    Ok(Ok((code, expires_at)))
}

/// Delete the codes a member made, however they leave (registered in the member deletion
/// cascade), inside the caller's transaction.
pub fn erase_member_in(
    txn: &redb::WriteTransaction,
    member: &Id,
    _removal: crate::store::cascade::Removal,
) -> Result<(), StoreError> {
    let mut index = txn.open_table(MEMBER_TO_INVITES)?;
    let mut invites = txn.open_table(INVITES)?;
    let hashes: Vec<[u8; 32]> = index
        .range((*member, [0u8; 32])..=(*member, [0xffu8; 32]))?
        .map(|row| row.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for hash in hashes {
        invites.remove(hash)?;
        index.remove((*member, hash))?;
    }
    Ok(())
}

/// Remove expired codes, and the codes of members whose account is gone. Returns how
/// many went.
pub fn sweep(store: &Store, now: UnixTime) -> Result<usize, StoreError> {
    let txn = store.write()?;
    let mut removed = 0;
    {
        let users = txn.open_table(USERS)?;
        let mut invites = txn.open_table(INVITES)?;
        let mut index = txn.open_table(MEMBER_TO_INVITES)?;
        let mut doomed = Vec::new();
        for row in invites.iter()? {
            let (k, v) = row?;
            let r = InviteRecord::decode(v.value())?;
            let orphan = match r.creator {
                Some(c) => users.get(c)?.is_none(),
                None => false,
            };
            if now >= r.expires_at || orphan {
                doomed.push((k.value(), r.creator));
            }
        }
        for (hash, creator) in &doomed {
            invites.remove(hash)?;
            if let Some(c) = creator {
                index.remove((*c, *hash))?;
            }
        }
        removed += doomed.len();
        // Index rows whose code is gone (a crash between two transactions cannot leave
        // one, but a stray row must not count against a quota forever).
        let mut stray = Vec::new();
        for row in index.iter()? {
            let (k, _) = row?;
            let (member, hash) = k.value();
            if invites.get(hash)?.is_none() {
                stray.push((member, hash));
            }
        }
        for key in stray {
            index.remove(key)?;
        }
    }
    txn.commit()?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join(crate::store::DB_FILE)).unwrap();
        (dir, s)
    }

    #[test]
    fn codes_are_160_bits_in_groups_and_typed_forms_normalise() {
        let c = new_code();
        assert_eq!(c.text.len(), 39, "{}", c.text.as_str());
        assert_eq!(c.text.split('-').count(), 8);
        assert_eq!(hash_input(&c.text), Some(c.hash));
        assert_eq!(hash_input(&c.text.to_uppercase()), Some(c.hash));
        assert_eq!(hash_input(&c.text.replace('-', " ")), Some(c.hash));
        assert_eq!(hash_input(&c.text.replace('-', "")), Some(c.hash));
        assert_ne!(new_code().hash, c.hash);
        assert_eq!(format!("{c:?}"), "NewCode(..)");
    }

    #[test]
    fn wrong_length_or_alphabet_is_no_code() {
        let c = new_code();
        let plain = c.text.replace('-', "");
        for bad in [
            String::new(),
            plain[..31].to_owned(),
            format!("{plain}a"),
            plain.replace(plain.chars().next().unwrap(), "1"),
            plain.replace(plain.chars().next().unwrap(), "8"),
            format!("{}=", &plain[..31]),
            format!("{}é", &plain[..31]),
            format!("{}\u{0}", &plain[..31]),
            "a".repeat(10_000),
            "../../etc/passwd".into(),
        ] {
            assert_eq!(hash_input(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_code_is_single_use_expires_and_is_refused_once_spent() {
        let (_d, s) = store();
        let c = new_code();
        let now = 1_000_000;
        store_operator_code(&s, c.hash, 1, 7, now).unwrap();
        assert_eq!(reserve(&s, "", now).unwrap(), None);
        assert_eq!(reserve(&s, &new_code().text, now).unwrap(), None);
        assert_eq!(reserve(&s, &c.text, now).unwrap(), Some(c.hash));
        assert_eq!(reserve(&s, &c.text, now).unwrap(), None, "used");
        release(&s, &c.hash).unwrap();
        assert_eq!(
            reserve(&s, &c.text, now + 7 * 86_400).unwrap(),
            None,
            "expired"
        );
        assert_eq!(reserve(&s, &c.text, now).unwrap(), Some(c.hash));
        assert_eq!(sweep(&s, now + 8 * 86_400).unwrap(), 1);
    }

    #[test]
    fn member_quota_counts_codes_until_they_expire() {
        let (_d, s) = store();
        let me = [7u8; 16];
        let now = 2_000_000;
        for _ in 0..2 {
            create_for_member(&s, &me, 2, 7, now).unwrap().unwrap();
        }
        let refused = create_for_member(&s, &me, 2, 7, now).unwrap();
        assert!(matches!(
            refused,
            Err(MemberInviteError::Quota { quota: 2, .. })
        ));
        assert_eq!(member_codes(&s, &me, now).unwrap().len(), 2);
        // The maker has no account in this store: the codes are refused and swept.
        let (code, _) = {
            let (_d2, s2) = store();
            create_for_member(&s2, &me, 2, 7, now).unwrap().unwrap()
        };
        assert_eq!(reserve(&s, &code.text, now).unwrap(), None);
        assert_eq!(sweep(&s, now).unwrap(), 2, "orphaned codes go");
        assert!(create_for_member(&s, &me, 2, 7, now).unwrap().is_ok());
    }
}
