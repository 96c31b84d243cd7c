//! Regional outages, derived in event time: per region, a [`Timeline`] of
//! how many projects are in trouble (stuck, or failing to provision), and
//! the outage incidents that follow the runs of that count at or above the
//! threshold. Late evidence (a stuck visit found when it ends) updates the
//! count and the outages only where it changes them.

use std::collections::{BTreeMap, HashMap};

use super::ChangeLog;
use super::arena::{Name, ProjectSlot};
use super::ledger::{IncidentIndex, IncidentKey, Ledger};
use crate::time::Timestamp;
use crate::timeline::{Timeline, difference, union};

/// One incident that puts a project in trouble, over `[start, end)`.
#[derive(Clone, Copy, Debug)]
struct Trouble {
    incident: IncidentIndex,
    start: Timestamp,
    end: Timestamp,
}

/// The regional outages of one region and the count they derive from.
#[derive(Default)]
struct RegionOutages {
    timeline: Timeline,
    /// Outage incidents by `opened_at`; they never overlap.
    incidents: BTreeMap<Timestamp, IncidentIndex>,
}

/// Every region's outages, and the trouble of each project that feeds them.
#[derive(Default)]
pub(super) struct Outages {
    trouble: HashMap<ProjectSlot, Vec<Trouble>, foldhash::fast::RandomState>,
    regions: HashMap<Name, RegionOutages, foldhash::fast::RandomState>,
}

/// What reconciling a region needs besides the outages themselves.
pub(super) struct Region<'a> {
    pub(super) name: Name,
    /// Its name, for the summary of a new outage.
    pub(super) text: &'a str,
    /// How many projects in trouble at once make an outage.
    pub(super) threshold: u32,
}

impl Outages {
    /// A `stuck` or `provisioning_failed` incident of a project in `region`
    /// changed: updates the region's count of projects in trouble and the
    /// outages derived from it.
    pub(super) fn project_trouble(
        &mut self,
        project: ProjectSlot,
        region: Region<'_>,
        incident: IncidentIndex,
        ledger: &mut Ledger,
        changes: &mut ChangeLog,
    ) {
        let Some(trouble) = ledger.get(incident).map(|opened| Trouble {
            incident,
            start: opened.opened_at,
            end: opened.resolved_at.unwrap_or(Timestamp::MAX),
        }) else {
            return;
        };
        let intervals = self.trouble.entry(project).or_default();
        let old = union(intervals.iter().map(|entry| (entry.start, entry.end)));
        match intervals.iter_mut().find(|entry| entry.incident == incident) {
            Some(entry) => *entry = trouble,
            None => intervals.push(trouble),
        }
        let new = union(intervals.iter().map(|entry| (entry.start, entry.end)));
        let changed = difference(&old, &new);
        if changed.is_empty() {
            return;
        }
        let outages = self.regions.entry(region.name).or_default();
        let mut low = Timestamp::MAX;
        let mut high = Timestamp::MIN;
        for &(start, end, delta) in &changed {
            outages.timeline.add(start, end, delta);
            low = low.min(start);
            high = high.max(end);
        }
        self.reconcile(region, low, high, ledger, changes);
    }

    /// Makes the outage incidents of `region` that touch `[low, high]` agree
    /// with the runs of its count at or above the threshold.
    fn reconcile(
        &mut self,
        region: Region<'_>,
        low: Timestamp,
        high: Timestamp,
        ledger: &mut Ledger,
        changes: &mut ChangeLog,
    ) {
        let Some(outages) = self.regions.get_mut(&region.name) else { return };
        let runs = outages.timeline.runs(region.threshold, low, high);
        let mut old: Vec<IncidentIndex> = Vec::new();
        for (_, &index) in outages.incidents.range(..=high).rev() {
            let resolved_at = ledger.get(index).and_then(|incident| incident.resolved_at);
            if resolved_at.unwrap_or(Timestamp::MAX) < low {
                break;
            }
            old.push(index);
        }
        old.reverse();
        let key = IncidentKey::Outage(region.name);
        for (position, &(start, end)) in runs.iter().enumerate() {
            let resolved_at = (end != Timestamp::MAX).then_some(end);
            match old.get(position) {
                Some(&index) => {
                    if let Some(previous_start) = ledger.reshape(index, start, resolved_at, changes) {
                        outages.incidents.remove(&previous_start);
                        outages.incidents.insert(start, index);
                    }
                }
                None => {
                    let summary = format!(
                        "regional outage in {}: {} or more projects stuck or failing to provision",
                        region.text, region.threshold
                    );
                    let index = ledger.open(key, None, start, None, summary, changes);
                    if let Some(end) = resolved_at {
                        ledger.resolve(key, end, None, changes);
                    }
                    outages.incidents.insert(start, index);
                }
            }
        }
        for &index in old.iter().skip(runs.len()) {
            if let Some(start) = ledger.get(index).map(|incident| incident.opened_at)
                && outages.incidents.get(&start) == Some(&index)
            {
                outages.incidents.remove(&start);
            }
            ledger.retract(index, changes);
        }
    }
}
