//! What every machine's events have in common: the illegal-transition
//! incident, and visits. Entering a state starts a visit (with a deadline if
//! the state has one); the visit ends at the next state entry. A visit is
//! stuck iff it lasted longer than its deadline: found by the clock
//! ([`Engine::handle_time`]) while it lasts, or when it ends (the retroactive
//! rule), whichever comes first.

use super::arena::Entities;
use super::deadlines::Deadline;
use super::ledger::{IncidentIndex, IncidentKey};
use super::outages::Region;
use super::{Engine, EntityRef};
use crate::event::Event;
use crate::machine::{State, Step};
use crate::time::{Duration, Timestamp};

/// Whether a queued deadline's visit is still going on.
pub(super) fn is_current(entities: &Entities) -> impl Fn(&Deadline) -> bool + '_ {
    |deadline| entities.visit_of(deadline.entity).is_some_and(|visit| visit.id == deadline.visit)
}

impl Engine {
    /// Common to every machine: the illegal-transition incident, ending the
    /// old visit, and starting the new one. Returns whether the event applies.
    pub(super) fn transition(
        &mut self,
        entity: EntityRef,
        previous: Option<State>,
        outcome: Step<State>,
        event: &Event<'_>,
    ) -> bool {
        let Step { legal, applies, next, entered } = outcome;
        if !legal {
            let type_name = event.event_type;
            let entity_name = format!("{} {}", entity.entity_type, self.entities.name_of(entity));
            let arrived = previous.map_or("nonexistent".to_string(), |state| format!("in state {state}"));
            let summary = |count| {
                if count == 1 {
                    format!("{type_name} is not allowed for {entity_name} ({arrived})")
                } else {
                    format!("{count} illegal events for {entity_name}, latest {type_name}")
                }
            };
            let key = IncidentKey::Illegal(entity);
            self.ledger.raise(key, previous, event.time, &event.id, summary, &mut self.changes);
        }
        if !applies {
            return false;
        }
        if entered {
            if let Some(old_state) = previous {
                self.end_visit(entity, old_state, event);
            }
            if let Some(new_state) = next {
                self.start_visit(entity, new_state, event.time);
            }
            self.changes.entity(entity);
        }
        true
    }

    /// The retroactive stuck rule: a visit that ends at `t` was stuck iff
    /// `t > entered_at + deadline`.
    fn end_visit(&mut self, entity: EntityRef, state: State, event: &Event<'_>) {
        let Some(deadline) = self.config.deadline(state) else { return };
        let Some(visit) = self.entities.visit_of(entity) else { return };
        let due = visit.entered_at.saturating_add(deadline);
        let key = IncidentKey::Stuck(entity, state);
        // Only the clock opens a stuck incident before its visit ends, and only
        // once it has passed the deadline: skip the lookup otherwise.
        if self.clock.is_some_and(|clock| clock > due)
            && let Some(index) = self.ledger.open_of(key)
        {
            if event.time > due {
                self.ledger.resolve(key, event.time, Some(&event.id), &mut self.changes);
                self.refresh_stuck_summary(index, entity, state);
            } else {
                // A late event shows the visit ended by its deadline: it was
                // never stuck, though the clock passed the deadline first.
                self.ledger.retract_unfounded(index, &mut self.changes);
            }
            self.project_trouble(entity, index);
            return;
        }
        // The visit's queued deadline was not taken (no stuck incident was open): it is stale now.
        self.deadlines.note_stale();
        if event.time > due {
            let summary = self.stuck_summary(entity, state, visit.entered_at, due);
            let index = self.ledger.open(key, Some(state), due, None, summary, &mut self.changes);
            self.ledger.resolve(key, event.time, Some(&event.id), &mut self.changes);
            self.refresh_stuck_summary(index, entity, state);
            self.project_trouble(entity, index);
        }
    }

    fn start_visit(&mut self, entity: EntityRef, state: State, at: Timestamp) {
        let Some(visit) = self.entities.enter(entity, at) else { return };
        if let Some(deadline) = self.config.deadline(state) {
            let deadline = Deadline { due: at.saturating_add(deadline), entity, visit };
            let entities = &self.entities;
            self.deadlines.push(deadline, is_current(entities));
        }
    }

    /// The clock passed the deadline of a visit still going on: it is stuck.
    pub(super) fn deadline_passed(&mut self, deadline: Deadline) {
        let entity = deadline.entity;
        let Some(visit) = self.entities.visit_of(entity) else { return };
        let key = IncidentKey::Stuck(entity, visit.state);
        if self.ledger.open_of(key).is_some() {
            return;
        }
        let summary = self.stuck_summary(entity, visit.state, visit.entered_at, deadline.due);
        let index = self.ledger.open(key, Some(visit.state), deadline.due, None, summary, &mut self.changes);
        self.project_trouble(entity, index);
    }

    fn stuck_summary(
        &self,
        entity: EntityRef,
        state: State,
        entered_at: Timestamp,
        due: Timestamp,
    ) -> String {
        let deadline = due.since(entered_at);
        format!(
            "{} {} stuck in {state} for {deadline} (deadline {deadline})",
            entity.entity_type,
            self.entities.name_of(entity)
        )
    }

    fn refresh_stuck_summary(&mut self, index: IncidentIndex, entity: EntityRef, state: State) {
        let Some(incident) = self.ledger.get(index) else { return };
        let deadline = self.config.deadline(state).unwrap_or(Duration::ZERO);
        let entered_at = incident.opened_at.saturating_sub(deadline);
        let stayed = incident.resolved_at.unwrap_or(incident.opened_at).since(entered_at);
        let summary = format!(
            "{} {} stuck in {state} for {stayed} (deadline {deadline})",
            entity.entity_type,
            self.entities.name_of(entity)
        );
        self.ledger.set_summary(index, summary);
    }

    /// A `stuck` or `provisioning_failed` incident of an entity changed: if it
    /// is a project with a known region, that region's outages may change.
    pub(super) fn project_trouble(&mut self, entity: EntityRef, incident: IncidentIndex) {
        let Some(project) = self.entities.projects.slot(entity) else { return };
        let Some(name) = self.entities.projects[project].region.get() else { return };
        let region =
            Region { name, text: self.entities.names.get(name), threshold: self.config.outage_threshold };
        self.outages.project_trouble(project, region, incident, &mut self.ledger, &mut self.changes);
    }
}
