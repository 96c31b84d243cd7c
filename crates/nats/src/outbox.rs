//! The incident outbox publisher as a state machine without IO: it is told
//! what the store read, which publishes were acknowledged or failed, and when
//! the clock ticked; it says what to read, what to send, and what to mark
//! delivered or set aside. The monitor does the IO (see `monitor.rs`).

use std::collections::{HashMap, HashSet, VecDeque};

use lifewatch_store::OutboxEntry;

/// Why a publish failed, as the IO side classifies the server's answer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FailureKind {
    /// It may work later (a timeout, a lost connection): the outbox is read
    /// and sent again from the earliest entry not settled, after the next tick.
    Retryable,
    /// It will never work (payload too large, invalid subject, no stream for
    /// the subject): the entry is set aside with this reason and the entries
    /// after it go on.
    Permanent(String),
}

/// One hand-out of an outbox entry to the IO side. Acknowledgements and
/// failures are reported with it; those of a hand-out from before a rewind
/// (an earlier epoch) are ignored, since the entry was read and handed out
/// again since.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ticket {
    /// The outbox id.
    pub id: i64,
    epoch: u64,
}

/// The entries of one subject behind the one handed out.
#[derive(Default)]
struct Lane {
    held: VecDeque<OutboxEntry>,
}

/// The outbox publisher's state.
///
/// Invariants (checked after every step of the property test):
///
/// - **One per subject.** For every subject, at most one entry is ready or
///   handed out and not yet settled; later ones of the subject wait in its
///   lane, in outbox order. Consumers read the latest message per incident
///   subject, so a re-send of an earlier message must never land after a
///   later one.
/// - **At ack rate.** A subject has a lane exactly while one of its entries
///   is ready or handed out, and when that entry is settled (acknowledged or
///   set aside) the next held one becomes ready at once: held entries never
///   wait for a tick.
/// - **Nothing lost.** Every entry read is ready, handed out, held, or
///   settled (in `delivered` or `set_aside` until the IO side takes them
///   and writes them to the store); a retryable failure rewinds to the
///   earliest entry not settled and reads again from there.
/// - **No re-send of a settled entry.** After a rewind, entries settled but
///   not yet taken are skipped when read again.
/// - **Bounded memory.** Reads are asked for only while fewer than `chunk`
///   entries are ready or held, and at most `max_in_flight` entries are
///   handed out and not settled (the client's own limit of acknowledgements
///   pending must be higher, or a publish would wait for a permit that only
///   an answer this publisher has not read yet can free).
///
/// The IO side's contract: serve [`Outbox::read_request`] with up to `chunk`
/// pending entries after the given id, send everything
/// [`Outbox::next_message`] hands out, report each hand-out's outcome once,
/// write what [`Outbox::take_delivered`] and [`Outbox::take_set_aside`]
/// return to the store before serving the next read, call
/// [`Outbox::committed`] after a commit that queued entries and
/// [`Outbox::tick`] periodically. A restart is a new `Outbox`.
pub struct Outbox {
    chunk: usize,
    max_in_flight: usize,
    epoch: u64,
    /// The highest id read in this epoch.
    read_through: i64,
    /// Whether the store may hold pending entries past `read_through`.
    more: bool,
    /// A retryable failure happened: nothing is read or sent until the next tick.
    paused: bool,
    /// Entries free to send, in outbox order within each subject.
    ready: VecDeque<OutboxEntry>,
    /// Per subject with an entry ready or handed out: the entries held behind it.
    lanes: HashMap<String, Lane>,
    /// Entries held in lanes, in all.
    held: usize,
    /// Handed out and not settled: id → subject.
    in_flight: HashMap<i64, String>,
    /// Acknowledged, not yet taken to be marked delivered.
    delivered: Vec<i64>,
    /// Refused for good, not yet taken to be set aside.
    set_aside: Vec<(i64, String)>,
    /// Settled entries not yet taken when the outbox was rewound: skipped
    /// when read again.
    skip: HashSet<i64>,
}

impl Outbox {
    /// A publisher that reads `chunk` entries at a time, from the first
    /// pending one, and has at most `max_in_flight` handed out at once.
    pub fn new(chunk: usize, max_in_flight: usize) -> Outbox {
        Outbox {
            chunk: chunk.max(1),
            max_in_flight: max_in_flight.max(1),
            epoch: 0,
            read_through: 0,
            more: true,
            paused: false,
            ready: VecDeque::new(),
            lanes: HashMap::new(),
            held: 0,
            in_flight: HashMap::new(),
            delivered: Vec::new(),
            set_aside: Vec::new(),
            skip: HashSet::new(),
        }
    }

    /// `Some(after)` when the store should be read: up to `chunk` pending
    /// entries whose id is above `after`, given to [`Outbox::rows_read`].
    pub fn read_request(&self) -> Option<i64> {
        (self.more && !self.paused && self.ready.len() + self.held < self.chunk).then_some(self.read_through)
    }

    /// The answer to the last [`Outbox::read_request`], in id order.
    pub fn rows_read(&mut self, rows: Vec<OutboxEntry>) {
        self.more = rows.len() >= self.chunk;
        for row in rows {
            if row.id <= self.read_through {
                continue;
            }
            self.read_through = row.id;
            if !self.skip.is_empty() && self.skip.remove(&row.id) {
                continue;
            }
            match self.lanes.get_mut(&row.subject) {
                Some(lane) => {
                    lane.held.push_back(row);
                    self.held += 1;
                }
                None => {
                    self.lanes.insert(row.subject.clone(), Lane::default());
                    self.ready.push_back(row);
                }
            }
        }
    }

    /// The next entry to publish, if any may go now.
    pub fn next_message(&mut self) -> Option<(Ticket, OutboxEntry)> {
        if self.paused || self.in_flight.len() >= self.max_in_flight {
            return None;
        }
        let row = self.ready.pop_front()?;
        self.in_flight.insert(row.id, row.subject.clone());
        Some((Ticket { id: row.id, epoch: self.epoch }, row))
    }

    /// The subject of a hand-out not settled yet.
    pub fn subject(&self, ticket: Ticket) -> Option<&str> {
        if ticket.epoch != self.epoch {
            return None;
        }
        self.in_flight.get(&ticket.id).map(String::as_str)
    }

    /// The server stored the message of `ticket` (or dropped it as a duplicate of its id).
    pub fn acked(&mut self, ticket: Ticket) {
        if let Some(subject) = self.settle(ticket) {
            self.delivered.push(ticket.id);
            self.release(&subject);
        }
    }

    /// Publishing the message of `ticket` failed. Returns whether it counted
    /// (false for a hand-out from before a rewind).
    pub fn failed(&mut self, ticket: Ticket, kind: FailureKind) -> bool {
        let Some(subject) = self.settle(ticket) else { return false };
        match kind {
            FailureKind::Permanent(reason) => {
                self.set_aside.push((ticket.id, reason));
                self.release(&subject);
            }
            FailureKind::Retryable => self.rewind(ticket.id),
        }
        true
    }

    /// The store queued new entries.
    pub fn committed(&mut self) {
        self.more = true;
    }

    /// The periodic tick: after a retryable failure, try again; and look
    /// at the store again in case entries were queued unnoticed.
    pub fn tick(&mut self) {
        self.paused = false;
        self.more = true;
    }

    /// Acknowledged entries waiting to be marked delivered.
    pub fn delivered_waiting(&self) -> usize {
        self.delivered.len()
    }

    /// The acknowledged entries, to mark delivered in the store now.
    pub fn take_delivered(&mut self) -> Vec<i64> {
        let ids = std::mem::take(&mut self.delivered);
        if !self.skip.is_empty() {
            ids.iter().for_each(|id| _ = self.skip.remove(id));
        }
        ids
    }

    /// The entries refused for good, with the reason, to set aside in the store now.
    pub fn take_set_aside(&mut self) -> Vec<(i64, String)> {
        let entries = std::mem::take(&mut self.set_aside);
        if !self.skip.is_empty() {
            entries.iter().for_each(|(id, _)| _ = self.skip.remove(id));
        }
        entries
    }

    /// Whether it waits for the next tick after a retryable failure.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Hand-outs not settled yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether everything known was published or set aside: nothing to
    /// read, send, or wait for (what was settled may still wait to be taken).
    pub fn is_idle(&self) -> bool {
        !self.more && !self.paused && self.in_flight.is_empty() && self.ready.is_empty() && self.held == 0
    }

    /// Ends a hand-out of this epoch; its subject.
    fn settle(&mut self, ticket: Ticket) -> Option<String> {
        if ticket.epoch != self.epoch {
            return None;
        }
        self.in_flight.remove(&ticket.id)
    }

    /// The entry of `subject` in flight was settled: the next one held goes.
    fn release(&mut self, subject: &str) {
        let Some(lane) = self.lanes.get_mut(subject) else { return };
        match lane.held.pop_front() {
            Some(next) => {
                self.held -= 1;
                self.ready.push_back(next);
            }
            None => {
                self.lanes.remove(subject);
            }
        }
    }

    /// Forgets everything not settled, to read and send it again, in order,
    /// from the earliest such entry (at most `failed`), after the next tick.
    /// Entries the server had stored are dropped as duplicates of their
    /// `Nats-Msg-Id`; entries settled since are skipped.
    fn rewind(&mut self, failed: i64) {
        let held = self.lanes.values().flat_map(|lane| lane.held.iter().map(|row| row.id));
        let unsettled = self.in_flight.keys().copied().chain(self.ready.iter().map(|row| row.id)).chain(held);
        let from = unsettled.fold(failed, i64::min);
        self.read_through = from - 1;
        self.skip.extend(self.delivered.iter().copied().filter(|id| *id >= from));
        self.skip.extend(self.set_aside.iter().map(|(id, _)| *id).filter(|id| *id >= from));
        self.in_flight.clear();
        self.ready.clear();
        self.lanes.clear();
        self.held = 0;
        self.epoch += 1;
        self.more = true;
        self.paused = true;
    }

    /// The invariants of the type's documentation that can be seen in its state.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut busy: HashMap<&str, usize> = HashMap::new();
        for row in &self.ready {
            *busy.entry(row.subject.as_str()).or_default() += 1;
        }
        for subject in self.in_flight.values() {
            *busy.entry(subject.as_str()).or_default() += 1;
        }
        for (subject, count) in &busy {
            assert_eq!(*count, 1, "{subject}: {count} entries ready or in flight");
            assert!(self.lanes.contains_key(*subject), "{subject} has no lane");
        }
        for subject in self.lanes.keys() {
            assert!(busy.contains_key(subject.as_str()), "{subject}: a lane with nothing ready or in flight");
        }
        assert!(self.in_flight.len() <= self.max_in_flight);
        if !self.paused && self.in_flight.len() < self.max_in_flight {
            assert!(self.ready.is_empty(), "entries ready while there is room to send them");
        }
        let held: usize = self.lanes.values().map(|lane| lane.held.len()).sum();
        assert_eq!(held, self.held);
        for lane in self.lanes.values() {
            let ids: Vec<i64> = lane.held.iter().map(|row| row.id).collect();
            assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "held out of order: {ids:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A stored outbox row of the model store.
    #[derive(Clone, Debug)]
    struct StoreRow {
        subject: String,
        /// The server refuses it for good (a payload too large).
        poison: bool,
        delivered: bool,
        set_aside: bool,
    }

    /// A message on its way: the hand-out, and whether the server refuses it.
    #[derive(Clone, Debug)]
    struct Wire {
        ticket: Ticket,
        poison: bool,
    }

    /// The store, the network and the server around one publisher, driven
    /// as the monitor drives it.
    struct World {
        chunk: usize,
        max_in_flight: usize,
        outbox: Outbox,
        store: BTreeMap<i64, StoreRow>,
        network: Vec<Wire>,
        /// Outbox ids the server stored, in the order it stored them (a
        /// message whose id it holds is dropped as a duplicate).
        server: Vec<i64>,
        sends: u64,
    }

    impl World {
        fn new(chunk: usize, max_in_flight: usize) -> World {
            World {
                chunk,
                max_in_flight,
                outbox: Outbox::new(chunk, max_in_flight),
                store: BTreeMap::new(),
                network: Vec::new(),
                server: Vec::new(),
                sends: 0,
            }
        }

        fn commit(&mut self, rows: &[(u8, bool)]) {
            let first = self.store.keys().next_back().copied().unwrap_or(0) + 1;
            for (id, (subject, poison)) in (first..).zip(rows) {
                let row = StoreRow {
                    subject: format!("incidents.s{subject}"),
                    poison: *poison,
                    delivered: false,
                    set_aside: false,
                };
                self.store.insert(id, row);
            }
            self.outbox.committed();
        }

        /// The server receives the message of outbox entry `id`.
        fn server_receives(&mut self, id: i64) {
            if self.server.contains(&id) {
                return;
            }
            let subject = &self.store[&id].subject;
            if let Some(last) = self.server.iter().rev().find(|other| &self.store[*other].subject == subject)
            {
                assert!(*last < id, "{subject}: entry {id} stored after {last}");
            }
            self.server.push(id);
        }

        /// The monitor's turn after every input: read, send, write marks.
        fn pump(&mut self) {
            loop {
                while let Some((ticket, row)) = self.outbox.next_message() {
                    let stored = &self.store[&row.id];
                    assert!(!stored.delivered, "entry {} sent again after it was marked delivered", row.id);
                    assert!(!stored.set_aside, "entry {} sent again after it was set aside", row.id);
                    assert_eq!(row.subject, stored.subject);
                    self.sends += 1;
                    self.network.push(Wire { ticket, poison: stored.poison });
                }
                let Some(after) = self.outbox.read_request() else { break };
                let rows: Vec<OutboxEntry> = self
                    .store
                    .range(after + 1..)
                    .filter(|(_, row)| !row.delivered && !row.set_aside)
                    .take(self.chunk)
                    .map(|(id, row)| OutboxEntry {
                        id: *id,
                        incident_id: format!("inc_{id}"),
                        transition: "opened".to_string(),
                        subject: row.subject.clone(),
                        payload: String::new(),
                    })
                    .collect();
                self.outbox.rows_read(rows);
            }
            self.outbox.check_invariants();
        }

        fn flush(&mut self) {
            for id in self.outbox.take_delivered() {
                let row = self.store.get_mut(&id).expect("a stored row");
                assert!(!row.poison, "a refused entry marked delivered");
                row.delivered = true;
            }
            for (id, _) in self.outbox.take_set_aside() {
                let row = self.store.get_mut(&id).expect("a stored row");
                assert!(row.poison, "entry {id} set aside though the server would take it");
                if !row.delivered {
                    row.set_aside = true;
                }
            }
        }

        /// The server answers the message at `index` of the network.
        fn answer(&mut self, index: usize, fails: bool, stored_anyway: bool) {
            if self.network.is_empty() {
                return;
            }
            let wire = self.network.remove(index % self.network.len());
            if wire.poison {
                self.outbox.failed(wire.ticket, FailureKind::Permanent("max payload size exceeded".into()));
            } else if fails {
                if stored_anyway {
                    self.server_receives(wire.ticket.id);
                }
                self.outbox.failed(wire.ticket, FailureKind::Retryable);
            } else {
                self.server_receives(wire.ticket.id);
                self.outbox.acked(wire.ticket);
            }
        }

        /// The process dies: messages on their way reach the server or
        /// not, acknowledgements are lost, unmarked settlements too.
        fn restart(&mut self, reached: u64) {
            let network = std::mem::take(&mut self.network);
            for (index, wire) in network.iter().enumerate() {
                if !wire.poison && reached & (1 << (index % 64)) != 0 {
                    self.server_receives(wire.ticket.id);
                }
            }
            self.outbox = Outbox::new(self.chunk, self.max_in_flight);
        }

        /// Runs to the end without failures, ticking only after a failure.
        fn drain(&mut self) {
            for _ in 0..100_000 {
                self.pump();
                self.flush();
                if !self.network.is_empty() {
                    self.answer(0, false, false);
                } else if self.outbox.paused() {
                    self.outbox.tick();
                } else if self.outbox.is_idle() {
                    break;
                } else {
                    panic!("not idle, not paused and nothing on the way: stuck");
                }
            }
            self.flush();
            assert!(self.outbox.is_idle(), "the outbox must drain");
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        Commit(Vec<(u8, bool)>),
        Answer { index: usize, fails: bool, stored_anyway: bool },
        Tick,
        Flush,
        Restart(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => prop::collection::vec((0u8..4, prop::bool::weighted(0.1)), 1..6).prop_map(Step::Commit),
            8 => (any::<usize>(), prop::bool::weighted(0.1), any::<bool>())
                .prop_map(|(index, fails, stored_anyway)| Step::Answer { index, fails, stored_anyway }),
            1 => Just(Step::Tick),
            2 => Just(Step::Flush),
            1 => any::<u64>().prop_map(Step::Restart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Under any interleaving of commits, acknowledgements, failures
        /// (retryable, with or without the message stored, and permanent),
        /// ticks, store writes and restarts: each subject's entries are
        /// stored by the server in outbox order, no entry is sent after it
        /// was marked delivered or set aside, and in the end every entry is
        /// delivered (stored once by the server) or set aside (exactly the
        /// refused ones).
        #[test]
        fn order_no_loss_no_duplicate(
            chunk in 1usize..6,
            max_in_flight in 1usize..8,
            steps in prop::collection::vec(step(), 1..80),
        ) {
            let mut world = World::new(chunk, max_in_flight);
            for step in steps {
                match step {
                    Step::Commit(rows) => world.commit(&rows),
                    Step::Answer { index, fails, stored_anyway } => world.answer(index, fails, stored_anyway),
                    Step::Tick => world.outbox.tick(),
                    Step::Flush => world.flush(),
                    Step::Restart(reached) => world.restart(reached),
                }
                world.pump();
            }
            world.drain();
            for (id, row) in &world.store {
                prop_assert!(row.delivered != row.set_aside, "entry {} delivered {} set aside {}", id, row.delivered, row.set_aside);
                prop_assert_eq!(row.set_aside, row.poison);
                prop_assert_eq!(world.server.contains(id), !row.poison);
            }
        }
    }

    /// The trickle: thousands of messages of one subject flow at the
    /// rate of the acknowledgements, with no tick at all.
    #[test]
    fn held_messages_of_one_subject_flow_at_ack_rate_without_ticks() {
        let mut world = World::new(1_000, 10_000);
        let cycles: Vec<(u8, bool)> = vec![(0, false); 3_000];
        world.commit(&cycles);
        world.pump();
        let mut answered = 0;
        while !world.network.is_empty() {
            assert_eq!(world.network.len(), 1, "one message of the subject on its way at a time");
            world.answer(0, false, false);
            answered += 1;
            world.pump();
            if answered % 500 == 0 {
                world.flush();
            }
        }
        world.flush();
        assert_eq!(answered, 3_000);
        assert!(world.outbox.is_idle());
        assert!(world.store.values().all(|row| row.delivered));
    }

    /// A refused entry is set aside and the entries after it, of its subject
    /// and others, still go.
    #[test]
    fn a_poison_entry_does_not_block_the_others() {
        let mut world = World::new(10, 100);
        world.commit(&[(0, true), (0, false), (1, false)]);
        world.pump();
        assert_eq!(world.network.len(), 2, "the poison entry and the other subject's");
        world.answer(0, false, false);
        world.pump();
        world.flush();
        world.drain();
        let set_aside: Vec<i64> =
            world.store.iter().filter(|(_, row)| row.set_aside).map(|(id, _)| *id).collect();
        assert_eq!(set_aside, vec![1]);
        assert_eq!(world.server, vec![3, 2]);
    }
}
