//! The notification hub: in-process delivery of chat events to members' live streams, and
//! online status.
//!
//! Each member with at least one open live stream has one bounded `tokio::sync::broadcast`
//! channel; every stream of that member (tabs, devices) subscribes to it. Publishing an
//! event is a non-blocking send to the channels of the members concerned: no polling of
//! the store. A stream that falls more than `chat.channel_capacity` events behind is told
//! so (`Lagged`) and reloads itself, catching up from the store. Events carry ids only,
//! never message text: each stream reads and decrypts with its own member's keys.
//!
//! Events name a *conversation* (a connection id or a group id), so group chat reuses the
//! hub as it is: events are published to every member of the group.
//!
//! # Online status
//!
//! A member is online when they have a live session and at least one of:
//! - an open live stream;
//! - a live stream that ended by reaching its lifetime less than [`RELOAD_GRACE_SECS`] ago
//!   (it is reloading itself);
//! - a page load (not a live stream) less than `chat.presence_window_secs` ago, and no
//!   live stream closed since.
//!
//! So logging in makes a member online; logging out, session expiry (idle or absolute) or
//! closing their last live stream makes them offline at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::clock::{Clock, UnixTime};
use crate::config::ChatConfig;
use crate::store::Id;
use crate::web::session::Sessions;

/// How long a member whose live stream just ended on schedule stays online while the
/// stream reloads itself.
pub const RELOAD_GRACE_SECS: i64 = 15;

/// What a live stream is told about. Ids only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A message was stored in a conversation under this sequence number.
    Message { conversation: Id, seq: u64 },
    /// A conversation ended for the members told (connection removed or blocked; removed
    /// from a group, or the group deleted).
    Closed { conversation: Id },
    /// A message was deleted: at its self-destruct deadline, or by its sender.
    Expired { conversation: Id, seq: u64 },
    /// A group's membership changed (a new key epoch began).
    Membership { conversation: Id },
    /// A member's account was deleted: every conversation with them ended.
    MemberGone { member: Id },
}

/// Why a stream could not subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    /// The member already has `chat.max_streams_per_member` streams open.
    TooMany,
    /// The server is shutting down.
    Closed,
}

/// Per-member live state.
struct MemberLive {
    /// Present while the member has at least one open stream.
    tx: Option<broadcast::Sender<Event>>,
    streams: usize,
    /// Last page load (not a live stream).
    last_active: UnixTime,
    /// Their last live stream closed (not on schedule) and they loaded no page since.
    away: bool,
    /// Online until then although no stream is open: a stream is reloading itself.
    grace_until: UnixTime,
}

impl MemberLive {
    fn new(now: UnixTime) -> Self {
        Self {
            tx: None,
            streams: 0,
            last_active: now,
            away: false,
            grace_until: 0,
        }
    }
}

/// The hub. One per server, in `AppState`.
pub struct Hub {
    clock: Clock,
    capacity: usize,
    max_streams: usize,
    window: i64,
    members: Mutex<HashMap<Id, MemberLive>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("members", &self.members.lock().len())
            .finish_non_exhaustive()
    }
}

/// One open live stream's place in the hub. Dropping it closes the stream's slot (and,
/// for the member's last stream, may make them offline), however the stream ended.
pub struct Subscription {
    hub: Arc<Hub>,
    member: Id,
    rx: broadcast::Receiver<Event>,
    on_schedule: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next event. `Lagged` means events were lost (reload and catch up); `Closed`
    /// means the hub is gone (shutdown, or the member's account was deleted).
    pub async fn recv(&mut self) -> Result<Event, broadcast::error::RecvError> {
        self.rx.recv().await
    }

    /// Mark this stream as ending on schedule (it will reload itself), so that its member
    /// stays online for [`RELOAD_GRACE_SECS`].
    pub fn ending_on_schedule(&mut self) {
        self.on_schedule = true;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.release(&self.member, self.on_schedule);
    }
}

impl Hub {
    pub fn new(clock: Clock, config: &ChatConfig) -> Arc<Self> {
        Arc::new(Self {
            clock,
            capacity: config.channel_capacity,
            max_streams: config.max_streams_per_member,
            window: i64::try_from(config.presence_window_secs).unwrap_or(i64::MAX),
            members: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// Open a live stream slot for `member`.
    pub fn subscribe(self: &Arc<Self>, member: Id) -> Result<Subscription, SubscribeError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SubscribeError::Closed);
        }
        let now = self.clock.now();
        let mut members = self.members.lock();
        let entry = members
            .entry(member)
            .or_insert_with(|| MemberLive::new(now));
        if entry.streams >= self.max_streams {
            return Err(SubscribeError::TooMany);
        }
        let capacity = self.capacity;
        let rx = entry
            .tx
            .get_or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe();
        entry.streams += 1;
        entry.away = false;
        drop(members);
        Ok(Subscription {
            hub: Arc::clone(self),
            member,
            rx,
            on_schedule: false,
        })
    }

    fn release(&self, member: &Id, on_schedule: bool) {
        let now = self.clock.now();
        let mut members = self.members.lock();
        let Some(entry) = members.get_mut(member) else {
            return;
        };
        entry.streams = entry.streams.saturating_sub(1);
        if entry.streams == 0 {
            entry.tx = None;
            if on_schedule {
                entry.grace_until = now.saturating_add(RELOAD_GRACE_SECS);
            } else {
                entry.away = true;
                entry.grace_until = 0;
            }
        }
    }

    /// Tell these members' open streams about `event`. Never blocks.
    pub fn publish(&self, members: &[Id], event: Event) {
        let map = self.members.lock();
        for m in members {
            if let Some(tx) = map.get(m).and_then(|e| e.tx.as_ref()) {
                // An error only means that no stream is listening right now.
                let _ = tx.send(event);
            }
        }
    }

    /// Note a page load by a logged-in member (not a live stream).
    pub fn active(&self, member: Id, now: UnixTime) {
        let mut members = self.members.lock();
        let entry = members
            .entry(member)
            .or_insert_with(|| MemberLive::new(now));
        entry.last_active = now;
        entry.away = false;
    }

    /// Whether `member` is online at `now` (see the module documentation).
    pub fn online(&self, member: &Id, now: UnixTime, sessions: &Sessions) -> bool {
        let candidate = self.members.lock().get(member).is_some_and(|e| {
            e.streams > 0
                || e.grace_until > now
                || (!e.away && now.saturating_sub(e.last_active) < self.window)
        });
        candidate && sessions.has_user(member, now)
    }

    /// Number of open live streams of a member.
    pub fn open_streams(&self, member: &Id) -> usize {
        self.members.lock().get(member).map_or(0, |e| e.streams)
    }

    /// Number of open live streams on the server.
    pub fn total_streams(&self) -> usize {
        self.members.lock().values().map(|e| e.streams).sum()
    }

    /// A member's account was deleted: drop their state and tell everyone's streams, so
    /// that conversations with them end.
    pub fn forget(&self, member: &Id) {
        let mut members = self.members.lock();
        members.remove(member);
        for entry in members.values() {
            if let Some(tx) = &entry.tx {
                let _ = tx.send(Event::MemberGone { member: *member });
            }
        }
    }

    /// Drop the state of members who could not be online any more whatever their
    /// session: no stream, no reload under way, no recent page load (housekeeping). Does
    /// not look at sessions, so it holds the lock only briefly.
    pub fn prune(&self, now: UnixTime) {
        self.members.lock().retain(|_, e| {
            e.streams > 0
                || e.grace_until > now
                || (!e.away && now.saturating_sub(e.last_active) < self.window)
        });
    }

    /// Shutdown: refuse new streams and end every open one.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for entry in self.members.lock().values_mut() {
            entry.tx = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn hub(clock: &Clock) -> Arc<Hub> {
        let config = ChatConfig {
            max_streams_per_member: 2,
            channel_capacity: 4,
            presence_window_secs: 60,
            ..ChatConfig::default()
        };
        Hub::new(clock.clone(), &config)
    }

    #[tokio::test]
    async fn events_reach_every_stream_of_the_member_only() {
        let clock = Clock::system();
        let hub = hub(&clock);
        let (a, b) = ([1; 16], [2; 16]);
        let mut a1 = hub.subscribe(a).unwrap();
        let mut a2 = hub.subscribe(a).unwrap();
        assert_eq!(hub.subscribe(a).unwrap_err(), SubscribeError::TooMany);
        let mut b1 = hub.subscribe(b).unwrap();
        let ev = Event::Message {
            conversation: [9; 16],
            seq: 1,
        };
        hub.publish(&[a], ev);
        assert_eq!(a1.recv().await.unwrap(), ev);
        assert_eq!(a2.recv().await.unwrap(), ev);
        assert!(b1.rx.try_recv().is_err(), "b was not told");
        drop(a2);
        assert_eq!(hub.open_streams(&a), 1);
        assert!(hub.subscribe(a).is_ok(), "a slot was freed");
    }

    #[tokio::test]
    async fn a_slow_stream_learns_that_it_lagged() {
        let clock = Clock::system();
        let hub = hub(&clock);
        let mut s = hub.subscribe([1; 16]).unwrap();
        for seq in 0..10 {
            hub.publish(
                &[[1; 16]],
                Event::Message {
                    conversation: [0; 16],
                    seq,
                },
            );
        }
        assert!(matches!(
            s.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }

    #[tokio::test]
    async fn presence_rules() {
        let clock = Clock::system();
        let hub = hub(&clock);
        let sessions = Sessions::new(900, 3600);
        let a = [1; 16];
        let now = clock.now();
        assert!(!hub.online(&a, now, &sessions), "unknown member");
        let (_, session) = sessions.create(a, "a".into(), SecretKey::generate(), now);
        hub.active(a, now);
        assert!(hub.online(&a, now, &sessions), "a page load makes online");
        assert!(
            !hub.online(&a, now + 60, &sessions),
            "the page-load window passes"
        );

        let s = hub.subscribe(a).unwrap();
        assert!(hub.online(&a, now + 600, &sessions), "an open stream");
        drop(s);
        assert!(
            !hub.online(&a, clock.now(), &sessions),
            "closing the last stream makes offline at once"
        );
        hub.active(a, clock.now());
        assert!(hub.online(&a, clock.now(), &sessions));

        let mut s = hub.subscribe(a).unwrap();
        s.ending_on_schedule();
        drop(s);
        let t = clock.now();
        assert!(hub.online(&a, t + RELOAD_GRACE_SECS - 1, &sessions));

        sessions.remove(&session);
        assert!(!hub.online(&a, t, &sessions), "no session, not online");
        hub.active([2; 16], t);
        hub.prune(t + RELOAD_GRACE_SECS);
        assert_eq!(hub.members.lock().len(), 2, "recent page loads are kept");
        hub.prune(t + 60);
        assert_eq!(hub.members.lock().len(), 0);
    }

    #[tokio::test]
    async fn close_ends_every_stream_and_refuses_new_ones() {
        let clock = Clock::system();
        let hub = hub(&clock);
        let mut s = hub.subscribe([1; 16]).unwrap();
        hub.close();
        assert!(matches!(
            s.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
        assert_eq!(hub.subscribe([1; 16]).unwrap_err(), SubscribeError::Closed);
    }
}
