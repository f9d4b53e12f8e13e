//! Message sequence numbers and group commit.
//!
//! A message's sequence number is part of what its signature covers, so it must be known
//! before the message is signed — that is, before it is written. And every durable redb
//! commit costs two fsyncs, which one-message-per-commit would pay for every send.
//!
//! [`Committer`] does both:
//!
//! - [`Committer::reserve`] hands out the next sequence number of a conversation (from
//!   memory; from `CONVERSATION_TO_LAST_SEQ` the first time) as a [`Ticket`]. The sender
//!   then seals and signs with that number, in parallel with every other send.
//! - [`Committer::commit`] queues the ticket with the writes that store the message and
//!   waits. One of the waiting senders (the first that finds nobody committing) takes
//!   everything queued and writes it in **one** durable transaction, then each sender is
//!   answered — only after the commit that holds its message. A lone sender commits its
//!   own message on its own thread, as if there were no queue.
//! - Within a conversation, messages commit in sequence order: a message waits while a
//!   lower number is still being signed, so a live stream that has shown number `n` never
//!   meets a later commit of a number below `n`. A ticket dropped without committing (an
//!   error, a client gone) releases its number at once. A number that never committed may
//!   be handed out again: nothing was stored under it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use parking_lot::{Condvar, Mutex};
use redb::{ReadableTable, WriteTransaction};

use crate::store::tables::CONVERSATION_TO_LAST_SEQ;
use crate::store::{Id, Store, StoreError};

/// Most messages one commit holds.
const MAX_BATCH: usize = 256;

/// What a queued message runs inside the shared transaction: its checks and writes.
/// `false` means it failed with an error that spoils the transaction.
/// `None`: no transaction could be begun; the work only reports that.
type Work = Box<dyn FnOnce(Option<&WriteTransaction>) -> (bool, Finish) + Send>;
/// Told the outcome of the commit (`None`: durable), then answers its sender.
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

struct Job {
    /// The message's conversation and number; `None` for other small writes that only
    /// share the commit (delivery marks), which need no order.
    order: Option<(Id, u64)>,
    work: Work,
}

/// Sequence numbers of one conversation.
#[derive(Default)]
struct Numbers {
    /// The next number to hand out.
    next: u64,
    /// Handed out and not yet committed or released.
    open: BTreeSet<u64>,
}

#[derive(Default)]
struct State {
    conversations: HashMap<Id, Numbers>,
    queued: Vec<Job>,
    /// A sender is committing a batch right now.
    leading: bool,
    closed: bool,
}

impl State {
    /// Forget a conversation with nothing open (its numbers are then in the store).
    fn tidy(&mut self, conversation: &Id) {
        if self
            .conversations
            .get(conversation)
            .is_some_and(|n| n.open.is_empty())
        {
            self.conversations.remove(conversation);
        }
    }

    /// Take the queued jobs that may commit now: per conversation, in number order, up
    /// to the first open number that is not queued.
    fn take_ready(&mut self) -> Vec<Job> {
        if self.queued.is_empty() {
            return Vec::new();
        }
        let mut queued = std::mem::take(&mut self.queued);
        queued.sort_by_key(|j| j.order);
        let mut ready = Vec::new();
        let mut held = Vec::new();
        let mut blocked: Option<Id> = None;
        let mut expect: Option<(Id, std::collections::btree_set::IntoIter<u64>)> = None;
        for job in queued {
            let Some((conversation, seq)) = job.order else {
                if ready.len() >= MAX_BATCH {
                    held.push(job);
                } else {
                    ready.push(job);
                }
                continue;
            };
            if ready.len() >= MAX_BATCH || blocked == Some(conversation) {
                held.push(job);
                continue;
            }
            if expect.as_ref().is_none_or(|(c, _)| *c != conversation) {
                let open = self
                    .conversations
                    .get(&conversation)
                    .map(|n| n.open.clone())
                    .unwrap_or_default();
                expect = Some((conversation, open.into_iter()));
            }
            // The lowest open number of this conversation not yet taken must be this one.
            let lowest = expect.as_mut().and_then(|(_, it)| it.next());
            if lowest == Some(seq) {
                ready.push(job);
            } else {
                blocked = Some(conversation);
                held.push(job);
            }
        }
        self.queued = held;
        ready
    }
}

struct Inner {
    store: Store,
    state: Mutex<State>,
    wake: Condvar,
    /// Transactions committed (or tried) so far.
    batches: AtomicU64,
}

/// The committer of messages: see the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Committer(Arc<Inner>);

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer")
    }
}

/// A reserved sequence number. Dropped without being committed, it is released.
pub struct Ticket {
    inner: Arc<Inner>,
    conversation: Id,
    seq: u64,
    queued: bool,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("seq", &self.seq).finish()
    }
}

impl Ticket {
    /// The message's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.queued {
            return;
        }
        let mut state = self.inner.state.lock();
        if let Some(n) = state.conversations.get_mut(&self.conversation) {
            n.open.remove(&self.seq);
        }
        state.tidy(&self.conversation);
        drop(state);
        // A later number of this conversation may have been waiting for this one.
        self.inner.wake.notify_all();
    }
}

impl Committer {
    pub fn new(store: Store) -> Self {
        Self(Arc::new(Inner {
            store,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            batches: AtomicU64::new(0),
        }))
    }

    /// Reserve the next sequence number of `conversation`. Blocking (reads the store the
    /// first time a conversation is seen).
    pub fn reserve(&self, conversation: &Id) -> Result<Ticket, StoreError> {
        let mut state = self.0.state.lock();
        if state.closed {
            return Err(StoreError::Join("the server is stopping".into()));
        }
        // Other writers take numbers too (group events, in their own transactions): never
        // hand out one the store already used.
        let last = {
            let txn = self.0.store.read()?;
            let table = txn.open_table(CONVERSATION_TO_LAST_SEQ)?;
            table.get(conversation)?.map_or(0, |g| g.value())
        };
        let numbers = state.conversations.entry(*conversation).or_default();
        let seq = numbers.next.max(last.saturating_add(1));
        numbers.next = seq.saturating_add(1);
        numbers.open.insert(seq);
        Ok(Ticket {
            inner: Arc::clone(&self.0),
            conversation: *conversation,
            seq,
            queued: false,
        })
    }

    /// Queue `work` (the checks and writes that store the message of `ticket`, run inside
    /// a transaction shared with other messages; it must not write before it has decided
    /// to) and wait until the transaction holding it is durable. Blocking: call it on the
    /// blocking pool. `work` also records the conversation's last sequence number.
    ///
    /// `None` when a writer outside the committer (a group event) took the ticket's
    /// number meanwhile: nothing was written, and the sender signs again with a new one.
    pub fn commit<T: Send + 'static>(
        &self,
        mut ticket: Ticket,
        work: impl FnOnce(&WriteTransaction, u64) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Option<T>, StoreError> {
        let (conversation, seq) = (ticket.conversation, ticket.seq);
        let queued = self.queue(Some((conversation, seq)), move |txn| {
            let taken = txn
                .open_table(CONVERSATION_TO_LAST_SEQ)?
                .get(&conversation)?
                .is_some_and(|g| g.value() >= seq);
            if taken {
                return Ok(None);
            }
            let v = work(txn, seq)?;
            note_last_seq(txn, &conversation, seq)?;
            Ok(Some(v))
        });
        // Queued: the commit resolves the number. Refused: the ticket releases it.
        ticket.queued = queued.is_ok();
        drop(ticket);
        self.wait(queued?)
    }

    /// Run `work` (small writes that need no order, such as delivery marks; it must not
    /// write before it has decided to) in the next shared transaction and wait until it is
    /// durable. Blocking.
    pub fn commit_any<T: Send + 'static>(
        &self,
        work: impl FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let rx = self.queue(None, work)?;
        self.wait(rx)
    }

    /// Wait for a queued job's outcome, committing batches (this one's or others') while
    /// nobody else does.
    fn wait<T>(&self, rx: Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        let inner = &*self.0;
        let mut state = inner.state.lock();
        loop {
            match rx.try_recv() {
                Ok(outcome) => return outcome,
                Err(TryRecvError::Disconnected) => {
                    return Err(StoreError::Join("a queued message was lost".into()));
                }
                Err(TryRecvError::Empty) => {}
            }
            let batch = if state.leading {
                Vec::new()
            } else {
                state.take_ready()
            };
            if batch.is_empty() {
                inner.wake.wait(&mut state);
                continue;
            }
            state.leading = true;
            drop(state);
            let _leading = Leading {
                inner,
                done: batch.iter().filter_map(|j| j.order).collect(),
            };
            commit_batch(&inner.store, batch);
            inner.batches.fetch_add(1, Ordering::Relaxed);
            drop(_leading);
            state = inner.state.lock();
        }
    }

    /// Queue a job; the receiver of its outcome.
    fn queue<T: Send + 'static>(
        &self,
        order: Option<(Id, u64)>,
        work: impl FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Receiver<Result<T, StoreError>>, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<T, StoreError>>(1);
        let job = Job {
            order,
            work: Box::new(move |txn: Option<&WriteTransaction>| {
                let outcome = match txn {
                    Some(txn) => work(txn),
                    None => Err(StoreError::Join("no write transaction".into())),
                };
                match outcome {
                    Ok(v) => (
                        true,
                        Box::new(move |failed: Option<&str>| {
                            let _ = tx.send(match failed {
                                None => Ok(v),
                                Some(e) => Err(StoreError::Join(e.to_owned())),
                            });
                        }) as Finish,
                    ),
                    Err(e) => (
                        false,
                        Box::new(move |_: Option<&str>| {
                            let _ = tx.send(Err(e));
                        }) as Finish,
                    ),
                }
            }),
        };
        {
            let mut state = self.0.state.lock();
            if state.closed {
                return Err(StoreError::Join("the server is stopping".into()));
            }
            state.queued.push(job);
        }
        Ok(rx)
    }

    /// How many transactions have held messages so far.
    pub fn batches(&self) -> u64 {
        self.0.batches.load(Ordering::Relaxed)
    }

    /// Refuse later sends (what is queued still commits).
    pub fn close(&self) {
        self.0.state.lock().closed = true;
        self.0.wake.notify_all();
    }
}

/// Record `seq` as the conversation's last sequence number (numbers only grow).
fn note_last_seq(txn: &WriteTransaction, conversation: &Id, seq: u64) -> Result<(), StoreError> {
    let mut last = txn.open_table(CONVERSATION_TO_LAST_SEQ)?;
    let current = last.get(conversation)?.map_or(0, |g| g.value());
    if seq > current {
        last.insert(conversation, seq)?;
    }
    Ok(())
}

/// A batch being committed by one sender. When it ends (also by unwinding), its numbers
/// are resolved, the next sender may lead, and every waiter looks again.
struct Leading<'a> {
    inner: &'a Inner,
    done: Vec<(Id, u64)>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut state = self.inner.state.lock();
        for (conversation, seq) in &self.done {
            if let Some(n) = state.conversations.get_mut(conversation) {
                n.open.remove(seq);
            }
            state.tidy(conversation);
        }
        state.leading = false;
        drop(state);
        self.inner.wake.notify_all();
    }
}

/// Run every job in one transaction and commit it; tell each job how it went.
fn commit_batch(store: &Store, batch: Vec<Job>) {
    let txn = match store.write() {
        Ok(t) => t,
        Err(e) => {
            let e = e.to_string();
            for job in batch {
                // The work cannot run: it reports the failure to its sender.
                let (_, finish) = (job.work)(None);
                finish(Some(&e));
            }
            return;
        }
    };
    let mut finishes = Vec::with_capacity(batch.len());
    let mut spoiled = false;
    for job in batch {
        let (ok, finish) = (job.work)(Some(&txn));
        spoiled |= !ok;
        finishes.push(finish);
    }
    let failure = if spoiled {
        let _ = txn.abort();
        Some("another message of the same commit failed".to_owned())
    } else {
        txn.commit().err().map(|e| e.to_string())
    };
    for finish in finishes {
        finish(failure.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;
    use std::time::Duration;

    fn committer() -> (tempfile::TempDir, Store, Committer) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let c = Committer::new(store.clone());
        (dir, store, c)
    }

    /// A number queued while a lower one is still being signed waits for it; a released
    /// number holds nothing up; numbers continue from the store.
    #[test]
    fn numbers_commit_in_order_and_continue_from_the_store() {
        let (_dir, store, c) = committer();
        let conv = [1u8; 16];
        let other = [2u8; 16];
        let (t1, t2) = (c.reserve(&conv).unwrap(), c.reserve(&conv).unwrap());
        assert_eq!((t1.seq(), t2.seq()), (1, 2));
        assert_eq!(c.reserve(&other).unwrap().seq(), 1, "per conversation");
        let order = Arc::new(Mutex::new(Vec::new()));
        let (c2, o2) = (c.clone(), Arc::clone(&order));
        let second = std::thread::spawn(move || {
            c2.commit(t2, move |_, seq| {
                o2.lock().push(seq);
                Ok(seq)
            })
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(order.lock().is_empty(), "2 waits while 1 is open");
        let o1 = Arc::clone(&order);
        let first = c.commit(t1, move |_, seq| {
            o1.lock().push(seq);
            Ok(seq)
        });
        assert_eq!(first.unwrap(), Some(1));
        assert_eq!(second.join().unwrap().unwrap(), Some(2));
        assert_eq!(*order.lock(), vec![1, 2]);

        // 3 is dropped (an error while signing): 4 does not wait for it.
        let (t3, t4) = (c.reserve(&conv).unwrap(), c.reserve(&conv).unwrap());
        drop(t3);
        assert_eq!(c.commit(t4, |_, seq| Ok(seq)).unwrap(), Some(4));

        // A number taken by another writer meanwhile: nothing stored, sign again.
        let t5 = c.reserve(&conv).unwrap();
        assert_eq!(t5.seq(), 5);
        let txn = store.write().unwrap();
        txn.open_table(CONVERSATION_TO_LAST_SEQ)
            .unwrap()
            .insert(conv, 5u64)
            .unwrap();
        txn.commit().unwrap();
        assert_eq!(c.commit(t5, |_, seq| Ok(seq)).unwrap(), None);
        assert_eq!(
            c.reserve(&conv).unwrap().seq(),
            6,
            "the store's number is skipped"
        );

        // The store keeps the last number: a new committer (a restart) goes on from it.
        let again = Committer::new(store.clone());
        assert_eq!(again.reserve(&conv).unwrap().seq(), 6);
        c.close();
        assert!(c.reserve(&conv).is_err(), "closed");
    }

    /// Sends that arrive together share one commit; a failing one fails its commit only.
    #[test]
    fn sends_arriving_together_share_one_commit() {
        let (_dir, store, c) = committer();
        let tickets: Vec<Ticket> = (0..8).map(|i| c.reserve(&[i as u8; 16]).unwrap()).collect();
        // Hold the committer's next transaction open until every job is queued.
        let gate = store.write().unwrap();
        let handles: Vec<_> = tickets
            .into_iter()
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || c.commit(t, |_, seq| Ok(seq)))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        gate.abort().unwrap();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), Some(1));
        }
        // The first may have been taken alone before the others arrived; the other seven
        // waited together for the writer and went in one transaction.
        assert!(c.batches() <= 2, "{} transactions for 8 sends", c.batches());
        let txn = store.read().unwrap();
        assert_eq!(
            txn.open_table(CONVERSATION_TO_LAST_SEQ)
                .unwrap()
                .len()
                .unwrap(),
            8
        );
        drop(txn);

        let t = c.reserve(&[9; 16]).unwrap();
        let failed = c.commit(t, |_, _| -> Result<(), StoreError> {
            Err(StoreError::Corrupt("refused".into()))
        });
        assert!(matches!(failed, Err(StoreError::Corrupt(_))));
        let stored = |store: &Store| {
            let txn = store.read().unwrap();
            let t = txn.open_table(CONVERSATION_TO_LAST_SEQ).unwrap();
            t.get([9u8; 16]).unwrap().map(|g| g.value())
        };
        assert_eq!(stored(&store), None, "nothing of the failed one was stored");
        let t = c.reserve(&[9; 16]).unwrap();
        let seq = c.commit(t, |_, seq| Ok(seq)).unwrap();
        assert_eq!(stored(&store), seq);
    }
}
