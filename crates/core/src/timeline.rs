//! A step function over event time: how many projects of one region are in
//! trouble at each instant. Range updates and run queries cost the number of
//! breakpoints they touch, never the whole history.

use std::collections::BTreeMap;

use crate::time::Timestamp;

/// A piecewise-constant count over time. A breakpoint `t → c` means the count
/// is `c` from `t` until the next breakpoint; before the first it is zero.
/// [`Timestamp::MAX`] stands for "still open".
#[derive(Clone, Debug, Default)]
pub(crate) struct Timeline {
    counts: BTreeMap<Timestamp, u32>,
}

impl Timeline {
    /// The count at instant `at`.
    pub(crate) fn count_at(&self, at: Timestamp) -> u32 {
        self.counts.range(..=at).next_back().map_or(0, |(_, count)| *count)
    }

    /// Adds `delta` to the count over `[start, end)`.
    pub(crate) fn add(&mut self, start: Timestamp, end: Timestamp, delta: i32) {
        if start >= end {
            return;
        }
        self.split_at(start);
        if end != Timestamp::MAX {
            self.split_at(end);
        }
        for (_, count) in self.counts.range_mut(start..end) {
            *count = count.saturating_add_signed(delta);
        }
        self.merge_at(start);
        if end != Timestamp::MAX {
            self.merge_at(end);
        }
    }

    fn split_at(&mut self, at: Timestamp) {
        if !self.counts.contains_key(&at) {
            let count = self.count_at(at);
            self.counts.insert(at, count);
        }
    }

    fn merge_at(&mut self, at: Timestamp) {
        if let Some(&count) = self.counts.get(&at) {
            let before = self.counts.range(..at).next_back().map_or(0, |(_, count)| *count);
            if before == count {
                self.counts.remove(&at);
            }
        }
    }

    /// The maximal runs `[start, end)` where the count is at least
    /// `threshold` that intersect or touch `[low, high]`, in time order.
    /// An open run ends at [`Timestamp::MAX`].
    pub(crate) fn runs(
        &self,
        threshold: u32,
        low: Timestamp,
        high: Timestamp,
    ) -> Vec<(Timestamp, Timestamp)> {
        // Start at the beginning of the run that covers the instant just
        // before `low`, if any, so that a run ending at `low` is included.
        let mut walk_from = low;
        let mut previous = self.counts.range(..low).rev().peekable();
        if previous.peek().is_some_and(|(_, count)| **count >= threshold) {
            for (&at, &count) in previous {
                if count < threshold {
                    break;
                }
                walk_from = at;
            }
        }
        let mut runs = Vec::new();
        let mut open = (self.count_at(walk_from) >= threshold).then_some(walk_from);
        for (&at, &count) in self.counts.range(walk_from..) {
            match open {
                None if count >= threshold => {
                    if at > high {
                        break;
                    }
                    open = Some(at);
                }
                Some(start) if count < threshold => {
                    runs.push((start, at));
                    open = None;
                    if at >= high {
                        break;
                    }
                }
                _ => {}
            }
        }
        if let Some(start) = open {
            runs.push((start, Timestamp::MAX));
        }
        runs
    }

    /// Number of breakpoints kept (for memory reports).
    #[cfg(test)]
    pub(crate) fn breakpoints(&self) -> usize {
        self.counts.len()
    }
}

/// The union of intervals, sorted and merged; empty intervals are dropped.
pub(crate) fn union(intervals: impl Iterator<Item = (Timestamp, Timestamp)>) -> Vec<(Timestamp, Timestamp)> {
    let mut sorted: Vec<(Timestamp, Timestamp)> = intervals.filter(|(start, end)| start < end).collect();
    sorted.sort_unstable();
    let mut merged: Vec<(Timestamp, Timestamp)> = Vec::with_capacity(sorted.len());
    for (start, end) in sorted {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

fn covers(union: &[(Timestamp, Timestamp)], at: Timestamp) -> bool {
    union.iter().any(|(start, end)| *start <= at && at < *end)
}

/// The ranges where coverage changes from `old` to `new`, with +1 or -1.
pub(crate) fn difference(
    old: &[(Timestamp, Timestamp)],
    new: &[(Timestamp, Timestamp)],
) -> Vec<(Timestamp, Timestamp, i32)> {
    let mut points: Vec<Timestamp> =
        old.iter().chain(new.iter()).flat_map(|(start, end)| [*start, *end]).collect();
    points.sort_unstable();
    points.dedup();
    let mut changes: Vec<(Timestamp, Timestamp, i32)> = Vec::new();
    for pair in points.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        let delta = i32::from(covers(new, start)) - i32::from(covers(old, start));
        if delta == 0 {
            continue;
        }
        match changes.last_mut() {
            Some(last) if last.1 == start && last.2 == delta => last.1 = end,
            _ => changes.push((start, end, delta)),
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minute: i64) -> Timestamp {
        Timestamp::from_unix_seconds(minute * 60)
    }

    #[test]
    fn counts_and_runs() {
        let mut timeline = Timeline::default();
        timeline.add(t(0), t(10), 1);
        timeline.add(t(5), Timestamp::MAX, 1);
        assert_eq!(timeline.count_at(t(4)), 1);
        assert_eq!(timeline.count_at(t(7)), 2);
        assert_eq!(timeline.count_at(t(12)), 1);
        assert_eq!(timeline.runs(2, t(0), t(100)), vec![(t(5), t(10))]);
        assert_eq!(timeline.runs(1, t(7), t(7)), vec![(t(0), Timestamp::MAX)]);
        timeline.add(t(10), t(20), 1);
        assert_eq!(timeline.runs(2, t(12), t(12)), vec![(t(5), t(20))]);
        timeline.add(t(0), t(10), -1);
        timeline.add(t(10), t(20), -1);
        timeline.add(t(5), Timestamp::MAX, -1);
        assert_eq!(timeline.breakpoints(), 0);
    }

    #[test]
    fn union_difference() {
        let old = union([(t(0), t(10)), (t(5), t(15))].into_iter());
        assert_eq!(old, vec![(t(0), t(15))]);
        let new = union([(t(0), t(10)), (t(5), t(15)), (t(20), t(30))].into_iter());
        assert_eq!(difference(&old, &new), vec![(t(20), t(30), 1)]);
        let shorter = union([(t(0), t(8))].into_iter());
        assert_eq!(difference(&old, &shorter), vec![(t(8), t(15), -1)]);
    }
}
