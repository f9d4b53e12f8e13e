//! Restricted discovery (onion-service client authorization): the descriptor that tells
//! Tor clients how to reach the service is encrypted to a list of x25519 keys, so that
//! only holders of one of the matching private keys can even find the service.
//!
//! The database keeps each client's *public* key under a name the operator chose. The
//! private key is made by `ghostcache client-auth add`, printed once for the member
//! (in the form Tor Browser's "Onion Service Authentication" prompt takes, and as the line
//! a C tor `ClientOnionAuthDir` file takes) and never stored anywhere; or the member makes
//! the pair themselves and the operator adds only its public half (`--public-key`).
//!
//! arti refuses restricted discovery with an empty list, and it would publish the number
//! of authorized clients to anyone who knows the address (the count of `auth-client`
//! lines). So the list handed to arti is padded with throw-away keys, whose private halves
//! are dropped at once, to a multiple of 16 (as C tor does): with no client at all the
//! service is then reachable by nobody, and the descriptor shows only a rounded count.
//! There is always at least one throw-away key, fresh each time the list is built, so two
//! lists built from the same clients always differ (see `control::apply_clients`, which
//! relies on that to hand arti the same clients again).

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use tor_hscrypto::pk::HsClientDescEncKey;
use tor_hsservice::config::restricted_discovery::HsClientNickname;
use tor_llcrypto::pk::curve25519;
use zeroize::Zeroizing;

use crate::clock::UnixTime;
use crate::store::tables::CLIENT_AUTH;
use crate::store::{Record, Store, StoreError};

/// Most clients one service can authorize: one fewer than arti's recommended limit
/// (beyond which the descriptor may exceed the 50 kB Tor allows), leaving room for the
/// one throw-away key every list carries.
pub const MAX_CLIENTS: usize =
    tor_hsservice::config::restricted_discovery::MAX_RESTRICTED_DISCOVERY_CLIENTS - 1;

/// The list handed to arti is padded to a multiple of this with throw-away keys.
const PAD_MULTIPLE: usize = 16;

/// Longest client name.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a client-authorization command was refused. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    #[error(
        "{0:?} is not a client name: use 1 to 32 lowercase letters (a-z), digits, - and _, \
         starting with a letter or a digit ({1})"
    )]
    BadName(String, &'static str),
    #[error(
        "that is not a client public key: expected descriptor:x25519: followed by the 52 \
         base32 characters of an x25519 public key ({0})"
    )]
    BadKey(String),
    #[error("a client named {0} is already authorized; remove it first or choose another name")]
    Exists(String),
    #[error("no client named {0} is authorized")]
    Unknown(String),
    #[error("that public key is already authorized, as {0}")]
    DuplicateKey(String),
    #[error("at most {MAX_CLIENTS} clients can be authorized (Tor's descriptor size limit)")]
    TooMany,
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A client's name: `[a-z0-9][a-z0-9_-]{0,31}`. Valid as an arti client nickname and as a
/// file name, with nothing that a path or a shell could read specially.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientName(String);

impl ClientName {
    pub fn parse(raw: &str) -> Result<Self, ClientAuthError> {
        let bad = |why: &'static str| Err(ClientAuthError::BadName(shown(raw), why));
        let Some(first) = raw.chars().next() else {
            return bad("it is empty");
        };
        if raw.chars().count() > MAX_NAME_CHARS {
            return bad("it is longer than 32 characters");
        }
        if raw.contains(['/', '\\', '.']) {
            return bad("it contains a path character");
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return bad("it must start with a letter or a digit");
        }
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return bad(match c {
                c if c.is_ascii_uppercase() => "it contains an upper-case letter",
                c if c.is_control() => "it contains a control character",
                _ => "it contains a character outside a-z, 0-9, - and _",
            });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name as it may be echoed in an error: at most 40 characters, control characters
/// escaped by `{:?}`.
fn shown(raw: &str) -> String {
    raw.chars().take(40).collect()
}

/// What is stored per client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientAuthRecord {
    /// The x25519 public key (`KP_hsc_desc_enc`).
    pub public_key: [u8; 32],
    /// Day number (Unix time / 86400) it was added.
    pub added_day: i64,
}

impl Record for ClientAuthRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "client authorization";
}

/// A freshly made client key pair. The private half is shown once and dropped (zeroized).
pub struct NewClientKey {
    secret: Zeroizing<[u8; 32]>,
    pub public: [u8; 32],
}

impl std::fmt::Debug for NewClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewClientKey(..)")
    }
}

impl NewClientKey {
    /// A new random x25519 key pair (the private scalar clamped, as Tor stores it).
    pub fn generate() -> Self {
        let mut secret = Zeroizing::new(crate::crypto::random_bytes::<32>());
        if let Some(b) = secret.first_mut() {
            *b &= 248;
        }
        if let Some(b) = secret.last_mut() {
            *b = (*b & 127) | 64;
        }
        let public = curve25519::PublicKey::from(&curve25519::StaticSecret::from(*secret));
        Self {
            public: public.to_bytes(),
            secret,
        }
    }

    /// The private key as Tor Browser's "Onion Service Authentication" prompt takes it:
    /// 52 base32 characters (upper case, no padding), as C tor writes it.
    pub fn private_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::BASE32_NOPAD.encode(self.secret.as_ref()))
    }

    /// The line a C tor client reads from a `<name>.auth_private` file in its
    /// `ClientOnionAuthDir`: `<address without .onion>:descriptor:x25519:<private key>`.
    pub fn auth_private_line(&self, onion_address: &str) -> Zeroizing<String> {
        let host = onion_address.trim_end_matches(".onion");
        Zeroizing::new(format!(
            "{host}:descriptor:x25519:{}",
            self.private_base32().as_str()
        ))
    }
}

/// `descriptor:x25519:<52 base32 characters>`, the form of the public key C tor and arti
/// read (and the one `--public-key` takes).
pub fn format_public(public: &[u8; 32]) -> String {
    HsClientDescEncKey::from(curve25519::PublicKey::from(*public)).to_string()
}

/// Parse a public key given by a member (`descriptor:x25519:…`; base32 in either case).
pub fn parse_public(text: &str) -> Result<[u8; 32], ClientAuthError> {
    let text = text.trim();
    if text.len() > 128 {
        return Err(ClientAuthError::BadKey("it is far too long".into()));
    }
    let key: HsClientDescEncKey =
        text.parse()
            .map_err(|e: tor_hscrypto::pk::HsClientDescEncKeyParseError| {
                ClientAuthError::BadKey(e.to_string())
            })?;
    let bytes = key.as_bytes().to_owned();
    if bytes == [0u8; 32] {
        return Err(ClientAuthError::BadKey("the all-zero key".into()));
    }
    Ok(bytes)
}

/// Authorize a client. Refuses a taken name, a key already present, and more than
/// [`MAX_CLIENTS`].
pub fn add(
    store: &Store,
    name: &ClientName,
    public: [u8; 32],
    now: UnixTime,
) -> Result<(), ClientAuthError> {
    let txn = store.write()?;
    {
        let mut table = txn.open_table(CLIENT_AUTH).map_err(StoreError::from)?;
        if table
            .get(name.as_str())
            .map_err(StoreError::from)?
            .is_some()
        {
            return Err(ClientAuthError::Exists(name.as_str().to_owned()));
        }
        let mut count = 0usize;
        for row in table.iter().map_err(StoreError::from)? {
            let (k, v) = row.map_err(StoreError::from)?;
            let record = ClientAuthRecord::decode(v.value())?;
            if crate::crypto::ct_eq(&record.public_key, &public) {
                return Err(ClientAuthError::DuplicateKey(k.value().to_owned()));
            }
            count += 1;
        }
        if count >= MAX_CLIENTS {
            return Err(ClientAuthError::TooMany);
        }
        let record = ClientAuthRecord {
            public_key: public,
            added_day: now.div_euclid(86_400),
        };
        table
            .insert(name.as_str(), record.encode()?.as_slice())
            .map_err(StoreError::from)?;
    }
    txn.commit().map_err(StoreError::from)?;
    Ok(())
}

/// Remove a client's authorization.
pub fn remove(store: &Store, name: &ClientName) -> Result<(), ClientAuthError> {
    let txn = store.write()?;
    let existed = txn
        .open_table(CLIENT_AUTH)
        .map_err(StoreError::from)?
        .remove(name.as_str())
        .map_err(StoreError::from)?
        .is_some();
    if !existed {
        return Err(ClientAuthError::Unknown(name.as_str().to_owned()));
    }
    txn.commit().map_err(StoreError::from)?;
    Ok(())
}

/// Every authorized client, by name.
pub fn list(store: &Store) -> Result<Vec<(String, ClientAuthRecord)>, StoreError> {
    let txn = store.read()?;
    let table = txn.open_table(CLIENT_AUTH)?;
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        out.push((k.value().to_owned(), ClientAuthRecord::decode(v.value())?));
    }
    Ok(out)
}

/// The keys to hand arti: every authorized client under its name, then throw-away keys
/// (named `_pad<n>`, which no client name can be) up to the next multiple of 16 above the
/// number of clients: at least one, and at least 16 keys in all.
pub fn keys_for_arti(
    clients: &[(String, ClientAuthRecord)],
) -> Result<Vec<(HsClientNickname, HsClientDescEncKey)>, String> {
    let mut out = Vec::with_capacity(clients.len().next_multiple_of(PAD_MULTIPLE));
    for (name, record) in clients {
        let nickname: HsClientNickname = name
            .parse()
            .map_err(|e| format!("stored client name is not valid: {e}"))?;
        out.push((
            nickname,
            HsClientDescEncKey::from(curve25519::PublicKey::from(record.public_key)),
        ));
    }
    let target = (clients.len() + 1).next_multiple_of(PAD_MULTIPLE);
    for i in clients.len()..target {
        let nickname: HsClientNickname = format!("_pad{i}")
            .parse()
            .map_err(|e| format!("padding name: {e}"))?;
        let throwaway = NewClientKey::generate();
        out.push((
            nickname,
            HsClientDescEncKey::from(curve25519::PublicKey::from(throwaway.public)),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_slugs_without_path_characters() {
        for good in ["alice", "a", "bob-2", "x_y", "0day", &"a".repeat(32)] {
            assert!(ClientName::parse(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("../etc", "path"),
            ("a/b", "path"),
            ("a.b", "path"),
            ("a\\b", "path"),
            ("Alice", "start"),
            ("aLice", "upper-case"),
            ("-a", "start"),
            ("_a", "start"),
            ("a b", "outside"),
            ("a\u{0}b", "control"),
            ("é", "start"),
            (&"a".repeat(33), "longer"),
        ] {
            let e = ClientName::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_generated_key_round_trips_and_matches_its_private_half() {
        let k = NewClientKey::generate();
        let private = k.private_base32();
        assert_eq!(private.len(), 52);
        assert!(
            private
                .chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))
        );
        let public = format_public(&k.public);
        assert!(public.starts_with("descriptor:x25519:"), "{public}");
        assert_eq!(parse_public(&public).unwrap(), k.public);
        assert_eq!(parse_public(&public.to_lowercase()).unwrap(), k.public);
        // The private key decodes to a scalar whose public key is the stored one.
        let bytes: [u8; 32] = data_encoding::BASE32_NOPAD
            .decode(private.as_bytes())
            .unwrap()
            .try_into()
            .unwrap();
        let derived = curve25519::PublicKey::from(&curve25519::StaticSecret::from(bytes));
        assert_eq!(derived.to_bytes(), k.public);
        let line = k.auth_private_line("abc.onion");
        assert_eq!(
            line.as_str(),
            format!("abc:descriptor:x25519:{}", private.as_str())
        );
        assert_eq!(format!("{k:?}"), "NewClientKey(..)");
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        let good = format_public(&NewClientKey::generate().public);
        let b32 = good.trim_start_matches("descriptor:x25519:");
        for bad in [
            String::new(),
            "descriptor:x25519:".into(),
            b32.to_owned(),
            format!("descriptor:ed25519:{b32}"),
            format!("x25519:{b32}"),
            format!("descriptor:x25519:{}", &b32[..51]),
            format!("descriptor:x25519:{b32}A"),
            format!("descriptor:x25519:{}1", &b32[..51]),
            format!("descriptor:x25519:{}", "A".repeat(200)),
            format!("descriptor:x25519:{}", "A".repeat(52)),
            format!("{good}:extra"),
        ] {
            assert!(parse_public(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arti_gets_a_padded_list() {
        assert_eq!(keys_for_arti(&[]).unwrap().len(), 16);
        let rec = |i: u8| {
            (
                format!("c{i}"),
                ClientAuthRecord {
                    public_key: NewClientKey::generate().public,
                    added_day: i64::from(i),
                },
            )
        };
        let three: Vec<_> = (0..3).map(rec).collect();
        let keys = keys_for_arti(&three).unwrap();
        assert_eq!(keys.len(), 16);
        assert_eq!(keys[0].0.to_string(), "c0");
        let seventeen: Vec<_> = (0..17).map(rec).collect();
        assert_eq!(keys_for_arti(&seventeen).unwrap().len(), 32);
        // A full multiple still gets a throw-away key, so building the list twice from
        // the same clients gives two different lists.
        let sixteen: Vec<_> = (0..16).map(rec).collect();
        let (a, b) = (
            keys_for_arti(&sixteen).unwrap(),
            keys_for_arti(&sixteen).unwrap(),
        );
        assert_eq!(a.len(), 32);
        assert!(a[16].1 != b[16].1, "fresh throw-away keys each time");
        assert!(
            a[..16] == b[..16],
            "the clients themselves in the same order"
        );
        let most: Vec<_> = (0..MAX_CLIENTS as u8).map(rec).collect();
        assert_eq!(
            keys_for_arti(&most).unwrap().len(),
            tor_hsservice::config::restricted_discovery::MAX_RESTRICTED_DISCOVERY_CLIENTS,
            "never beyond arti's limit"
        );
    }

    #[test]
    fn add_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(crate::store::DB_FILE)).unwrap();
        let alice = ClientName::parse("alice").unwrap();
        let key = NewClientKey::generate().public;
        add(&store, &alice, key, 86_400 * 3).unwrap();
        assert!(matches!(
            add(&store, &alice, NewClientKey::generate().public, 0),
            Err(ClientAuthError::Exists(_))
        ));
        let bob = ClientName::parse("bob").unwrap();
        assert!(matches!(
            add(&store, &bob, key, 0),
            Err(ClientAuthError::DuplicateKey(n)) if n == "alice"
        ));
        let all = list(&store).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.added_day, 3);
        remove(&store, &alice).unwrap();
        assert!(matches!(
            remove(&store, &alice),
            Err(ClientAuthError::Unknown(_))
        ));
        assert!(list(&store).unwrap().is_empty());
    }
}
