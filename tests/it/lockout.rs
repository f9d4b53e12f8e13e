//! No lockout by strangers: a member who knows the password logs in while a stranger
//! sends wrong passwords for that name as fast as they are answered (every request from
//! the same place, as on the onion door), the destruction password behaves like any
//! other in the waiting line, and an account whose owner our limiter turned away is not
//! deleted for inactivity.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::support::{DPW, PW, TestServer};

const DAY: i64 = 86_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_logs_in_while_a_stranger_guesses_for_a_full_minute() {
    // The default limit: 10 checks of one name a minute.
    let server = TestServer::start_with(|c| c.rate_limits.login_per_username_per_minute = 10).await;
    let mut member = server.client();
    member.register("wanda", PW, DPW).await;
    let started = Instant::now();
    let minute = started + Duration::from_secs(60);
    let stop = Arc::new(AtomicBool::new(false));
    let (wrong, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // The stranger: four loops, each sending a wrong password as soon as the last one
    // was answered, for a full minute.
    let mut stranger = Vec::new();
    for loop_no in 0..4 {
        let mut c = server.client();
        let (stop, wrong, refused) = (Arc::clone(&stop), Arc::clone(&wrong), Arc::clone(&refused));
        stranger.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < minute && !stop.load(Ordering::Relaxed) {
                n += 1;
                let r = c.login("wanda", &format!("guess {loop_no}-{n}")).await;
                match r.status {
                    StatusCode::FORBIDDEN => wrong.fetch_add(1, Ordering::Relaxed),
                    StatusCode::TOO_MANY_REQUESTS => refused.fetch_add(1, Ordering::Relaxed),
                    other => panic!("stranger got {other}"),
                };
            }
        }));
    }
    // Let the stranger spend the bucket and fill the line.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for device in 0..2 {
        let mut c = server.client();
        let asked = Instant::now();
        let r = c.login("wanda", PW).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "device {device}: kept out");
        assert_eq!(c.get("/settings").await.status, StatusCode::OK);
        eprintln!(
            "the member got in after waiting {:.1} s ({:.0} s into the minute)",
            asked.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
    // The destruction password, in the same line, is answered like the stranger's guesses.
    let remaining = minute.saturating_duration_since(Instant::now());
    tokio::time::sleep(remaining.saturating_sub(Duration::from_secs(10))).await;
    let mut coerced = server.client();
    let destroyed = coerced.login("wanda", DPW).await;
    let mut other = server.client();
    let failed = other.login("wanda", "one more wrong guess").await;
    assert_eq!(destroyed.status, StatusCode::FORBIDDEN);
    assert_eq!(destroyed.text_without_csrf(), failed.text_without_csrf());
    stop.store(true, Ordering::Relaxed);
    for t in stranger {
        t.await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_secs(60),
        "a full minute"
    );
    assert_eq!(
        member.login("wanda", PW).await.status,
        StatusCode::FORBIDDEN
    );
    let (wrong, refused) = (
        wrong.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    eprintln!("the stranger's guesses: {wrong} checked and wrong, {refused} turned away");
    assert_eq!(refused, 0, "four at a time never fill the line");
    // 10 at once, then one every 6 s, for the stranger's and the last two attempts
    // together (the member's two logins gave theirs back).
    let elapsed = started.elapsed().as_secs_f64();
    assert!(wrong >= 10, "the stranger's guesses were checked too");
    assert!(
        (wrong + 2) as f64 <= 10.0 + elapsed / 6.0 + 1.0,
        "{wrong} guesses were checked in {elapsed:.0} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_logins_were_turned_away_is_not_swept_for_inactivity() {
    let server = TestServer::start_with(|c| c.rate_limits.login_per_username_per_minute = 60).await;
    let mut member = server.client();
    member.register("xenia", PW, DPW).await;
    server.clock.advance(29 * DAY);
    // A flood: more attempts at once than may wait in line; some are turned away.
    let mut flood = Vec::new();
    for i in 0..80 {
        let mut c = server.client();
        flood.push(tokio::spawn(async move {
            c.login("xenia", &format!("flood {i}")).await.status
        }));
    }
    let mut turned_away = 0;
    for f in flood {
        match f.await.unwrap() {
            StatusCode::TOO_MANY_REQUESTS => turned_away += 1,
            s => assert_eq!(s, StatusCode::FORBIDDEN),
        }
    }
    assert!(turned_away > 0, "the line was full at some point");
    // Housekeeping (every minute) writes down the names turned away today.
    ghostcache::sweeper::housekeeping(server.state()).await;
    // Day 31 after the last login: the owner may have been among those turned away on
    // day 29, so inactivity counts from then.
    server.clock.advance(2 * DAY);
    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(report.accounts_deleted, 0);
    assert_eq!(
        member.login("xenia", PW).await.status,
        StatusCode::SEE_OTHER
    );
    // Without further logins or floods, it goes 31 days after that login.
    server.clock.advance(32 * DAY);
    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(report.accounts_deleted, 1);
}
