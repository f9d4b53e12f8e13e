//! The login gate: bounds how often the password of one name is checked, without letting
//! a stranger keep out the member who knows it.
//!
//! Each name has a bucket of `per_minute` checks that refills continuously. While it has
//! a check left and nobody is waiting, an attempt is checked at once (the *fast lane*).
//! Otherwise the attempt *waits its turn* (the *slow lane*): attempts for one name are
//! checked one at a time, in order of arrival, each when the bucket has refilled by one.
//! A successful login gives its check back. So a stranger who sends wrong passwords as
//! fast as they are answered only ever gets `per_minute` guesses a minute, and a member's
//! attempt that arrives meanwhile is checked after at most the attempts already waiting
//! (each about `60 / per_minute` seconds): it is delayed, never refused.
//!
//! At most `MAX_WAITING` attempts wait per name. When one more arrives, one of them —
//! chosen at random among the waiting and the new one — is turned away (429), so that a
//! flood cannot keep a given attempt out for certain; an attempt that waits longer than
//! the queue could take is turned away too. Every attempt turned away without being
//! checked marks its name as *kept out* today; the sweeper counts inactivity from the
//! later of the last login and that day, so nobody our limiter kept out is deleted for
//! inactivity.
//!
//! Which password an attempt carries plays no part here: the destruction password waits
//! and is checked like any other, and answered like a wrong one.
//!
//! Names are kept only as keyed hashes (a random key per process).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::crypto::{SecretKey, hmac_sha256};

/// Most attempts that wait their turn for one name.
pub const MAX_WAITING: usize = 8;

/// A name as the gate knows it: a keyed hash.
pub type NameKey = [u8; 32];

/// The gate of every name.
pub struct LoginGate {
    per_minute: f64,
    hash_key: SecretKey,
    names: Mutex<HashMap<NameKey, Arc<Entry>>>,
    kept_out: Mutex<HashSet<NameKey>>,
}

impl std::fmt::Debug for LoginGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginGate")
            .field("names", &self.names.lock().len())
            .finish()
    }
}

struct Entry {
    state: Mutex<State>,
    turn: Notify,
}

struct State {
    tokens: f64,
    refilled: Instant,
    /// Attempts waiting, oldest first.
    waiting: VecDeque<u64>,
    /// Attempts turned away while waiting (they notice at their next wake-up).
    evicted: HashSet<u64>,
    next_id: u64,
}

/// An attempt's place in a name's queue; leaving it (turn, refusal, or the request going
/// away) lets the next one move up.
struct Place<'a> {
    entry: &'a Arc<Entry>,
    me: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut s = self.entry.state.lock();
        s.waiting.retain(|w| *w != self.me);
        s.evicted.remove(&self.me);
        drop(s);
        self.entry.turn.notify_waiters();
    }
}

/// Why an attempt was turned away without being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// Permission to check one password of a name. Report a success with
/// [`Ticket::succeeded`] so that it does not count.
pub struct Ticket {
    entry: Arc<Entry>,
    per_minute: f64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket")
    }
}

impl Ticket {
    /// The password was right: give the check back.
    pub fn succeeded(self) {
        let mut s = self.entry.state.lock();
        s.tokens = (s.tokens + 1.0).min(self.per_minute);
        drop(s);
        self.entry.turn.notify_waiters();
    }
}

impl State {
    fn refill(&mut self, now: Instant, per_minute: f64) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_minute / 60.0).min(per_minute);
        self.refilled = now;
    }

    /// Time until the bucket holds one whole check.
    fn until_next(&self, per_minute: f64) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing * 60.0 / per_minute)
    }
}

impl LoginGate {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute.max(1)),
            hash_key: SecretKey::generate(),
            names: Mutex::new(HashMap::new()),
            kept_out: Mutex::new(HashSet::new()),
        }
    }

    /// The gate's key for a normalised name.
    pub fn key(&self, normalised: &str) -> NameKey {
        hmac_sha256(
            self.hash_key.expose(),
            &[b"login gate", normalised.as_bytes()],
        )
    }

    /// The longest an attempt waits before it is turned away.
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs_f64(60.0 / self.per_minute * (MAX_WAITING as f64 + 2.0))
    }

    /// Wait for the right to check one password of `name`.
    pub async fn admit(&self, name: &NameKey) -> Result<Ticket, Refused> {
        let entry = Arc::clone(self.names.lock().entry(*name).or_insert_with(|| {
            Arc::new(Entry {
                state: Mutex::new(State {
                    tokens: self.per_minute,
                    refilled: Instant::now(),
                    waiting: VecDeque::new(),
                    evicted: HashSet::new(),
                    next_id: 0,
                }),
                turn: Notify::new(),
            })
        }));
        let ticket = || Ticket {
            entry: Arc::clone(&entry),
            per_minute: self.per_minute,
        };
        let me = {
            let mut s = entry.state.lock();
            s.refill(Instant::now(), self.per_minute);
            if s.waiting.is_empty() && s.tokens >= 1.0 {
                s.tokens -= 1.0;
                return Ok(ticket());
            }
            let me = s.next_id;
            s.next_id = s.next_id.wrapping_add(1);
            if s.waiting.len() >= MAX_WAITING {
                // One of the waiting or this one, at random, is turned away.
                let pick = rand::Rng::gen_range(&mut rand::rngs::OsRng, 0..=s.waiting.len());
                match s.waiting.remove(pick) {
                    Some(evicted) => {
                        s.evicted.insert(evicted);
                    }
                    None => {
                        drop(s);
                        self.kept_out.lock().insert(*name);
                        return Err(Refused);
                    }
                }
            }
            s.waiting.push_back(me);
            me
        };
        entry.turn.notify_waiters();
        // If the request goes away while waiting, its place goes with it.
        let place = Place { entry: &entry, me };
        let outcome = self.wait_turn(&place).await;
        drop(place);
        match outcome {
            Ok(()) => Ok(ticket()),
            Err(Refused) => {
                self.kept_out.lock().insert(*name);
                Err(Refused)
            }
        }
    }

    async fn wait_turn(&self, place: &Place<'_>) -> Result<(), Refused> {
        let (entry, me) = (place.entry, place.me);
        let deadline = tokio::time::Instant::now() + self.max_wait();
        loop {
            let notified = entry.turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let head_wait = {
                let mut s = entry.state.lock();
                if s.evicted.remove(&me) {
                    return Err(Refused);
                }
                s.refill(Instant::now(), self.per_minute);
                let head = s.waiting.front() == Some(&me);
                if head && s.tokens >= 1.0 {
                    s.tokens -= 1.0;
                    s.waiting.pop_front();
                    return Ok(());
                }
                head.then(|| s.until_next(self.per_minute))
            };
            // The head sleeps until the next check is due; the others until the queue
            // moves. Anyone past the deadline is turned away.
            let moved = async {
                match head_wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = moved => {}
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => return Err(Refused),
            }
        }
    }

    /// The names turned away since the last call (and forget them).
    pub fn take_kept_out(&self) -> HashSet<NameKey> {
        std::mem::take(&mut *self.kept_out.lock())
    }

    /// Forget names with a full bucket and nobody waiting (housekeeping).
    pub fn prune(&self) {
        let now = Instant::now();
        let per_minute = self.per_minute;
        self.names.lock().retain(|_, e| {
            if Arc::strong_count(e) > 1 {
                return true;
            }
            let mut s = e.state.lock();
            s.refill(now, per_minute);
            !(s.waiting.is_empty() && s.tokens >= per_minute)
        });
    }

    /// Names with state (for tests).
    pub fn len(&self) -> usize {
        self.names.lock().len()
    }

    /// Whether no name has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fast_lane_then_turns_in_order() {
        // 600 a minute: a check every 100 ms once the bucket is empty.
        let gate = Arc::new(LoginGate::new(600));
        let name = gate.key("alice");
        for _ in 0..600 {
            gate.admit(&name).await.unwrap();
        }
        let started = Instant::now();
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let g = Arc::clone(&gate);
            waiting.push(tokio::spawn(async move {
                g.admit(&name).await.unwrap();
                Instant::now()
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut done = Vec::new();
        for w in waiting {
            done.push(w.await.unwrap());
        }
        assert!(done.windows(2).all(|w| w[0] <= w[1]), "in order of arrival");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(gate.take_kept_out().is_empty(), "nobody was turned away");
    }

    #[tokio::test]
    async fn success_gives_the_check_back_and_names_are_separate() {
        let gate = LoginGate::new(2);
        let a = gate.key("alice");
        for _ in 0..5 {
            gate.admit(&a).await.unwrap().succeeded();
        }
        gate.admit(&a).await.unwrap();
        gate.admit(&a).await.unwrap();
        // Bucket empty for alice; bob is untouched.
        let b = gate.key("bob");
        gate.admit(&b).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_full_queue_turns_one_away_and_marks_the_name() {
        let gate = Arc::new(LoginGate::new(1));
        let name = gate.key("carol");
        gate.admit(&name).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..=MAX_WAITING {
            let g = Arc::clone(&gate);
            tasks.push(tokio::spawn(
                async move { g.admit(&name).await.map(|_| ()) },
            ));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // One of the nine is turned away at once; the others wait (a minute each).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let finished: Vec<_> = tasks.iter().filter(|t| t.is_finished()).collect();
        assert_eq!(finished.len(), 1);
        assert_eq!(gate.take_kept_out(), HashSet::from([name]));
        for t in tasks {
            t.abort();
        }
    }
}
