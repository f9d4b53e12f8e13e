//! What the log says at the default level after members have done everything a member
//! can do: only what the server itself did (start, listen, stop), never a member's
//! action with its time — a log line carries one, and logs outlive deleted accounts.

use hyper::StatusCode;

use crate::files::file_path;
use crate::support::chat::{connect, group_with, say};
use crate::support::server::private_tempdir;
use crate::support::{Client, DPW, PW};

/// The lines the server may write at the default level, about itself.
const ALLOWED: &[&str] = &[
    "plain-HTTP listener ready",
    "running without Tor (--no-tor): this server is not anonymous",
    "no master key configured",
    "shutting down",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_log_holds_no_member_action() {
    let dir = private_tempdir();
    let data = dir.path().join("data");
    let stderr = dir.path().join("serve.stderr");
    let server = crate::ops::serve(&data, &stderr);
    let addr = server.http.unwrap();
    let (mut a, mut b) = (Client::new(addr), Client::new(addr));
    // Registered, logged in, connected (requested, accepted), a message.
    a.member("logalice").await;
    b.member("logbob").await;
    let conversation = connect(&mut a, &mut b, "logbob").await;
    say(&mut a, &conversation, "hello").await;
    // A message deleted for everyone by its sender.
    say(&mut a, &conversation, "hello again").await;
    let path = format!("/chat/{conversation}");
    let page = a.get(&path).await;
    let (action, seq, message) = crate::deleting::delete_form(&page, "hello again");
    let r = crate::deleting::post_delete(&mut a, &path, &action, &seq, &message).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    // A file uploaded, shared and deleted.
    let upload = a.upload("notes.txt", b"some notes", "7").await;
    assert_eq!(upload.status, StatusCode::OK);
    let file = file_path(&upload);
    a.submit(&file, &format!("{file}/share"), &[("username", "logbob")])
        .await;
    a.submit(&file, &format!("{file}/delete"), &[]).await;
    // A group created, joined, left.
    let group = group_with(&mut a, "Log group", &mut b, "logbob").await;
    let id = group.strip_prefix("/chat/group/").unwrap().to_owned();
    b.submit(&group, "/chat/leave", &[("group", &id)]).await;
    // A wrong password, a destruction, an account deleted by its owner.
    let mut c = Client::new(addr);
    c.login("logalice", "wrong password").await;
    c.login("logbob", DPW).await;
    let r = a
        .submit("/settings", "/settings/delete", &[("current_password", PW)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(server.stop().success());

    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(log.contains("plain-HTTP listener ready"), "sanity: {log}");
    for line in log.lines() {
        assert!(
            ALLOWED.iter().any(|allowed| line.contains(allowed)),
            "a line the default log must not have:\n{line}"
        );
        for secret in ["logalice", "logbob", "notes.txt", "Log group", "hello"] {
            assert!(!line.contains(secret), "{secret} in the log: {line}");
        }
    }
}
