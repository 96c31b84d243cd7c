//! Escalation timers: when the next step of each open, unacknowledged
//! incident's escalation chain falls due. A min-heap by due instant with
//! lazy deletion, like the visit deadlines: an entry whose incident was
//! acknowledged, resolved, retracted, reshaped or already escalated past it
//! is skipped when it surfaces (the ledger says which entries are current).
//!
//! The chains' times come from [`Config::escalation`] by owner; an
//! incident's owner depends only on its kind and what it is about, so the
//! chain of each (kind, subject type) is looked up once, here.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::config::{Config, EscalationTimes};
use crate::incident::{IncidentKind, SubjectType};
use crate::time::Timestamp;

/// One step of one incident's chain falling due. Ordered by due instant,
/// then incident, then step, so that entries due at once come out in a
/// fixed order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) struct StepDue {
    pub(super) due: Timestamp,
    pub(super) incident: u32,
    pub(super) step: u32,
}

/// The chains by (kind, subject type).
#[derive(Default)]
pub(super) struct Chains(Vec<Option<EscalationTimes>>);

impl Chains {
    pub(super) fn new(config: &Config) -> Chains {
        let mut chains = Vec::with_capacity(IncidentKind::ALL.len() * SubjectType::ALL.len());
        for kind in IncidentKind::ALL {
            for subject in SubjectType::ALL {
                chains.push(config.escalation(config.owner(kind, subject)).cloned());
            }
        }
        Chains(chains)
    }

    /// The chain of incidents of `kind` about a `subject`.
    pub(super) fn chain(&self, kind: IncidentKind, subject: SubjectType) -> Option<&EscalationTimes> {
        self.0.get(kind as usize * SubjectType::ALL.len() + subject as usize)?.as_ref()
    }
}

/// The queued steps.
#[derive(Default)]
pub(super) struct StepQueue {
    heap: BinaryHeap<Reverse<StepDue>>,
}

impl StepQueue {
    /// Queues a step.
    pub(super) fn push(&mut self, step: StepDue) {
        self.heap.push(Reverse(step));
    }

    /// The earliest current step, dropping stale entries before it.
    pub(super) fn peek(&mut self, is_current: impl Fn(&StepDue) -> bool) -> Option<StepDue> {
        while let Some(&Reverse(step)) = self.heap.peek() {
            if is_current(&step) {
                return Some(step);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the earliest current step if it is due before `now`.
    pub(super) fn pop_due(
        &mut self,
        now: Timestamp,
        is_current: impl Fn(&StepDue) -> bool,
    ) -> Option<StepDue> {
        let step = self.peek(is_current)?;
        if step.due < now {
            self.heap.pop();
            return Some(step);
        }
        None
    }
}
