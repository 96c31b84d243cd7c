//! The delivery protocol, sans IO: which delivery goes next, when a failed
//! one is tried again, when one is given up. The worker around it only reads
//! rows, sends requests and writes results.
//!
//! Rules:
//! - A lane is one incident on one channel. Its deliveries go one at a
//!   time, in id order (the order of the incident's transitions): the next
//!   waits until the one before was delivered or given up.
//! - A channel has at most `per_channel` deliveries in flight, so a slow
//!   or dead receiver holds back only its own channel.
//! - A failure is retried after exponential backoff with full jitter
//!   (`base × 2^attempts`, capped, times a jitter in `[0, 1)` the caller
//!   draws), or after the receiver's `Retry-After` when that is later.
//! - A delivery still failing `give_up_after` after its first attempt is
//!   dead; the lane goes on with the next.
//!
//! Time is milliseconds on any clock the caller chooses; nothing here reads
//! a clock or draws a random number.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// A delivery row's id: increasing in the order the transitions were committed.
pub type DeliveryId = i64;

/// When failures are retried and given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry's ceiling, in ms.
    pub base_ms: u64,
    /// The ceiling of any retry's delay, in ms.
    pub max_ms: u64,
    /// A delivery failing this long after its first attempt is dead.
    pub give_up_after_ms: u64,
    /// Deliveries of one channel in flight at once.
    pub per_channel: usize,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { base_ms: 1_000, max_ms: 5 * 60_000, give_up_after_ms: 24 * 3_600_000, per_channel: 4 }
    }
}

/// One delivery waiting in its lane.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Waiting {
    id: DeliveryId,
    attempts: u32,
    /// Not tried again before this instant.
    not_before: u64,
    /// When it was first tried (`None`: never yet).
    first_try: Option<u64>,
}

/// What became of a failed delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// It is tried again at this instant.
    RetryAt(u64),
    /// It was given up.
    Dead,
}

/// The scheduler: lanes of waiting deliveries and what is in flight.
#[derive(Debug)]
pub struct Schedule {
    policy: RetryPolicy,
    /// Lanes by (channel, incident), each in id order.
    lanes: BTreeMap<(String, String), VecDeque<Waiting>>,
    /// The lane of every delivery known.
    lane_of: HashMap<DeliveryId, (String, String)>,
    /// Deliveries in flight, by id.
    in_flight: HashMap<DeliveryId, ()>,
    /// In-flight count per channel.
    busy: HashMap<String, usize>,
}

impl Schedule {
    /// An empty schedule.
    pub fn new(policy: RetryPolicy) -> Schedule {
        Schedule {
            policy,
            lanes: BTreeMap::new(),
            lane_of: HashMap::new(),
            in_flight: HashMap::new(),
            busy: HashMap::new(),
        }
    }

    /// Adds a delivery to the end of its lane (ids arrive in increasing
    /// order per lane; one already known is ignored). `attempts`,
    /// `not_before` and `first_try` restore a row that was tried before a
    /// restart (0, 0 and `None` for a new one).
    pub fn add(
        &mut self,
        id: DeliveryId,
        channel: &str,
        incident: &str,
        attempts: u32,
        not_before: u64,
        first_try: Option<u64>,
    ) {
        if self.lane_of.contains_key(&id) {
            return;
        }
        let lane = (channel.to_string(), incident.to_string());
        self.lane_of.insert(id, lane.clone());
        self.lanes.entry(lane).or_default().push_back(Waiting { id, attempts, not_before, first_try });
    }

    /// How many deliveries are known and not yet delivered or dead.
    pub fn len(&self) -> usize {
        self.lane_of.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.lane_of.is_empty()
    }

    /// The deliveries to send now: the head of every lane that has nothing
    /// in flight and is due, within each channel's limit. Each is in flight
    /// until [`Schedule::delivered`] or [`Schedule::failed`].
    pub fn due(&mut self, now: u64) -> Vec<DeliveryId> {
        let mut due = Vec::new();
        for ((channel, _), lane) in &mut self.lanes {
            let Some(head) = lane.front_mut() else { continue };
            if self.in_flight.contains_key(&head.id) || head.not_before > now {
                continue;
            }
            let busy = self.busy.entry(channel.clone()).or_default();
            if *busy >= self.policy.per_channel {
                continue;
            }
            *busy += 1;
            head.first_try.get_or_insert(now);
            self.in_flight.insert(head.id, ());
            due.push(head.id);
        }
        due
    }

    /// The earliest instant at which [`Schedule::due`] may hand out more,
    /// if anything waits that is not in flight.
    pub fn next_wakeup(&self) -> Option<u64> {
        self.lanes
            .values()
            .filter_map(VecDeque::front)
            .filter(|head| !self.in_flight.contains_key(&head.id))
            .map(|head| head.not_before)
            .min()
    }

    /// The receiver accepted delivery `id`: its lane moves on.
    pub fn delivered(&mut self, id: DeliveryId) -> bool {
        self.finish(id)
    }

    /// Delivery `id` failed at `now`; `retry_after` is the receiver's
    /// `Retry-After` in ms, `jitter` a number in `[0, 1)`.
    pub fn failed(
        &mut self,
        id: DeliveryId,
        now: u64,
        retry_after: Option<u64>,
        jitter: f64,
    ) -> Option<AfterFailure> {
        let lane = self.lane_of.get(&id)?.clone();
        self.in_flight.remove(&id)?;
        if let Some(busy) = self.busy.get_mut(&lane.0) {
            *busy = busy.saturating_sub(1);
        }
        let policy = self.policy;
        let head = self.lanes.get_mut(&lane)?.front_mut()?;
        if head.id != id {
            return None;
        }
        head.attempts = head.attempts.saturating_add(1);
        let first_try = *head.first_try.get_or_insert(now);
        if now.saturating_sub(first_try) >= policy.give_up_after_ms {
            self.finish_unflown(id);
            return Some(AfterFailure::Dead);
        }
        let ceiling = policy
            .base_ms
            .saturating_mul(1_u64 << head.attempts.saturating_sub(1).min(32))
            .min(policy.max_ms);
        let backoff = (ceiling as f64 * jitter.clamp(0.0, 1.0)) as u64;
        let delay = backoff.max(retry_after.unwrap_or(0));
        head.not_before = now.saturating_add(delay);
        Some(AfterFailure::RetryAt(head.not_before))
    }

    /// Gives up delivery `id`, in flight, at once (a refusal that retrying
    /// cannot fix): its lane moves on.
    pub fn give_up(&mut self, id: DeliveryId) -> bool {
        self.finish(id)
    }

    /// Removes `id` (the head of its lane) after it was in flight.
    fn finish(&mut self, id: DeliveryId) -> bool {
        let Some(lane) = self.lane_of.get(&id).cloned() else { return false };
        if self.in_flight.remove(&id).is_none() {
            return false;
        }
        if let Some(busy) = self.busy.get_mut(&lane.0) {
            *busy = busy.saturating_sub(1);
        }
        self.finish_unflown(id)
    }

    /// Removes `id`, the head of its lane, not in flight.
    fn finish_unflown(&mut self, id: DeliveryId) -> bool {
        let Some(lane) = self.lane_of.remove(&id) else { return false };
        let Some(queue) = self.lanes.get_mut(&lane) else { return false };
        if queue.front().map(|head| head.id) == Some(id) {
            queue.pop_front();
        }
        if queue.is_empty() {
            self.lanes.remove(&lane);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_lane_goes_one_at_a_time_in_order() {
        let mut schedule = Schedule::new(RetryPolicy::default());
        schedule.add(1, "slack", "inc_a", 0, 0, None);
        schedule.add(2, "slack", "inc_a", 0, 0, None);
        schedule.add(3, "slack", "inc_b", 0, 0, None);
        assert_eq!(schedule.due(0), vec![1, 3]);
        assert_eq!(schedule.due(0), Vec::<DeliveryId>::new());
        assert!(schedule.delivered(1));
        assert_eq!(schedule.due(0), vec![2]);
    }

    #[test]
    fn failures_back_off_honour_retry_after_and_give_up() {
        let policy = RetryPolicy { base_ms: 1_000, max_ms: 8_000, give_up_after_ms: 60_000, per_channel: 4 };
        let mut schedule = Schedule::new(policy);
        schedule.add(1, "hook", "inc", 0, 0, None);
        assert_eq!(schedule.due(0), vec![1]);
        // Full jitter: the delay is a fraction of the ceiling.
        assert_eq!(schedule.failed(1, 0, None, 0.5), Some(AfterFailure::RetryAt(500)));
        assert_eq!(schedule.due(400), Vec::<DeliveryId>::new());
        assert_eq!(schedule.next_wakeup(), Some(500));
        assert_eq!(schedule.due(500), vec![1]);
        // Retry-After wins when later than the backoff.
        assert_eq!(schedule.failed(1, 500, Some(30_000), 0.5), Some(AfterFailure::RetryAt(30_500)));
        assert_eq!(schedule.due(30_500), vec![1]);
        assert_eq!(schedule.failed(1, 60_001, None, 0.9), Some(AfterFailure::Dead));
        assert!(schedule.is_empty());
    }

    #[test]
    fn a_stuck_channel_holds_back_only_itself() {
        let policy = RetryPolicy { per_channel: 2, ..RetryPolicy::default() };
        let mut schedule = Schedule::new(policy);
        for (id, incident) in [(1, "a"), (2, "b"), (3, "c")] {
            schedule.add(id, "hanging", incident, 0, 0, None);
        }
        schedule.add(4, "healthy", "a", 0, 0, None);
        let due = schedule.due(0);
        assert_eq!(due, vec![1, 2, 4], "the hanging channel up to its limit, and the healthy one");
    }

    /// What the proptest does to the schedule.
    #[derive(Clone, Debug)]
    enum Step {
        /// Add the next delivery to one of a few lanes.
        Add { channel: u8, incident: u8 },
        /// Let time pass.
        Wait(u16),
        /// Take what is due.
        Due,
        /// Settle one in-flight delivery: delivered, or failed with a retry-after and jitter.
        Settle { pick: u8, ok: bool, retry_after: Option<u16>, jitter: u8 },
        /// A restart: a new schedule from what is left, as the worker rebuilds it from the rows.
        Restart,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..3u8, 0..4u8).prop_map(|(channel, incident)| Step::Add { channel, incident }),
            (0..2_000u16).prop_map(Step::Wait),
            Just(Step::Due),
            (any::<u8>(), any::<bool>(), proptest::option::of(0..3_000u16), any::<u8>())
                .prop_map(|(pick, ok, retry_after, jitter)| Step::Settle { pick, ok, retry_after, jitter }),
            Just(Step::Restart),
        ]
    }

    proptest! {
        /// Under any interleaving of additions, time, failures and
        /// restarts: never two deliveries of one lane in flight, never more
        /// than the channel's limit, each lane delivered in id order, none
        /// delivered twice, and in the end every delivery is delivered or dead.
        #[test]
        fn deliveries_keep_lane_order_and_are_neither_lost_nor_doubled(steps in proptest::collection::vec(step(), 1..200)) {
            let policy = RetryPolicy { base_ms: 100, max_ms: 1_000, give_up_after_ms: 20_000, per_channel: 2 };
            let mut schedule = Schedule::new(policy);
            let mut now = 0u64;
            let mut next_id = 1;
            // Rows as the store keeps them: id → (channel, incident, attempts, not_before).
            let mut rows: BTreeMap<DeliveryId, (String, String, u32, u64, Option<u64>)> = BTreeMap::new();
            let mut in_flight: Vec<DeliveryId> = Vec::new();
            let mut finished: Vec<(DeliveryId, (String, String))> = Vec::new();
            let mut run = |step: Step, schedule: &mut Schedule, now: &mut u64, in_flight: &mut Vec<DeliveryId>, rows: &mut BTreeMap<DeliveryId, (String, String, u32, u64, Option<u64>)>, finished: &mut Vec<(DeliveryId, (String, String))>| {
                match step {
                    Step::Add { channel, incident } => {
                        let (channel, incident) = (format!("c{channel}"), format!("i{incident}"));
                        schedule.add(next_id, &channel, &incident, 0, 0, None);
                        rows.insert(next_id, (channel, incident, 0, 0, None));
                        next_id += 1;
                    }
                    Step::Wait(ms) => *now += u64::from(ms),
                    Step::Due => {
                        for id in schedule.due(*now) {
                            if let Some(row) = rows.get_mut(&id) { row.4.get_or_insert(*now); }
                            let (channel, incident, _, _, _) = &rows[&id];
                            prop_assert!(!in_flight.iter().any(|other| rows[other].1 == *incident && rows[other].0 == *channel), "two of one lane in flight");
                            prop_assert!(!finished.iter().any(|(done, _)| *done == id), "{id} sent after it finished");
                            in_flight.push(id);
                            let busy = in_flight.iter().filter(|other| rows[other].0 == *channel).count();
                            prop_assert!(busy <= policy.per_channel, "channel over its limit");
                        }
                    }
                    Step::Settle { pick, ok, retry_after, jitter } => {
                        if in_flight.is_empty() { return Ok(()); }
                        let id = in_flight.remove(usize::from(pick) % in_flight.len());
                        if ok {
                            prop_assert!(schedule.delivered(id));
                            if let Some((channel, incident, _, _, _)) = rows.remove(&id) { finished.push((id, (channel, incident))); }
                        } else {
                            match schedule.failed(id, *now, retry_after.map(u64::from), f64::from(jitter) / 256.0) {
                                Some(AfterFailure::RetryAt(at)) => {
                                    prop_assert!(at >= *now);
                                    if let Some(row) = rows.get_mut(&id) { row.2 += 1; row.3 = at; }
                                }
                                Some(AfterFailure::Dead) => {
                                    if let Some((channel, incident, _, _, _)) = rows.remove(&id) { finished.push((id, (channel, incident))); }
                                }
                                None => prop_assert!(false, "an in-flight delivery was unknown"),
                            }
                        }
                    }
                    Step::Restart => {
                        // In-flight sends are lost with the process; their rows stay.
                        in_flight.clear();
                        *schedule = Schedule::new(policy);
                        for (id, (channel, incident, attempts, not_before, first_try)) in rows.iter() {
                            schedule.add(*id, channel, incident, *attempts, *not_before, *first_try);
                        }
                    }
                }
                Ok(())
            };
            for step in steps {
                run(step, &mut schedule, &mut now, &mut in_flight, &mut rows, &mut finished)?;
            }
            // Drain: everything succeeds from now on.
            for _ in 0..10_000 {
                if schedule.is_empty() { break; }
                now += 1_000;
                run(Step::Due, &mut schedule, &mut now, &mut in_flight, &mut rows, &mut finished)?;
                while !in_flight.is_empty() {
                    run(Step::Settle { pick: 0, ok: true, retry_after: None, jitter: 0 }, &mut schedule, &mut now, &mut in_flight, &mut rows, &mut finished)?;
                }
            }
            prop_assert!(schedule.is_empty() && rows.is_empty(), "deliveries left: {:?}", rows);
            let mut seen = std::collections::HashSet::new();
            for (id, _) in &finished { prop_assert!(seen.insert(*id), "{id} finished twice"); }
            prop_assert_eq!(seen.len() as i64, next_id - 1, "a delivery was lost");
            // Per lane, deliveries finished in id order.
            let mut last: HashMap<&(String, String), DeliveryId> = HashMap::new();
            for (id, lane) in &finished {
                if let Some(before) = last.insert(lane, *id) { prop_assert!(before < *id, "lane {:?}: {} after {}", lane, id, before); }
            }
        }
    }
}
