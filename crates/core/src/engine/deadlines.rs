//! The deadlines of visits that wait on one: a min-heap by due instant with
//! lazy deletion. A visit that ends leaves its entry in the heap (finding it
//! would cost a search); such stale entries are skipped when they surface and
//! dropped all at once by the one compaction rule below.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::EntityRef;
use super::arena::VisitId;
use crate::time::Timestamp;

/// When one visit of one entity becomes stuck. Ordered by due instant, then
/// entity, then visit, so that entries due at once come out in a fixed order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) struct Deadline {
    pub(super) due: Timestamp,
    pub(super) entity: EntityRef,
    pub(super) visit: VisitId,
}

/// Below this many stale entries a compaction is not worth its pass.
const MIN_STALE_TO_COMPACT: usize = 4096;

/// Deadlines with lazy deletion. Every method that looks at entries takes
/// `is_current`, which says whether an entry's visit is still going on.
#[derive(Default)]
pub(super) struct DeadlineQueue {
    heap: BinaryHeap<Reverse<Deadline>>,
    /// How many entries are known to be stale (an estimate: compaction
    /// counts again from zero).
    stale: usize,
}

impl DeadlineQueue {
    /// Queues the deadline of a visit that just started.
    pub(super) fn push(&mut self, deadline: Deadline, is_current: impl Fn(&Deadline) -> bool) {
        self.heap.push(Reverse(deadline));
        self.compact_if_worthwhile(is_current);
    }

    /// A visit whose entry is still queued has ended: its entry is stale now.
    pub(super) fn note_stale(&mut self) {
        self.stale += 1;
    }

    /// The earliest deadline of a current visit, dropping the stale entries before it.
    pub(super) fn peek(&mut self, is_current: impl Fn(&Deadline) -> bool) -> Option<Deadline> {
        while let Some(&Reverse(deadline)) = self.heap.peek() {
            if is_current(&deadline) {
                return Some(deadline);
            }
            self.drop_top();
        }
        None
    }

    /// Takes the earliest deadline of a current visit if it is due before
    /// `now`, dropping the stale entries before it.
    pub(super) fn pop_due(
        &mut self,
        now: Timestamp,
        is_current: impl Fn(&Deadline) -> bool,
    ) -> Option<Deadline> {
        // Popping a stale entry costs a heap operation each; when the clock
        // moves a long way (as at the end of a replay), many may be due.
        self.compact_if_worthwhile(&is_current);
        let deadline = self.peek(is_current)?;
        if deadline.due >= now {
            return None;
        }
        self.heap.pop();
        Some(deadline)
    }

    fn drop_top(&mut self) {
        self.heap.pop();
        self.stale = self.stale.saturating_sub(1);
    }

    /// The one cleanup rule: once stale entries are at least half the heap
    /// (and enough to be worth a pass), drop them all in one pass. The heap
    /// then stays proportional to the visits waiting on a deadline, and the
    /// pass, at most twice the entries it drops, is paid for by the visits
    /// that made them stale.
    fn compact_if_worthwhile(&mut self, is_current: impl Fn(&Deadline) -> bool) {
        if self.stale <= MIN_STALE_TO_COMPACT || self.stale * 2 <= self.heap.len() {
            return;
        }
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.retain(|Reverse(deadline)| is_current(deadline));
        self.heap = BinaryHeap::from(entries);
        self.stale = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EntityType;

    fn deadline(due: i64, index: u32) -> Deadline {
        Deadline {
            due: Timestamp::from_unix_seconds(due),
            entity: EntityRef { entity_type: EntityType::Project, index },
            visit: VisitId::FIRST,
        }
    }

    #[test]
    fn stale_entries_are_skipped_and_compacted_away() {
        let mut queue = DeadlineQueue::default();
        let count = (MIN_STALE_TO_COMPACT * 3) as u32;
        // Even entities' visits are current; odd ones ended.
        let is_current = |deadline: &Deadline| deadline.entity.index.is_multiple_of(2);
        for index in 0..count {
            queue.push(deadline(i64::from(count - index), index), |_| true);
            if !index.is_multiple_of(2) {
                queue.note_stale();
            }
        }
        assert_eq!(queue.heap.len(), count as usize, "not worth a pass below half the heap");
        queue.push(deadline(0, 1), |_| true);
        queue.note_stale();
        queue.note_stale();
        queue.push(deadline(0, 3), is_current);
        assert_eq!(queue.heap.len(), count as usize / 2, "the stale half is dropped in one pass");
        assert_eq!(queue.peek(is_current), Some(deadline(2, count - 2)));
        assert_eq!(queue.pop_due(Timestamp::from_unix_seconds(2), is_current), None, "due is not before now");
        assert_eq!(queue.pop_due(Timestamp::from_unix_seconds(3), is_current), Some(deadline(2, count - 2)));
    }
}
