//! The engine: folds accepted events through the state machines and keeps
//! every incident, in event time. Sans-IO: it never reads a clock, a file or
//! a socket.
//!
//! # Call order
//!
//! 1. [`Engine::handle_event`] for every parsed event, in arrival order. It
//!    deduplicates by event id and applies the event; incidents of ended visits
//!    (the retroactive stuck rule) are found here.
//! 2. [`Engine::handle_time`] whenever the driver's clock moves: visits whose
//!    deadline is before `now` become stuck. Replay calls it once at the end
//!    with `--now`; the live monitor calls it when [`Engine::next_deadline`]
//!    plus the allowed lateness has passed on the wall clock.
//! 3. [`Engine::drain_changes`] after each batch, to persist and publish what
//!    changed, then [`Engine::record`] for each changed incident.
//!
//! # Layout
//!
//! This file is the façade: the public types and [`Engine`]'s methods, which
//! call into the parts below in the order above.
//!
//! - `arena`: entities in per-type arenas, the interner, and the typed slots.
//! - `seen`: the ids of accepted events (deduplication).
//! - `effects`: what each machine's events do besides moving the state.
//! - `visits`: what all machines share: illegal transitions, visits, stuck.
//! - `deadlines`: the queue of visit deadlines, with its one cleanup rule.
//! - `ledger`: incidents by key: open, raise, resolve, reshape, retract, records.
//! - `outages`: regional outages derived from projects in trouble.
//! - `escalation`: the escalation chains' steps, queued by when they fall due.
//!
//! Operator actions ([`Engine::acknowledge`], [`Engine::resolve_by_operator`])
//! are inputs like events: the store keeps them at their position between
//! events and clock steps, and refolding applies them there again.

mod arena;
mod deadlines;
mod effects;
mod escalation;
mod ledger;
mod outages;
mod seen;
mod visits;

use arena::Entities;
use deadlines::DeadlineQueue;
use ledger::{IncidentIndex, Ledger};
use outages::Outages;
use seen::SeenIds;

use crate::config::Config;
use crate::event::{EntityType, Event, EventType};
use crate::incident::{IncidentKind, IncidentRecord, Transition};
use crate::machine::State;
use crate::time::Timestamp;

/// What became of one event handed to the engine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// New: applied.
    Accepted,
    /// Its id was accepted before: nothing changed.
    Duplicate,
}

/// Something the driver may need to persist or publish.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Change {
    /// An incident changed; read it with [`Engine::record`].
    Incident {
        /// The incident's index.
        index: u32,
        /// How it changed.
        transition: Transition,
    },
    /// An entity's projection changed; read it with [`Engine::entity`].
    Entity(EntityRef),
}

/// A tracked account, project or dispute.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EntityRef {
    /// Which machine.
    pub entity_type: EntityType,
    /// Its slot in the engine.
    pub index: u32,
}

/// The projection of one entity, as the store keeps it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EntityView<'a> {
    /// Which machine.
    pub entity_type: EntityType,
    /// The entity id.
    pub id: &'a str,
    /// Its state; `None` for an entity only referred to by others.
    pub state: Option<State>,
    /// When it entered that state.
    pub entered_at: Timestamp,
    /// The account it belongs to (projects, disputes) when known.
    pub account_id: Option<&'a str>,
    /// Its region when known.
    pub region: Option<&'a str>,
    /// Its plan (accounts).
    pub plan: Option<&'a str>,
    /// Live projects counted against the plan (accounts).
    pub live_projects: u32,
}

/// Why an operator action on an incident was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum OperatorRefusal {
    /// No incident has that id.
    #[error("no such incident")]
    NoSuchIncident,
    /// It was retracted: it no longer exists.
    #[error("the incident was retracted (it no longer exists)")]
    Retracted,
    /// It is resolved already.
    #[error("the incident is resolved already")]
    NotOpen,
    /// Somebody acknowledged it before.
    #[error("the incident is acknowledged already")]
    AlreadyAcknowledged,
    /// Only `illegal_transition` and `invariant_violation` incidents are
    /// resolved by hand: the others resolve when their condition ends.
    #[error(
        "a {0} incident resolves by itself when its condition ends; only illegal_transition and invariant_violation incidents are resolved by hand"
    )]
    ResolvesByItself(IncidentKind),
}

/// Counters since the engine was created.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct EngineStats {
    /// Events applied.
    pub accepted: u64,
    /// Events dropped as duplicates.
    pub duplicates: u64,
}

/// The lifecycle engine. See the module documentation for the call order.
pub struct Engine {
    config: Config,
    entities: Entities,
    seen: SeenIds,
    deadlines: DeadlineQueue,
    ledger: Ledger,
    outages: Outages,
    changes: ChangeLog,
    clock: Option<Timestamp>,
    latest_event_time: Option<Timestamp>,
    /// The entity of the last event accepted.
    last_applied: Option<EntityRef>,
    stats: EngineStats,
}

impl Engine {
    /// An empty engine running on `config`. Changes are not recorded until
    /// [`Engine::record_changes`] turns them on.
    pub fn new(config: Config) -> Engine {
        let ledger = Ledger::new(&config);
        Engine {
            config,
            entities: Entities::default(),
            seen: SeenIds::default(),
            deadlines: DeadlineQueue::default(),
            ledger,
            outages: Outages::default(),
            changes: ChangeLog::default(),
            clock: None,
            latest_event_time: None,
            last_applied: None,
            stats: EngineStats::default(),
        }
    }

    /// Whether to keep a list of changes for [`Engine::drain_changes`]
    /// (the live monitor and the store want it; plain replay does not).
    pub fn record_changes(&mut self, on: bool) {
        self.changes.on = on;
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies one validated event, unless its id was seen before.
    pub fn handle_event(&mut self, event: &Event<'_>) -> Outcome {
        if !self.seen.insert(&event.id) {
            self.stats.duplicates += 1;
            return Outcome::Duplicate;
        }
        self.stats.accepted += 1;
        self.latest_event_time =
            Some(self.latest_event_time.map_or(event.time, |latest| latest.max(event.time)));
        match event.event_type {
            EventType::Account(account_event) => self.apply_account(event, account_event),
            EventType::Project(project_event) => self.apply_project(event, project_event),
            EventType::Dispute(dispute_event) => self.apply_dispute(event, dispute_event),
        }
        self.ledger.settle(&self.entities);
        Outcome::Accepted
    }

    /// The entity of the last event [`Engine::handle_event`] accepted (it
    /// exists once an event about it was accepted, even an illegal one).
    pub fn last_applied(&self) -> Option<EntityRef> {
        self.last_applied
    }

    /// Whether an event with this id was accepted before.
    pub fn has_seen(&self, event_id: &str) -> bool {
        self.seen.contains(event_id)
    }

    /// Moves the clock to `now`: every visit whose deadline is before `now`
    /// and that has not ended becomes stuck, and every escalation step due
    /// before `now` of an open, unacknowledged incident fires, in the order
    /// they fell due (a visit first when both fall due at once: its incident
    /// may escalate). The clock never moves back.
    pub fn handle_time(&mut self, now: Timestamp) {
        self.clock = Some(self.clock.map_or(now, |clock| clock.max(now)));
        loop {
            let entities = &self.entities;
            let visit_due = self.deadlines.peek(visits::is_current(entities)).map(|deadline| deadline.due);
            let step_due = self.ledger.next_step_due();
            match (visit_due, step_due) {
                (Some(visit), step) if visit < now && step.is_none_or(|step| visit <= step) => {
                    let entities = &self.entities;
                    let Some(deadline) = self.deadlines.pop_due(now, visits::is_current(entities)) else {
                        break;
                    };
                    self.deadline_passed(deadline);
                }
                (_, Some(step)) if step < now => {
                    self.ledger.escalate_due(now, &mut self.changes);
                }
                _ => break,
            }
        }
        self.ledger.settle(&self.entities);
    }

    /// The earliest deadline of a visit that has not ended and is not stuck
    /// yet, or of an escalation step. [`Engine::handle_time`] with any
    /// instant after it makes the visit stuck or the incident escalate.
    pub fn next_deadline(&mut self) -> Option<Timestamp> {
        let entities = &self.entities;
        let visit = self.deadlines.peek(visits::is_current(entities)).map(|deadline| deadline.due);
        match (visit, self.ledger.next_step_due()) {
            (Some(visit), Some(step)) => Some(visit.min(step)),
            (visit, step) => visit.or(step),
        }
    }

    /// A person acknowledged open incident `index`: an `acknowledged`
    /// transition, and its escalation stops.
    pub fn acknowledge(&mut self, index: u32) -> Result<(), OperatorRefusal> {
        let result = self.ledger.acknowledge(IncidentIndex::new(index), &mut self.changes);
        self.ledger.settle(&self.entities);
        result
    }

    /// A person resolved open incident `index` at `at` (only
    /// `illegal_transition` and `invariant_violation`: the other kinds
    /// resolve by themselves). The next occurrence of its condition opens a
    /// new incident.
    pub fn resolve_by_operator(&mut self, index: u32, at: Timestamp) -> Result<(), OperatorRefusal> {
        let result = self.ledger.resolve_by_operator(IncidentIndex::new(index), at, &mut self.changes);
        self.ledger.settle(&self.entities);
        result
    }

    /// Whether a person acknowledged incident `index`, and how many steps
    /// of its escalation chain fired (`None`: no such incident).
    pub fn operator_state(&self, index: u32) -> Option<(bool, u32)> {
        self.ledger.operator_state(IncidentIndex::new(index))
    }

    /// The index of the incident with record id `id`: `hint` first (the
    /// index the store kept), else a search of every incident.
    pub fn find_incident(&self, id: &str, hint: Option<u32>) -> Option<u32> {
        if let Some(hint) = hint
            && self.record(hint).is_some_and(|record| record.id == id)
        {
            return Some(hint);
        }
        (0..self.ledger.len()).find(|&index| self.record(index).is_some_and(|record| record.id == id))
    }

    /// The changes recorded since the last call.
    pub fn drain_changes(&mut self) -> std::vec::Drain<'_, Change> {
        self.changes.list.drain(..)
    }

    /// The clock: the latest instant given to [`Engine::handle_time`].
    pub fn clock(&self) -> Option<Timestamp> {
        self.clock
    }

    /// The latest time of an accepted event.
    pub fn latest_event_time(&self) -> Option<Timestamp> {
        self.latest_event_time
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// How many incidents exist (including retracted ones).
    pub fn incident_count(&self) -> u32 {
        self.ledger.len()
    }

    /// How many entities are tracked, of all types.
    pub fn entity_count(&self) -> usize {
        self.entities.count()
    }

    /// Whether an incident was retracted: a regional outage merged into
    /// another, or a stuck incident the clock opened before a late event
    /// showed the visit ended by its deadline. A retracted incident gives its
    /// ordinal back: the next incident of its key gets its id.
    pub fn is_retracted(&self, index: u32) -> bool {
        self.ledger.is_retracted(IncidentIndex::new(index))
    }

    /// The record of one incident. Its `account_id` and `region` are the
    /// entity's after the event (or clock step) that last changed the
    /// incident, so that it is the record the store and INCIDENTS got with
    /// that change (docs/contract.md section 7).
    pub fn record(&self, index: u32) -> Option<IncidentRecord> {
        self.ledger.record(IncidentIndex::new(index), &self.entities, &self.config)
    }

    /// Every incident that exists, open or resolved, ordered by `opened_at`
    /// then `key` (then creation order).
    pub fn records(&self) -> Vec<IncidentRecord> {
        self.sorted_incidents().into_iter().filter_map(|index| self.record(index)).collect()
    }

    /// The indexes of every incident that exists (retracted ones left out), in
    /// the order of [`Engine::records`], for writing records one at a time.
    pub fn sorted_incidents(&self) -> Vec<u32> {
        self.ledger.sorted(&self.entities)
    }

    /// The projection of one entity.
    pub fn entity(&self, entity: EntityRef) -> Option<EntityView<'_>> {
        let fields = self.entities.fields(entity)?;
        Some(EntityView {
            entity_type: entity.entity_type,
            id: fields.id,
            state: fields.state,
            entered_at: fields.entered_at,
            account_id: fields.account.map(|account| self.entities.accounts[account].id()),
            region: fields.region.map(|region| self.entities.names.get(region)),
            plan: fields.plan.map(|plan| self.entities.names.get(plan)),
            live_projects: fields.live_projects,
        })
    }

    /// Every tracked entity, accounts first, each type in the order first seen.
    pub fn entities(&self) -> impl Iterator<Item = EntityRef> + '_ {
        let refs = |entity_type: EntityType, count: usize| {
            (0..count as u32).map(move |index| EntityRef { entity_type, index })
        };
        refs(EntityType::Account, self.entities.accounts.len())
            .chain(refs(EntityType::Project, self.entities.projects.len()))
            .chain(refs(EntityType::Dispute, self.entities.disputes.len()))
    }

    /// Looks an entity up by type and id.
    pub fn find_entity(&self, entity_type: EntityType, id: &str) -> Option<EntityRef> {
        self.entities.find(entity_type, id)
    }
}

/// The changes for [`Engine::drain_changes`], kept only when asked for.
#[derive(Default)]
struct ChangeLog {
    list: Vec<Change>,
    on: bool,
}

impl ChangeLog {
    fn incident(&mut self, index: IncidentIndex, transition: Transition) {
        if self.on {
            self.list.push(Change::Incident { index: index.get(), transition });
        }
    }

    fn entity(&mut self, entity: EntityRef) {
        if self.on {
            self.list.push(Change::Entity(entity));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;
    use crate::incident::IncidentKind;

    fn at(time: &str) -> Timestamp {
        Timestamp::parse_rfc3339(time).expect("a valid time")
    }

    fn feed(engine: &mut Engine, id: &str, event_type: &str, subject: &str, time: &str, data: &str) {
        let line = format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"test","type":"{event_type}","subject":"{subject}","time":"{time}","data":{data}}}"#
        );
        let event = parse_event(line.as_bytes()).expect("a valid event");
        assert_eq!(engine.handle_event(&event), Outcome::Accepted);
    }

    /// Five projects of one region requested at 10:00; their `requested`
    /// deadline (5m) falls due at 10:05.
    fn five_requested(engine: &mut Engine) {
        feed(engine, "a", "account.created", "acc_1", "2026-11-27T09:00:00Z", r#"{"plan":"enterprise"}"#);
        feed(engine, "b", "account.activated", "acc_1", "2026-11-27T09:01:00Z", "{}");
        for n in 1..=5 {
            let data = r#"{"account_id":"acc_1","region":"eu-west-1"}"#;
            feed(
                engine,
                &format!("r{n}"),
                "project.requested",
                &format!("prj_{n}"),
                "2026-11-27T10:00:00Z",
                data,
            );
        }
    }

    #[test]
    fn a_late_event_within_the_deadline_retracts_the_stuck_incident_the_clock_opened() {
        let mut live = Engine::new(Config::shipped());
        live.record_changes(true);
        feed(&mut live, "1", "account.created", "acc_1", "2026-11-27T10:00:00Z", r#"{"plan":"free"}"#);
        live.handle_time(at("2026-11-27T10:16:00Z"));
        assert_eq!(live.records().len(), 1, "the clock is past the 15m deadline");
        // The account was activated at 10:10, within its deadline, but the
        // event arrives after the clock passed 10:15.
        feed(&mut live, "2", "account.activated", "acc_1", "2026-11-27T10:10:00Z", "{}");
        assert!(live.records().is_empty(), "SPEC.md: stuck iff t > entered_at + deadline");
        assert!(live.is_retracted(0));
        let retracted = live
            .drain_changes()
            .any(|change| matches!(change, Change::Incident { index: 0, transition: Transition::Retracted }));
        assert!(retracted, "consumers are told to drop it");
    }

    /// Account acc_1 pending from 10:00 (deadline 10:15), failed at 10:10 (the
    /// event arrives late), pending again from 10:20 and still pending at 10:40.
    fn pending_twice(engine: &mut Engine, early_clock: bool) {
        feed(engine, "1", "account.created", "acc_1", "2026-11-27T10:00:00Z", r#"{"plan":"free"}"#);
        if early_clock {
            engine.handle_time(at("2026-11-27T10:16:00Z"));
        }
        feed(engine, "2", "account.onboarding_failed", "acc_1", "2026-11-27T10:10:00Z", r#"{"reason":"x"}"#);
        feed(engine, "3", "account.onboarding_retried", "acc_1", "2026-11-27T10:20:00Z", "{}");
        engine.handle_time(at("2026-11-27T10:40:00Z"));
    }

    #[test]
    fn a_retracted_incident_gives_its_ordinal_back() {
        let mut live = Engine::new(Config::shipped());
        pending_twice(&mut live, true);
        assert!(live.is_retracted(0), "the clock's stuck incident of the first visit was retracted");
        let mut replay = Engine::new(Config::shipped());
        pending_twice(&mut replay, false);
        let stuck = |engine: &Engine| {
            engine
                .records()
                .into_iter()
                .filter(|record| record.kind == IncidentKind::Stuck)
                .collect::<Vec<_>>()
        };
        assert_eq!(stuck(&replay).len(), 1, "the second visit is stuck");
        assert_eq!(stuck(&live), stuck(&replay), "same record, same id");
        let retracted = live.record(0).map(|record| record.id);
        assert_eq!(retracted, Some(stuck(&replay)[0].id.clone()), "the retracted one had that id");
    }

    #[test]
    fn a_record_keeps_the_account_and_region_of_its_last_change() {
        let mut engine = Engine::new(Config::shipped());
        let quota = r#"{"resource":"cpu","limit":4,"used":5}"#;
        let requested = r#"{"account_id":"acc_1","region":"eu-west-1"}"#;
        // Illegal: prj_1 does not exist, so it is created without data.
        feed(&mut engine, "1", "project.quota_exceeded", "prj_1", "2026-11-27T10:00:00Z", quota);
        feed(&mut engine, "2", "project.requested", "prj_1", "2026-11-27T10:01:00Z", requested);
        let illegal = |engine: &Engine| {
            let records = engine.records();
            let record = records.into_iter().find(|record| record.kind == IncidentKind::IllegalTransition);
            record.map(|record| (record.count, record.account_id, record.region))
        };
        assert_eq!(illegal(&engine), Some((1, None, None)), "it last changed before prj_1 had them");
        // Another illegal event changes it: now it takes them.
        feed(&mut engine, "3", "project.provisioned", "prj_1", "2026-11-27T10:02:00Z", "{}");
        let known = Some((2, Some("acc_1".to_string()), Some("eu-west-1".to_string())));
        assert_eq!(illegal(&engine), known);
    }

    #[test]
    fn a_late_event_after_the_deadline_still_resolves_the_stuck_incident() {
        let mut live = Engine::new(Config::shipped());
        feed(&mut live, "1", "account.created", "acc_1", "2026-11-27T10:00:00Z", r#"{"plan":"free"}"#);
        live.handle_time(at("2026-11-27T10:20:00Z"));
        feed(&mut live, "2", "account.activated", "acc_1", "2026-11-27T10:15:00.001Z", "{}");
        let records = live.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].opened_at, at("2026-11-27T10:15:00Z"));
        assert_eq!(records[0].resolved_at, Some(at("2026-11-27T10:15:00.001Z")));
    }

    #[test]
    fn a_retracted_stuck_incident_leaves_the_regional_count_as_replay_would() {
        let mut live = Engine::new(Config::shipped());
        five_requested(&mut live);
        live.handle_time(at("2026-11-27T10:06:00Z"));
        let outages = |engine: &Engine| {
            engine.records().iter().filter(|record| record.kind == IncidentKind::RegionalOutage).count()
        };
        assert_eq!(outages(&live), 1, "five projects stuck in requested from 10:05");
        // prj_1 started provisioning at 10:05 exactly: it was never stuck.
        feed(&mut live, "s1", "project.provisioning_started", "prj_1", "2026-11-27T10:05:00Z", "{}");
        assert_eq!(outages(&live), 0);

        let mut replay = Engine::new(Config::shipped());
        five_requested(&mut replay);
        feed(&mut replay, "s1", "project.provisioning_started", "prj_1", "2026-11-27T10:05:00Z", "{}");
        replay.handle_time(at("2026-11-27T10:06:00Z"));
        assert_eq!(live.records(), replay.records());
    }

    /// The shipped configuration with accounts-oncall escalating 10m and
    /// 30m after an incident opens (the last step repeating when asked).
    fn escalating(repeat_last: bool) -> Engine {
        let mut config = Config::shipped();
        let steps = vec![crate::time::Duration::from_seconds(600), crate::time::Duration::from_seconds(1800)];
        config
            .set_escalation("accounts-oncall", crate::config::EscalationTimes { steps, repeat_last })
            .expect("increasing steps");
        let mut engine = Engine::new(config);
        engine.record_changes(true);
        engine
    }

    fn transitions(engine: &mut Engine) -> Vec<(u32, Transition)> {
        engine
            .drain_changes()
            .filter_map(|change| match change {
                Change::Incident { index, transition } if transition != Transition::Updated => {
                    Some((index, transition))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_unacknowledged_incident_escalates_at_each_step_in_event_time() {
        let mut engine = escalating(false);
        // Pending from 10:00: stuck at 10:15, steps due 10:25 and 10:45.
        feed(&mut engine, "1", "account.created", "acc_1", "2026-11-27T10:00:00Z", r#"{"plan":"free"}"#);
        engine.handle_time(at("2026-11-27T10:16:00Z"));
        assert_eq!(transitions(&mut engine), [(0, Transition::Opened)]);
        assert_eq!(engine.next_deadline(), Some(at("2026-11-27T10:25:00Z")));
        engine.handle_time(at("2026-11-27T10:25:00Z"));
        assert!(transitions(&mut engine).is_empty(), "due at 10:25 means after it, as the stuck rule");
        engine.handle_time(at("2026-11-27T10:25:01Z"));
        assert_eq!(transitions(&mut engine), [(0, Transition::Escalated)]);
        engine.handle_time(at("2026-11-28T10:00:00Z"));
        assert_eq!(transitions(&mut engine), [(0, Transition::Escalated)], "the second step, and no repeat");
        assert_eq!(engine.operator_state(0), Some((false, 2)));
        assert_eq!(engine.next_deadline(), None);
    }

    #[test]
    fn an_acknowledged_incident_does_not_escalate() {
        let mut engine = escalating(true);
        feed(&mut engine, "1", "account.created", "acc_1", "2026-11-27T10:00:00Z", r#"{"plan":"free"}"#);
        engine.handle_time(at("2026-11-27T10:16:00Z"));
        assert_eq!(engine.acknowledge(0), Ok(()));
        assert_eq!(engine.acknowledge(0), Err(OperatorRefusal::AlreadyAcknowledged));
        assert_eq!(engine.acknowledge(7), Err(OperatorRefusal::NoSuchIncident));
        engine.handle_time(at("2026-11-29T10:00:00Z"));
        assert_eq!(transitions(&mut engine), [(0, Transition::Opened), (0, Transition::Acknowledged)]);
        assert_eq!(engine.next_deadline(), None);
    }

    #[test]
    fn a_repeating_last_step_fires_a_bounded_number_of_times() {
        let mut engine = escalating(true);
        feed(&mut engine, "1", "account.created", "acc_1", "2026-11-27T10:00:00Z", r#"{"plan":"free"}"#);
        engine.handle_time(at("2026-12-27T10:00:00Z"));
        let escalated = transitions(&mut engine).iter().filter(|(_, t)| *t == Transition::Escalated).count();
        assert_eq!(escalated, 2 + crate::config::MAX_ESCALATION_REPEATS as usize);
    }

    /// Live (a clock every minute, events on time) and replay (events only,
    /// the clock once at the end) give the same transitions: a step that
    /// fell due before the event that ended the incident escalated.
    #[test]
    fn replay_escalates_as_the_live_clock_did() {
        let run = |live: bool| {
            let mut engine = escalating(false);
            feed(&mut engine, "1", "account.created", "acc_1", "2026-11-27T10:00:00Z", r#"{"plan":"free"}"#);
            if live {
                for minute in 1..50 {
                    engine.handle_time(at(&format!("2026-11-27T10:{minute:02}:30Z")));
                }
            }
            feed(&mut engine, "2", "account.activated", "acc_1", "2026-11-27T10:50:00Z", "{}");
            engine.handle_time(at("2026-11-27T11:30:00Z"));
            (transitions(&mut engine), engine.records())
        };
        let (live, live_records) = run(true);
        assert_eq!(
            live,
            [
                (0, Transition::Opened),
                (0, Transition::Escalated),
                (0, Transition::Escalated),
                (0, Transition::Resolved)
            ]
        );
        assert_eq!(run(false), (live, live_records));
    }

    #[test]
    fn only_kinds_that_never_resolve_by_themselves_are_resolved_by_hand() {
        let mut engine = escalating(false);
        feed(&mut engine, "1", "account.created", "acc_1", "2026-11-27T10:00:00Z", r#"{"plan":"free"}"#);
        engine.handle_time(at("2026-11-27T10:16:00Z"));
        assert_eq!(
            engine.resolve_by_operator(0, at("2026-11-27T10:17:00Z")),
            Err(OperatorRefusal::ResolvesByItself(IncidentKind::Stuck))
        );
        // An illegal event: a second account.created.
        feed(&mut engine, "2", "account.created", "acc_1", "2026-11-27T10:18:00Z", r#"{"plan":"free"}"#);
        let illegal = engine
            .records()
            .into_iter()
            .find(|record| record.kind == IncidentKind::IllegalTransition)
            .and_then(|record| engine.find_incident(&record.id, None))
            .expect("an illegal_transition incident");
        assert_eq!(engine.resolve_by_operator(illegal, at("2026-11-27T10:20:00Z")), Ok(()));
        assert_eq!(
            engine.resolve_by_operator(illegal, at("2026-11-27T10:21:00Z")),
            Err(OperatorRefusal::NotOpen)
        );
        let record = engine.record(illegal).expect("the record");
        assert_eq!(record.resolved_at, Some(at("2026-11-27T10:20:00Z")));
        // The condition again: a new incident, not a count on the old one.
        feed(&mut engine, "3", "account.created", "acc_1", "2026-11-27T10:30:00Z", r#"{"plan":"free"}"#);
        let open_illegal = engine
            .records()
            .into_iter()
            .filter(|record| record.kind == IncidentKind::IllegalTransition && record.resolved_at.is_none())
            .count();
        assert_eq!(open_illegal, 1);
        assert_eq!(engine.find_incident(&record.id, Some(999)), Some(illegal));
    }
}
