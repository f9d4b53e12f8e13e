//! Group rules at the level of keys and rows (the HTTP tests prove the same through the
//! pages): who holds which epoch key, and that nothing else opens a message.

use redb::ReadableTableMetadata;

use super::*;
use crate::accounts::{LoginOutcome, Username};
use crate::chat::Verification;
use crate::crypto::KdfParams;
use crate::crypto::rsa_keys::RsaPrivate;
use keys::open_member_secrets;

const FAST: KdfParams = KdfParams::DANGER_FAST;

struct Member {
    id: Id,
    data_key: SecretKey,
}

use crate::accounts::secret::Presented;

fn policy() -> crate::accounts::Policy {
    crate::accounts::Policy::new(FAST, None, 30, crate::app::member_cascade()).unwrap()
}

fn member(store: &Store, name: &str) -> Member {
    let username = Username::parse(name).unwrap();
    let delivery = RsaPrivate::generate(2048).unwrap();
    let policy = policy();
    crate::accounts::create_account(
        store,
        &policy,
        &username,
        &Presented::password(b"pw-1234567"),
        &Presented::password(b"pw-7654321"),
        delivery,
        0,
    )
    .unwrap()
    .unwrap();
    match crate::accounts::check_login(
        store,
        &policy,
        &username,
        &Presented::password(b"pw-1234567"),
        0,
    )
    .unwrap()
    {
        LoginOutcome::Success {
            user_id, data_key, ..
        } => Member {
            id: user_id,
            data_key,
        },
        _ => panic!("login failed"),
    }
}

fn signing() -> SigningKey {
    SigningKey::RsaPss(RsaPrivate::generate(2048).unwrap())
}

fn connect(store: &Store, a: &Member, b: &Member, name_b: &str) {
    let id = crate::connections::request(store, &a.id, name_b, 0)
        .unwrap()
        .unwrap();
    crate::connections::accept(store, &id, &b.id, &b.data_key, &signing(), &signing(), 0)
        .unwrap()
        .unwrap();
}

fn rows<K: redb::Key + 'static, V: redb::Value + 'static>(
    store: &Store,
    table: redb::TableDefinition<K, V>,
) -> u64 {
    store
        .read()
        .unwrap()
        .open_table(table)
        .unwrap()
        .len()
        .unwrap()
}

/// The stored ciphertext of message `seq` of `group`.
fn ciphertext(store: &Store, group: &Id, seq: u64) -> String {
    let txn = store.read().unwrap();
    let table = txn.open_table(MESSAGES).unwrap();
    let bytes = table.get((*group, seq)).unwrap().unwrap();
    MessageRecord::decode(bytes.value()).unwrap().ciphertext
}

fn opens_with_any(keys: &BTreeMap<u32, SecretKey>, token: &str) -> bool {
    keys.values().any(|k| k.open(token).is_ok())
}

#[test]
fn epochs_keep_joiners_out_of_the_past_and_leavers_out_of_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.redb")).unwrap();
    let commits = crate::chat::commit::Committer::new(store.clone());
    let (a, b, c) = (
        member(&store, "anna"),
        member(&store, "bert"),
        member(&store, "cleo"),
    );
    connect(&store, &a, &b, "bert");
    connect(&store, &a, &c, "cleo");

    let g = create(&store, &a.id, &a.data_key, "Friends", &signing(), 0).unwrap();
    invite(&store, &g, &a.id, &a.data_key, "bert", 50, 0)
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        open(&store, &g, &b.id, &b.data_key).unwrap().is_none(),
        "invited is not in"
    );
    accept(&store, &g, &b.id, &b.data_key, &signing(), 0)
        .unwrap()
        .unwrap();
    let m1 = send(
        &store,
        &commits,
        &g,
        &a.id,
        &a.data_key,
        "before cleo",
        1,
        None,
    )
    .unwrap()
    .unwrap();

    invite(&store, &g, &a.id, &a.data_key, "cleo", 50, 0)
        .unwrap()
        .unwrap()
        .unwrap();
    accept(&store, &g, &c.id, &c.data_key, &signing(), 0)
        .unwrap()
        .unwrap();
    let view_c = open(&store, &g, &c.id, &c.data_key).unwrap().unwrap();
    assert_eq!(view_c.epoch, 3, "create, bert joins, cleo joins");
    assert_eq!(
        view_c.epoch_keys.keys().copied().collect::<Vec<_>>(),
        vec![3]
    );
    assert!(!opens_with_any(
        &view_c.epoch_keys,
        &ciphertext(&store, &g, m1.seq)
    ));
    assert!(view_c.history(&store, None, 50, 0).unwrap().0.is_empty());
    assert!(view_c.message(&store, m1.seq, 0).unwrap().is_none());

    let view_b = open(&store, &g, &b.id, &b.data_key).unwrap().unwrap();
    assert_eq!(
        view_b.epoch_keys.keys().copied().collect::<Vec<_>>(),
        vec![2, 3]
    );
    let before_leaving = view_b.epoch_keys;
    let left = leave(&store, &g, &b.id, 0).unwrap().unwrap();
    assert_eq!(left.remaining.len(), 2);
    let m2 = send(
        &store,
        &commits,
        &g,
        &a.id,
        &a.data_key,
        "after bert",
        2,
        None,
    )
    .unwrap()
    .unwrap();
    assert!(open(&store, &g, &b.id, &b.data_key).unwrap().is_none());
    assert!(!opens_with_any(
        &before_leaving,
        &ciphertext(&store, &g, m2.seq)
    ));
    let txn = store.read().unwrap();
    let keys = txn.open_table(GROUP_EPOCH_KEYS).unwrap();
    for row in keys.iter().unwrap() {
        let (k, _) = row.unwrap();
        assert_ne!(k.value().2, b.id, "bert holds no key row any more");
    }
    drop(keys);
    drop(txn);

    let view_c = open(&store, &g, &c.id, &c.data_key).unwrap().unwrap();
    let (shown, _) = view_c.history(&store, None, 50, 0).unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].text.as_deref(), Some("after bert"));
    assert_eq!(shown[0].status, Verification::Verified);
    let view_a = open(&store, &g, &a.id, &a.data_key).unwrap().unwrap();
    let (shown, _) = view_a.history(&store, None, 50, 0).unwrap();
    let texts: Vec<_> = shown.iter().filter_map(|m| m.text.clone()).collect();
    assert_eq!(texts, vec!["before cleo", "after bert"]);

    // Cleo sends; then her account is deleted: her rows and messages go, a new epoch starts.
    send(
        &store,
        &commits,
        &g,
        &c.id,
        &c.data_key,
        "cleo here",
        3,
        None,
    )
    .unwrap()
    .unwrap();
    let before = rows(&store, MESSAGES);
    crate::accounts::depart(&store, &policy(), &c.id).unwrap();
    assert_eq!(rows(&store, MESSAGES), before - 1);
    let view_a = open(&store, &g, &a.id, &a.data_key).unwrap().unwrap();
    assert_eq!(
        view_a.epoch, 5,
        "created, bert, cleo, bert left, cleo deleted"
    );
    assert_eq!(view_a.members.len(), 1);
    assert!(!view_a.knows(&c.id));
}

#[test]
fn creator_role_passes_on_and_the_last_one_out_deletes_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.redb")).unwrap();
    let commits = crate::chat::commit::Committer::new(store.clone());
    let (a, b) = (member(&store, "anna"), member(&store, "bert"));
    connect(&store, &a, &b, "bert");
    let g = create(&store, &a.id, &a.data_key, "Two", &signing(), 0).unwrap();
    invite(&store, &g, &a.id, &a.data_key, "bert", 50, 0)
        .unwrap()
        .unwrap()
        .unwrap();
    // A plain member: cannot invite or remove; as for a non-member, there is nothing.
    accept(&store, &g, &b.id, &b.data_key, &signing(), 0)
        .unwrap()
        .unwrap();
    assert!(
        invite(&store, &g, &b.id, &b.data_key, "anna", 50, 0)
            .unwrap()
            .is_none()
    );
    assert!(
        remove(&store, &g, &b.id, &b.data_key, &a.id, 0)
            .unwrap()
            .is_none()
    );
    send(&store, &commits, &g, &a.id, &a.data_key, "hi", 1, Some(30))
        .unwrap()
        .unwrap();
    leave(&store, &g, &a.id, 0).unwrap().unwrap();
    let view_b = open(&store, &g, &b.id, &b.data_key).unwrap().unwrap();
    assert_eq!(view_b.my_role(), Role::Creator);
    let gone = leave(&store, &g, &b.id, 0).unwrap().unwrap();
    assert!(gone.group_deleted);
    for n in [
        rows(&store, GROUPS),
        rows(&store, GROUP_MEMBERS),
        rows(&store, GROUP_EPOCH_KEYS),
        rows(&store, GROUP_MEMBER_SECRETS),
        rows(&store, MEMBER_TO_GROUPS),
        rows(&store, MESSAGES),
        rows(&store, crate::store::tables::MESSAGE_DEADLINES),
        rows(&store, crate::store::tables::GROUP_EVENTS),
    ] {
        assert_eq!(n, 0);
    }
}

#[test]
fn a_group_is_full_at_its_limit_and_invites_only_connections() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.redb")).unwrap();
    let (a, b, c) = (
        member(&store, "anna"),
        member(&store, "bert"),
        member(&store, "cleo"),
    );
    connect(&store, &a, &b, "bert");
    let g = create(&store, &a.id, &a.data_key, "Small", &signing(), 0).unwrap();
    assert_eq!(
        invite(&store, &g, &a.id, &a.data_key, "cleo", 50, 0)
            .unwrap()
            .unwrap()
            .unwrap_err(),
        InviteError::NotConnected
    );
    assert_eq!(
        invite(&store, &g, &a.id, &a.data_key, "nobody", 50, 0)
            .unwrap()
            .unwrap()
            .unwrap_err(),
        InviteError::NotConnected
    );
    assert_eq!(
        invite(&store, &g, &a.id, &a.data_key, "bert", 1, 0)
            .unwrap()
            .unwrap()
            .unwrap_err(),
        InviteError::Full(1)
    );
    assert!(
        invite(&store, &g, &c.id, &c.data_key, "bert", 50, 0)
            .unwrap()
            .is_none(),
        "a non-member learns nothing"
    );
    assert_eq!(rows(&store, GROUP_INVITES), 0);
}

/// Someone who can write the file swaps a member's public key on their membership
/// record: readers who had seen the real key no longer verify that member's messages,
/// and a reader whose secrets came from an earlier version vouches on first use.
#[test]
fn a_member_key_swapped_in_the_file_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.redb")).unwrap();
    let commits = crate::chat::commit::Committer::new(store.clone());
    let (a, b) = (member(&store, "anna"), member(&store, "bert"));
    connect(&store, &a, &b, "bert");
    let g = create(&store, &a.id, &a.data_key, "Keys", &signing(), 0).unwrap();
    invite(&store, &g, &a.id, &a.data_key, "bert", 50, 0)
        .unwrap()
        .unwrap()
        .unwrap();
    accept(&store, &g, &b.id, &b.data_key, &signing(), 0)
        .unwrap()
        .unwrap();
    send(
        &store,
        &commits,
        &g,
        &b.id,
        &b.data_key,
        "from bert",
        1,
        None,
    )
    .unwrap()
    .unwrap();
    let statuses = |m: &Member| {
        let view = open(&store, &g, &m.id, &m.data_key).unwrap().unwrap();
        let (shown, _) = view.history(&store, None, 50, 0).unwrap();
        shown.iter().map(|s| s.status).collect::<Vec<_>>()
    };
    assert_eq!(statuses(&a), vec![Verification::Verified]);

    // The forger writes their own key on bert's membership and re-signs bert's message.
    let forger = signing();
    let swap = |key: VerifyingKey, signer: &SigningKey| {
        let txn = store.write().unwrap();
        {
            let mut t = txn.open_table(GROUP_MEMBERS).unwrap();
            let mut r =
                MembershipRecord::decode(t.get((g, b.id)).unwrap().unwrap().value()).unwrap();
            r.verifying_key = key;
            t.insert((g, b.id), r.encode().unwrap().as_slice()).unwrap();
            let mut m = txn.open_table(MESSAGES).unwrap();
            let (seq, mut msg) = {
                let (k, v) = m.first().unwrap().unwrap();
                (k.value().1, MessageRecord::decode(v.value()).unwrap())
            };
            msg.signature = signer.sign(&msg.signed_bytes(&g, seq)).unwrap();
            m.insert((g, seq), msg.encode().unwrap().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    };
    let real = signing_of(&store, &g, &b.id);
    let bert_signs = open_member_secrets(&store, &g, &b.id, &b.data_key)
        .unwrap()
        .unwrap()
        .signing_key()
        .unwrap();
    swap(forger.verifying_key().unwrap(), &forger);
    assert_eq!(statuses(&a), vec![Verification::BadSignature]);
    assert_eq!(statuses(&b), vec![Verification::BadSignature]);
    swap(real.clone(), &bert_signs);
    assert_eq!(statuses(&a), vec![Verification::Verified]);

    // Secrets of an earlier version (no book): the first open vouches for what the file
    // holds then, and from then on a swap is caught.
    let old = {
        let mine = open_member_secrets(&store, &g, &a.id, &a.data_key)
            .unwrap()
            .unwrap();
        let (scheme, der) = mine.signing_key().unwrap().to_tagged_der().unwrap();
        let mut p = vec![scheme];
        p.extend_from_slice(mine.name_key().expose());
        p.extend_from_slice(&der);
        MemberSecretsRecord {
            token: a.data_key.seal(&p).unwrap(),
        }
    };
    let txn = store.write().unwrap();
    txn.open_table(GROUP_MEMBER_SECRETS)
        .unwrap()
        .insert((g, a.id), old.encode().unwrap().as_slice())
        .unwrap();
    txn.commit().unwrap();
    assert_eq!(statuses(&a), vec![Verification::Verified]);
    swap(forger.verifying_key().unwrap(), &forger);
    assert_eq!(statuses(&a), vec![Verification::BadSignature]);
}

/// The verifying key on `member`'s membership record.
fn signing_of(store: &Store, g: &Id, member: &Id) -> VerifyingKey {
    let txn = store.read().unwrap();
    let t = txn.open_table(GROUP_MEMBERS).unwrap();
    MembershipRecord::decode(t.get((*g, *member)).unwrap().unwrap().value())
        .unwrap()
        .verifying_key
}

#[test]
fn an_admin_takes_over_before_older_members_and_every_change_is_an_event() {
    use events::EventKind;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.redb")).unwrap();
    let (a, b, c) = (
        member(&store, "anna"),
        member(&store, "bert"),
        member(&store, "cleo"),
    );
    connect(&store, &a, &b, "bert");
    connect(&store, &a, &c, "cleo");
    let g = create(&store, &a.id, &a.data_key, "Roles", &signing(), 0).unwrap();
    for (m, name) in [(&b, "bert"), (&c, "cleo")] {
        invite(&store, &g, &a.id, &a.data_key, name, 50, 1)
            .unwrap()
            .unwrap()
            .unwrap();
        accept(&store, &g, &m.id, &m.data_key, &signing(), 2)
            .unwrap()
            .unwrap();
    }
    let make =
        |who: &Member, change| change_role(&store, &g, &who.id, &who.data_key, change, 3).unwrap();
    // Only the creator makes admins; an admin cannot make another.
    assert_eq!(make(&b, RoleChange::MakeAdmin(c.id)), None);
    assert_eq!(make(&a, RoleChange::MakeAdmin(c.id)), Some(Ok(())));
    assert_eq!(
        make(&a, RoleChange::MakeAdmin(c.id)),
        Some(Err(RoleError::AlreadyAdmin))
    );
    assert_eq!(make(&c, RoleChange::MakeAdmin(b.id)), None);
    // An admin removes plain members, never the creator.
    assert!(
        remove(&store, &g, &c.id, &c.data_key, &a.id, 4)
            .unwrap()
            .is_none()
    );
    let epoch_before = open(&store, &g, &a.id, &a.data_key).unwrap().unwrap().epoch;
    leave(&store, &g, &a.id, 5).unwrap().unwrap();
    let view = open(&store, &g, &c.id, &c.data_key).unwrap().unwrap();
    assert_eq!(
        view.my_role(),
        Role::Creator,
        "the admin, not the older bert"
    );
    assert!(view.roles.admins.is_empty());
    assert_eq!(view.epoch, epoch_before + 1, "a departure starts an epoch");
    // c reads the events of her membership: from her joining on.
    let kinds: Vec<EventKind> = view
        .events(&store, 0, u64::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Joined { whom: c.id },
            EventKind::MadeAdmin {
                by: a.id,
                whom: c.id
            },
            EventKind::Left { whom: a.id },
            EventKind::HandedOver { by: None, to: c.id },
        ]
    );
    // b, there from earlier, also reads their own joining and c's invitation.
    let view_b = open(&store, &g, &b.id, &b.data_key).unwrap().unwrap();
    let events = view_b.events(&store, 0, u64::MAX).unwrap();
    assert_eq!(
        events.len(),
        6,
        "joined, invited, joined, admin, left, handed over"
    );
    assert_eq!(events[1].name_of(&c.id), Some("cleo"));
}

#[test]
fn version_1_invitations_still_open_and_are_resealed_once_seen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.redb")).unwrap();
    let (a, b) = (member(&store, "anna"), member(&store, "bert"));
    connect(&store, &a, &b, "bert");
    let g = create(&store, &a.id, &a.data_key, "Old", &signing(), 0).unwrap();
    invite(&store, &g, &a.id, &a.data_key, "bert", 50, 0)
        .unwrap()
        .unwrap()
        .unwrap();
    // Rewrite the invitation as a version-1 record (sealed to the delivery key).
    let stored = |store: &Store| {
        let txn = store.read().unwrap();
        let t = txn.open_table(GROUP_INVITES).unwrap();
        t.get((b.id, g)).unwrap().unwrap().value().to_vec()
    };
    let current = InviteRecord::decode(&stored(&store)).unwrap();
    let Sealed::ToDelivery(blob) = &current.name_key else {
        panic!("sealed to the delivery key until seen");
    };
    #[derive(Serialize)]
    struct V1<'a> {
        inviter: Id,
        day: i64,
        name_key: &'a hybrid::HybridSealed,
    }
    let mut v1 = vec![1u8];
    v1.extend(
        postcard::to_stdvec(&V1 {
            inviter: a.id,
            day: 0,
            name_key: blob,
        })
        .unwrap(),
    );
    let txn = store.write().unwrap();
    txn.open_table(GROUP_INVITES)
        .unwrap()
        .insert((b.id, g), v1.as_slice())
        .unwrap();
    txn.commit().unwrap();

    let seen = invitations(&store, &b.id, &b.data_key).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].name, "Old");
    let again = InviteRecord::decode(&stored(&store)).unwrap();
    assert!(
        matches!(again.name_key, Sealed::UnderDataKey(_)),
        "re-sealed under bert's data key: no RSA next time"
    );
    assert_eq!(
        invitations(&store, &b.id, &b.data_key).unwrap()[0].name,
        "Old"
    );
    accept(&store, &g, &b.id, &b.data_key, &signing(), 1)
        .unwrap()
        .unwrap();
    assert_eq!(
        open(&store, &g, &b.id, &b.data_key).unwrap().unwrap().name,
        "Old"
    );
}

#[test]
fn names_are_checked() {
    assert_eq!(clean_name("  Book club "), Ok("Book club".into()));
    assert_eq!(clean_name("   "), Err(NameError::Empty));
    assert_eq!(clean_name(&"x".repeat(65)), Err(NameError::TooLong));
    assert_eq!(clean_name("a\nb"), Err(NameError::ControlCharacters));
    assert_eq!(clean_name(&"é".repeat(64)).unwrap().chars().count(), 64);
}
