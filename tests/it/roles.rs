//! Group roles and permissions through the group page's forms: the creator makes admins,
//! demotes them and hands the group over; admins invite and remove members; members
//! invite only when the group allows it; anyone without the right gets the not-found page
//! and nothing changes; every change shows in the group as an event. And the group
//! invitations' own quota.

use hyper::StatusCode;

use crate::connections::member_id;
use crate::groups::{
    add, create_group, gpath, gsay, id_of, invite, join, member_rows, members, post_on_group, read,
    roomy,
};
use crate::support::chat::{connect, dump, rows};
use crate::support::{Client, Resp, TestServer};
use ghostcache::store::Store;
use ghostcache::store::tables::{
    GROUP_EPOCH_KEYS, GROUP_EVENTS, GROUP_INVITES, GROUP_MEMBERS, GROUP_TO_INVITEES, GROUPS,
};

/// Everything about groups in the store except the epoch keys' bytes (which a member's
/// first look re-seals under their own key), whose rows are counted.
fn group_state(store: &Store) -> impl PartialEq + std::fmt::Debug {
    (
        dump(store, GROUPS),
        dump(store, GROUP_MEMBERS),
        dump(store, GROUP_INVITES),
        dump(store, GROUP_TO_INVITEES),
        dump(store, GROUP_EVENTS),
        rows(store, GROUP_EPOCH_KEYS),
    )
}

/// POST a management form of the group page (`/chat/promote`, …) naming `member`.
async fn manage(c: &mut Client, group: &str, action: &str, member: &str) -> Resp {
    post_on_group(c, group, action, &[("group", group), ("member", member)]).await
}

/// The status line of the page a redirect leads to.
async fn notice_after(c: &mut Client, r: &Resp) -> String {
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let page = c.get(r.header("location").unwrap()).await;
    page.texts("p.notice[role=status]").concat()
}

/// The events a member reads on the group page, oldest first.
async fn events(c: &mut Client, group: &str) -> Vec<String> {
    let mut out = c.get(&gpath(group)).await.texts("section.history p.event");
    out.reverse();
    out.into_iter()
        .map(|e| {
            e.split_once(" UTC ")
                .map_or(e.clone(), |(_, s)| s.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_invite_and_remove_and_members_without_the_right_change_nothing() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "carol", "dave", "erin"]).await;
    let [a, b, c, d, e] = cs.as_mut_slice() else {
        panic!()
    };
    connect(a, b, "bob").await;
    connect(a, c, "carol").await;
    connect(b, d, "dave").await;
    connect(c, e, "erin").await;
    let g = create_group(a, "Roles").await;
    add(a, &g, b, "bob").await;
    add(a, &g, c, "carol").await;
    let store = &server.state().store;
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(|n| member_id(store, n));

    // carol is a plain member: no management forms, and every action is "not found".
    let page = c.get(&gpath(&g)).await;
    for action in [
        "/chat/invite",
        "/chat/remove",
        "/chat/promote",
        "/chat/demote",
        "/chat/handover",
        "/chat/group-settings",
    ] {
        assert!(
            !page.text().contains(&format!("action=\"{action}\"")),
            "{action} offered to a plain member"
        );
    }
    let before = group_state(store);
    let not_found = c.get(&gpath("nothing")).await.texts("main");
    let tries: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/chat/invite", vec![("username", "erin")]),
        ("/chat/remove", vec![("member", bob.as_str())]),
        ("/chat/promote", vec![("member", carol.as_str())]),
        ("/chat/demote", vec![("member", bob.as_str())]),
        ("/chat/handover", vec![("member", carol.as_str())]),
        ("/chat/group-settings", vec![("members_invite", "1")]),
    ];
    for (action, fields) in &tries {
        let mut all = vec![("group", g.as_str())];
        all.extend_from_slice(fields);
        let r = post_on_group(c, &g, action, &all).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{action}");
        assert_eq!(
            r.texts("main"),
            not_found,
            "{action}: the one not-found page"
        );
    }
    assert_eq!(group_state(store), before, "nothing changed");

    // alice makes bob an admin.
    let r = manage(a, &g, "/chat/promote", &bob).await;
    assert!(notice_after(a, &r).await.contains("now an admin"));
    let page = c.get(&gpath(&g)).await;
    assert!(
        page.texts(".members li")
            .iter()
            .any(|l| l.starts_with("bob (admin)"))
    );
    assert!(
        events(c, &g)
            .await
            .contains(&"alice made bob an admin.".to_owned())
    );

    // bob, admin, invites his own connection dave, who joins; and removes him.
    assert_eq!(invite(b, &g, "dave").await.status, StatusCode::SEE_OTHER);
    join(d, &g).await;
    let epoch_before = rows(store, GROUP_EPOCH_KEYS);
    let r = manage(b, &g, "/chat/remove", &dave).await;
    assert!(notice_after(b, &r).await.contains("has been removed"));
    assert!(rows(store, GROUP_EPOCH_KEYS) > epoch_before, "a new epoch");
    assert_eq!(d.get(&gpath(&g)).await.status, StatusCode::NOT_FOUND);
    gsay(a, &g, "after dave", "").await;
    assert_eq!(d.get(&gpath(&g)).await.status, StatusCode::NOT_FOUND);
    let [_, secrets, _, keys, _] = member_rows(store, &id_of(store, "dave"));
    assert_eq!((secrets, keys), (0, 0), "dave holds no key of the group");
    assert!(!d.get("/chat/poll").await.text().contains("after dave"));
    assert_eq!(read(b, &g).await, vec!["after dave"]);

    // An admin cannot remove the creator, make admins, or change the setting.
    let before = group_state(store);
    for (action, member) in [
        ("/chat/remove", alice.as_str()),
        ("/chat/promote", carol.as_str()),
        ("/chat/handover", carol.as_str()),
    ] {
        let r = manage(b, &g, action, member).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "admin {action}");
    }
    let r = post_on_group(
        b,
        &g,
        "/chat/group-settings",
        &[("group", &g), ("members_invite", "1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(group_state(store), before, "nothing changed");

    // alice demotes bob: he cannot invite any more.
    let r = manage(a, &g, "/chat/demote", &bob).await;
    assert!(notice_after(a, &r).await.contains("no longer an admin"));
    let r = invite(b, &g, "dave").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // alice lets every member invite: carol invites her connection erin. bob, a plain
    // member, cannot withdraw carol's invitation; carol can.
    let r = post_on_group(
        a,
        &g,
        "/chat/group-settings",
        &[("group", &g), ("members_invite", "1")],
    )
    .await;
    assert!(
        notice_after(a, &r)
            .await
            .contains("every member may now invite")
    );
    assert_eq!(invite(c, &g, "erin").await.status, StatusCode::SEE_OTHER);
    let erin = member_id(store, "erin");
    let r = manage(b, &g, "/chat/remove", &erin).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = manage(c, &g, "/chat/remove", &erin).await;
    assert!(notice_after(c, &r).await.contains("withdrawn"));
    assert_eq!(rows(store, GROUP_INVITES), 0);

    // alice hands the group over to carol and stays as an admin.
    let r = manage(a, &g, "/chat/handover", &carol).await;
    assert!(notice_after(a, &r).await.contains("handed over"));
    let page = c.get(&gpath(&g)).await;
    assert!(
        page.texts("p.status")
            .concat()
            .contains("you are its creator")
    );
    assert!(
        page.texts(".members li")
            .iter()
            .any(|l| l.starts_with("alice (admin)"))
    );
    let r = post_on_group(a, &g, "/chat/group-settings", &[("group", &g)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "no longer the creator");
    let r = post_on_group(c, &g, "/chat/group-settings", &[("group", &g)]).await;
    assert!(
        notice_after(c, &r)
            .await
            .contains("only you and the admins invite")
    );
    // alice, admin now, steps down herself.
    let r = manage(a, &g, "/chat/demote", &alice).await;
    assert!(
        notice_after(a, &r)
            .await
            .contains("You are no longer an admin")
    );

    // Every change is in the history, for those who were there.
    let seen = events(b, &g).await;
    let expected = [
        "You joined.",
        "alice invited carol.",
        "carol joined.",
        "alice made you an admin.",
        "You invited dave.",
        "dave joined.",
        "You removed dave.",
        "alice removed the admin role of you.",
        "alice let every member invite their own connections.",
        "carol invited erin.",
        "carol withdrew the invitation of erin.",
        "alice handed the group over to carol.",
        "carol made inviting the task of the creator and admins again.",
        "alice stepped down as admin.",
    ];
    assert_eq!(seen, expected, "{seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inviting_twenty_connections_in_one_minute_works_with_the_default_quotas() {
    // Default rate limits (5 connection requests a minute); DSA keys, quick to make.
    let server = TestServer::start_with(|c| c.crypto.rsa_pool_size = 8).await;
    let mut owner = server.client();
    owner.member("owner").await;
    let dsa = [("scheme", "dsa")];
    owner
        .submit("/settings/signature", "/settings/signature", &dsa)
        .await;
    let mut names = Vec::new();
    for i in 1..=20 {
        let name = format!("friend{i:02}");
        let mut c = server.client();
        c.member(&name).await;
        c.submit("/settings/signature", "/settings/signature", &dsa)
            .await;
        connect(&mut c, &mut owner, "owner").await;
        names.push(name);
    }
    let g = create_group(&mut owner, "Twenty").await;
    for name in &names {
        let r = invite(&mut owner, &g, name).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{name}: {}", r.text());
    }
    let page = owner.get(&gpath(&g)).await;
    assert_eq!(page.texts(".pending .name").len(), 20);
    // Connection requests kept their own quota.
    let mut late = server.client();
    late.member("latecomer").await;
    let r = owner
        .submit("/connections", "/connect", &[("username", "latecomer")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_invitations_have_their_own_quota_with_a_burst_of_a_whole_group() {
    let server = TestServer::start_with(|c| {
        c.rate_limits.group_invites_per_minute = 1;
        c.chat.max_group_members = 3;
    })
    .await;
    let mut cs = members(&server, &["owner", "mem1", "mem2", "mem3"]).await;
    let (owner, rest) = cs.split_first_mut().unwrap();
    for c in rest.iter_mut() {
        connect(c, owner, "owner").await;
    }
    let g = create_group(owner, "Small").await;
    // A burst of max_group_members: two invitations fill the group, the third is
    // refused as full (and counted), the fourth is over the quota.
    assert_eq!(
        invite(owner, &g, "mem1").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        invite(owner, &g, "mem2").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(invite(owner, &g, "mem3").await.status, StatusCode::CONFLICT);
    assert_eq!(
        invite(owner, &g, "mem3").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_form_and_delete_form_needs_its_csrf_token() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let b = &mut rest[0];
    let ab = connect(a, b, "bob").await;
    let g = create_group(a, "Guarded").await;
    add(a, &g, b, "bob").await;
    gsay(a, &g, "guarded", "").await;
    crate::support::chat::say(a, &ab, "guarded too").await;
    let store = &server.state().store;
    let bob = member_id(store, "bob");
    let foreign = b.get("/chat/groups").await.form_csrf("/chat/create");
    let before = (
        group_state(store),
        dump(store, ghostcache::store::tables::MESSAGES),
    );
    let group_delete = format!("{}/delete", gpath(&g));
    let chat_delete = format!("/chat/{ab}/delete");
    let posts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/chat/promote", vec![("group", &g), ("member", &bob)]),
        ("/chat/demote", vec![("group", &g), ("member", &bob)]),
        ("/chat/handover", vec![("group", &g), ("member", &bob)]),
        (
            "/chat/group-settings",
            vec![("group", &g), ("members_invite", "1")],
        ),
        (&group_delete, vec![("seq", "4"), ("message", "x")]),
        (&chat_delete, vec![("seq", "1"), ("message", "x")]),
    ];
    for (path, fields) in posts {
        for token in [None, Some("wrong"), Some(foreign.as_str())] {
            let mut f = fields.clone();
            if let Some(t) = token {
                f.push(("csrf", t));
            }
            let r = a.post_form(path, &f).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with {token:?}");
        }
    }
    let after = (
        group_state(store),
        dump(store, ghostcache::store::tables::MESSAGES),
    );
    assert!(after == before, "nothing changed");
}
