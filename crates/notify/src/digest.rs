//! A channel's rate limit, sans IO: at most `per_minute` messages in any
//! minute; what is due beyond it is held and then sent as one summary.
//!
//! Rules:
//! - A due delivery is sent on its own while the last minute holds fewer
//!   than `per_minute` messages, nothing is held and no summary is in
//!   flight; otherwise it is held.
//! - Held deliveries go out together, as one summary message, as soon as
//!   the window has room; the summary counts as one message.
//! - Once something is held, everything after it is held too until a
//!   summary carried it: messages leave in the order they fell due, so one
//!   incident's transitions are never reordered.
//! - A summary that fails is held again (in front) and tried after the
//!   delay the caller gives.
//!
//! Time is milliseconds on any clock the caller chooses.

use std::collections::VecDeque;

use crate::schedule::DeliveryId;

/// The window's length.
const MINUTE_MS: u64 = 60_000;

/// What to do with a due delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send it now, on its own.
    Send,
    /// Hold it for the next summary.
    Hold,
}

/// One channel's rate limit.
#[derive(Clone, Debug)]
pub struct Digest {
    per_minute: usize,
    /// When the messages of the last minute were sent.
    sent: VecDeque<u64>,
    held: VecDeque<DeliveryId>,
    in_flight: Option<Vec<DeliveryId>>,
    retry_at: u64,
}

impl Digest {
    /// A limit of `per_minute` messages a minute (at least 1).
    pub fn new(per_minute: u32) -> Digest {
        Digest {
            per_minute: (per_minute as usize).max(1),
            sent: VecDeque::new(),
            held: VecDeque::new(),
            in_flight: None,
            retry_at: 0,
        }
    }

    fn room(&mut self, now: u64) -> bool {
        while self.sent.front().is_some_and(|&at| at.saturating_add(MINUTE_MS) <= now) {
            self.sent.pop_front();
        }
        self.sent.len() < self.per_minute
    }

    /// Delivery `id` is due at `now`.
    pub fn offer(&mut self, id: DeliveryId, now: u64) -> Admission {
        if self.held.is_empty() && self.in_flight.is_none() && self.room(now) {
            self.sent.push_back(now);
            Admission::Send
        } else {
            self.held.push_back(id);
            Admission::Hold
        }
    }

    /// The deliveries a summary should carry now, if one is due: something
    /// is held, no summary is in flight, the last failure's delay passed and
    /// the window has room. They are in flight until [`Digest::summary_sent`]
    /// or [`Digest::summary_failed`].
    pub fn summary_due(&mut self, now: u64) -> Option<Vec<DeliveryId>> {
        if self.held.is_empty() || self.in_flight.is_some() || now < self.retry_at || !self.room(now) {
            return None;
        }
        self.sent.push_back(now);
        let carried: Vec<DeliveryId> = self.held.drain(..).collect();
        self.in_flight = Some(carried.clone());
        Some(carried)
    }

    /// The summary in flight was accepted: the deliveries it carried.
    pub fn summary_sent(&mut self) -> Vec<DeliveryId> {
        self.in_flight.take().unwrap_or_default()
    }

    /// The summary in flight failed: its deliveries are held again, in
    /// front, and the next summary waits until `retry_at`.
    pub fn summary_failed(&mut self, retry_at: u64) {
        if let Some(carried) = self.in_flight.take() {
            for id in carried.into_iter().rev() {
                self.held.push_front(id);
            }
        }
        self.retry_at = retry_at;
    }

    /// How many deliveries are held or in a summary in flight.
    pub fn waiting(&self) -> usize {
        self.held.len() + self.in_flight.as_ref().map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn beyond_the_limit_deliveries_are_summarised_once_the_window_has_room() {
        let mut digest = Digest::new(2);
        assert_eq!(digest.offer(1, 0), Admission::Send);
        assert_eq!(digest.offer(2, 10), Admission::Send);
        assert_eq!(digest.offer(3, 20), Admission::Hold);
        assert_eq!(digest.offer(4, 30), Admission::Hold);
        assert_eq!(digest.summary_due(59_999), None, "the window is full");
        assert_eq!(digest.summary_due(60_000), Some(vec![3, 4]));
        // While the summary is in flight, later ones wait behind it.
        assert_eq!(digest.offer(5, 60_001), Admission::Hold);
        digest.summary_failed(65_000);
        assert_eq!(digest.summary_due(64_999), None);
        assert_eq!(digest.summary_due(65_000), Some(vec![3, 4, 5]));
        assert_eq!(digest.summary_sent(), vec![3, 4, 5]);
        assert_eq!(digest.waiting(), 0);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Wait(u64),
        Due,
        Summarise,
        Accept,
        Fail(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            1 => (0..40_000_u64).prop_map(Step::Wait),
            4 => Just(Step::Due),
            1 => Just(Step::Summarise),
            1 => Just(Step::Accept),
            1 => (0..10_000_u64).prop_map(Step::Fail),
        ]
    }

    proptest! {
        /// Under any interleaving: no minute holds more than `per_minute`
        /// messages (summaries included), every delivery leaves exactly
        /// once (on its own or in one accepted summary), and deliveries
        /// leave in the order they fell due.
        #[test]
        fn the_limit_holds_nothing_is_lost_or_doubled_and_order_is_kept(
            per_minute in 1_u32..5,
            steps in proptest::collection::vec(step(), 1..200),
        ) {
            let mut digest = Digest::new(per_minute);
            let (mut now, mut next_id) = (0_u64, 0_i64);
            let mut messages: Vec<u64> = Vec::new();
            let mut left: Vec<DeliveryId> = Vec::new();
            for step in steps {
                match step {
                    Step::Wait(ms) => now += ms,
                    Step::Due => {
                        next_id += 1;
                        if digest.offer(next_id, now) == Admission::Send {
                            messages.push(now);
                            left.push(next_id);
                        }
                    }
                    Step::Summarise => {
                        if digest.summary_due(now).is_some() {
                            messages.push(now);
                        }
                    }
                    Step::Accept => left.extend(digest.summary_sent()),
                    Step::Fail(delay) => digest.summary_failed(now + delay),
                }
            }
            // Drain: summaries until nothing waits.
            let mut rounds = 0;
            while digest.waiting() > 0 && rounds < 10_000 {
                rounds += 1;
                now += 1_000;
                digest.summary_failed(0);
                if digest.summary_due(now).is_some() {
                    messages.push(now);
                    left.extend(digest.summary_sent());
                }
            }
            let expected: Vec<DeliveryId> = (1..=next_id).collect();
            prop_assert_eq!(left, expected);
            for (index, &at) in messages.iter().enumerate() {
                let in_window = messages[index..].iter().take_while(|&&later| later < at + MINUTE_MS).count();
                prop_assert!(in_window <= per_minute as usize, "{in_window} messages within a minute of {at}");
            }
        }
    }
}
