//! Operating the appliance as a process: start-up refusals, hardening, `status`, online
//! backups restored under write load, and crash safety under SIGKILL.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::files::{download, file_path, key_of};
use crate::support::chat::{connect, messages, say};
use crate::support::process::{self, Serve};
use crate::support::server::private_tempdir;
use crate::support::{Client, DPW, PW};

/// `serve --no-tor` on a loopback port over `data`, with a small RSA size for speed.
pub fn serve(data: &Path, stderr: &Path) -> Serve {
    let config = data.with_extension("toml");
    if !config.exists() {
        std::fs::write(&config, "[crypto]\nrsa_bits = 2048\n[rate_limits]\nregister_per_minute = 10000\nlogin_per_username_per_minute = 10000\nuploads_per_member_per_minute = 10000\nmessages_per_minute = 10000\nconnection_requests_per_minute = 10000\n").unwrap();
    }
    Serve::start(
        &[
            "--no-tor",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        stderr,
        None,
    )
}

#[test]
fn serve_refuses_a_data_directory_others_can_read() {
    let dir = private_tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = process::run(&[
        "serve",
        "--no-tor",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("accessible to other users"), "{stderr}");
    assert!(stderr.contains("chmod 700"), "{stderr}");
    assert!(
        !data.join(ghostcache::store::DB_FILE).exists(),
        "nothing was written"
    );
}

#[test]
fn serve_refuses_a_master_key_others_can_read() {
    let dir = private_tempdir();
    let key = dir.path().join("master.key");
    std::fs::write(&key, ghostcache::crypto::random_bytes::<32>()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("[tor]\nmaster_key_file = \"{}\"\n", key.display()),
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = process::run(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master key"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!data.join("arti").exists(), "arti never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_has_core_dumps_off_and_status_shows_counts_without_names() {
    let dir = private_tempdir();
    let data = dir.path().join("data");
    let server = serve(&data, &dir.path().join("serve.stderr"));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid)).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        vec!["0", "0"],
        "{core}"
    );

    let mut c = Client::new(server.http.unwrap());
    c.register("statususer", PW, DPW).await;
    let out = process::run(&["status", "--data-dir", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("server:         running (pid {})", server.pid)),
        "{text}"
    );
    assert!(
        text.contains("tor bootstrap:  disabled (--no-tor)"),
        "{text}"
    );
    assert!(text.contains("members:        1"), "{text}");
    assert!(text.contains("database size:"), "{text}");
    assert!(text.contains("uptime:"), "{text}");
    assert!(!text.contains("statususer"), "no names in status");
    let stderr = server.stderr();
    assert!(
        !stderr.contains("statususer"),
        "no names in the log: {stderr}"
    );
    assert!(server.stop().success());
    let out = process::run(&["status", "--data-dir", data.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("server:         not running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_write_load_restores_every_committed_record() {
    let dir = private_tempdir();
    let data = dir.path().join("data");
    let server = serve(&data, &dir.path().join("serve.stderr"));
    let addr = server.http.unwrap();

    // A writer registers members one after another; each name is recorded once the
    // server has answered (committed durably).
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let acked = Arc::clone(&acked);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut c = Client::new(addr);
            for i in 0..10_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let name = format!("load{i}");
                c.register(&name, PW, DPW).await;
                acked.lock().unwrap().push(name);
            }
        })
    };
    // Until the writer has a few registrations acknowledged (the first waits for the key
    // pool's first RSA key, seconds on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        !before.is_empty(),
        "the writer made progress before the backup"
    );
    let backup = dir.path().join("backup.redb");
    let started = Instant::now();
    let out = process::run(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "backup under load took {:.3} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        acked.lock().unwrap().len() > before.len(),
        "writes went on during the backup"
    );
    assert!(server.stop().success());
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Restore: a copy back into a fresh data directory, as the README says: the database
    // and its erasure key file, both from the backup.
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    std::fs::set_permissions(&restored, std::fs::Permissions::from_mode(0o700)).unwrap();
    let db = restored.join(ghostcache::store::DB_FILE);
    std::fs::copy(&backup, &db).unwrap();
    let keys = ghostcache::store::erasure::keys_path(&backup);
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::copy(&keys, ghostcache::store::erasure::keys_path(&db)).unwrap();
    std::fs::copy(data.with_extension("toml"), restored.with_extension("toml")).unwrap();
    let server = serve(&restored, &dir.path().join("restored.stderr"));
    let mut c = Client::new(server.http.unwrap());
    for name in &before {
        assert_eq!(
            c.login(name, PW).await.status,
            StatusCode::SEE_OTHER,
            "{name} was committed before the backup"
        );
    }
    assert!(server.stop().success());
}

/// What a client was told had been saved.
#[derive(Default)]
struct Acked {
    members: Vec<String>,
    /// (file page, key, content)
    files: Vec<(String, String, Vec<u8>)>,
    messages: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_write() {
    const KILLS: usize = 30;
    let dir = private_tempdir();
    let data = dir.path().join("data");
    let mut rng_state: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };

    // A connected pair to chat in, set up once.
    let server = serve(&data, &dir.path().join("setup.stderr"));
    let addr = server.http.unwrap();
    let (mut alice, mut bob) = (Client::new(addr), Client::new(addr));
    alice.member("alice").await;
    bob.member("bob").await;
    let conversation = connect(&mut alice, &mut bob, "bob").await;
    assert!(server.stop().success());

    let mut total = Acked::default();
    let mut last = Acked::default();
    let mut checked = (0usize, 0usize, 0usize);
    for round in 0..KILLS {
        let server = serve(&data, &dir.path().join(format!("round{round}.stderr")));
        let addr = server.http.unwrap();
        let mut alice = Client::new(addr);
        let mut bob = Client::new(addr);
        // The file opened cleanly; now everything acknowledged before the last kill.
        assert_eq!(alice.login("alice", PW).await.status, StatusCode::SEE_OTHER);
        assert_eq!(bob.login("bob", PW).await.status, StatusCode::SEE_OTHER);
        for name in &last.members {
            let mut c = Client::new(addr);
            assert_eq!(
                c.login(name, PW).await.status,
                StatusCode::SEE_OTHER,
                "round {round}: member {name} lost"
            );
            checked.0 += 1;
        }
        for (path, key, content) in &last.files {
            let r = download(&mut alice, path, key).await;
            assert_eq!(r.status, StatusCode::OK, "round {round}: file {path} lost");
            assert_eq!(
                &r.body[..],
                &content[..],
                "round {round}: file {path} changed"
            );
            checked.1 += 1;
        }
        let page = bob.get(&format!("/chat/{conversation}")).await;
        let shown: BTreeSet<String> = messages(&page)
            .into_iter()
            .map(|(_, text, _)| text)
            .collect();
        for text in &last.messages {
            assert!(shown.contains(text), "round {round}: message {text:?} lost");
            checked.2 += 1;
        }

        // Load until the kill: registrations, uploads and messages, side by side. A
        // request cut off by the kill makes the test client panic inside its task; that
        // write was never acknowledged, so it may or may not be there.
        let acked = Arc::new(Mutex::new(Acked::default()));
        let mut tasks = Vec::new();
        {
            let acked = Arc::clone(&acked);
            tasks.push(tokio::spawn(async move {
                let mut newcomer = Client::new(addr);
                for i in 0..50 {
                    let name = format!("crash{round}x{i}");
                    let r = newcomer
                        .submit(
                            "/register",
                            "/register",
                            &[("username", &name), ("password", PW), ("d_pass", DPW)],
                        )
                        .await;
                    assert_eq!(r.status, StatusCode::SEE_OTHER);
                    acked.lock().unwrap().members.push(name);
                }
            }));
        }
        {
            let acked = Arc::clone(&acked);
            let mut uploader = Client::new(addr);
            uploader.jar = alice.jar.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..200 {
                    let content = format!("round {round} file {i}").into_bytes();
                    let r = uploader
                        .upload(&format!("f{round}-{i}.txt"), &content, "365")
                        .await;
                    assert_eq!(r.status, StatusCode::OK);
                    acked
                        .lock()
                        .unwrap()
                        .files
                        .push((file_path(&r), key_of(&r), content));
                }
            }));
        }
        {
            let acked = Arc::clone(&acked);
            let conversation = conversation.clone();
            tasks.push(tokio::spawn(async move {
                // At most 40 a round: the chat page shows the newest 50.
                for i in 0..40 {
                    let text = format!("round {round} message {i}");
                    let r = say(&mut alice, &conversation, &text).await;
                    assert_eq!(r.status, StatusCode::SEE_OTHER);
                    acked.lock().unwrap().messages.push(text);
                }
            }));
        }
        let delay = 300 + next() % 1200;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        for task in tasks {
            let _ = task.await;
        }
        last = std::mem::take(&mut *acked.lock().unwrap());
        total.members.extend(last.members.iter().cloned());
        total.files.extend(
            last.files
                .iter()
                .map(|(a, b, c)| (a.clone(), b.clone(), c.clone())),
        );
        total.messages.extend(last.messages.iter().cloned());
    }

    // After the last kill: the file opens, and every acknowledged write of the whole run
    // is there.
    let server = serve(&data, &dir.path().join("final.stderr"));
    let addr = server.http.unwrap();
    let mut alice = Client::new(addr);
    assert_eq!(alice.login("alice", PW).await.status, StatusCode::SEE_OTHER);
    for name in &total.members {
        let mut c = Client::new(addr);
        assert_eq!(
            c.login(name, PW).await.status,
            StatusCode::SEE_OTHER,
            "member {name} lost"
        );
    }
    for (path, key, content) in &total.files {
        let r = download(&mut alice, path, key).await;
        assert_eq!(r.status, StatusCode::OK, "file {path} lost");
        assert_eq!(&r.body[..], &content[..]);
    }
    assert!(server.stop().success());
    let store = ghostcache::store::Store::open(&data.join(ghostcache::store::DB_FILE)).unwrap();
    let stored_messages = {
        use redb::ReadableTableMetadata;
        let txn = store.read().unwrap();
        txn.open_table(ghostcache::store::tables::MESSAGES)
            .unwrap()
            .len()
            .unwrap()
    };
    assert!(
        stored_messages >= total.messages.len() as u64,
        "{stored_messages} messages stored, {} acknowledged",
        total.messages.len()
    );
    eprintln!(
        "crash test: {KILLS} kills; acknowledged writes: {} members, {} files, {} messages; \
         checked after the kill that followed them: {} members, {} files, {} messages; \
         all {} acknowledged members and files checked again at the end; lost: 0",
        total.members.len(),
        total.files.len(),
        total.messages.len(),
        checked.0,
        checked.1,
        checked.2,
        total.members.len() + total.files.len(),
    );
    assert!(
        total.members.len() + total.files.len() + total.messages.len() >= KILLS,
        "the load made progress between kills"
    );
}
