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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use hashbrown::HashTable;

use crate::config::Config;
use crate::event::{AccountEvent, DisputeEvent, EntityType, Event, EventType, Payload, ProjectEvent};
use crate::incident::{
    EntityRecord, IncidentKind, IncidentRecord, MAX_RECORD_EVENTS, Severity, Status, SubjectType, Transition,
};
use crate::machine::{
    AccountMachine, AccountState, DisputeMachine, DisputeState, ProjectMachine, ProjectState, State, Step,
    step,
};
use crate::time::{Duration, Timestamp};
use crate::timeline::{Timeline, difference, union};

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
    accounts: Arena<AccountState>,
    projects: Arena<ProjectState>,
    disputes: Arena<DisputeState>,
    strings: Interner,
    seen: HashSet<u128, BuildHasherDefault<PassThroughHasher>>,
    deadlines: BinaryHeap<Reverse<(Timestamp, EntityType, u32, u32)>>,
    /// Heap entries whose visit has ended (lazy deletion); compaction drops them.
    stale_deadlines: usize,
    incidents: Vec<Incident>,
    keys: HashMap<IncidentKey, KeySlot, foldhash::fast::RandomState>,
    open_project_quotas: BTreeSet<(u32, u32)>,
    trouble: HashMap<u32, Vec<(u32, Timestamp, Timestamp)>, foldhash::fast::RandomState>,
    regions: HashMap<u32, RegionOutages, foldhash::fast::RandomState>,
    changes: Vec<Change>,
    record_changes: bool,
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
        Engine {
            config,
            accounts: Arena::default(),
            projects: Arena::default(),
            disputes: Arena::default(),
            strings: Interner::default(),
            seen: HashSet::default(),
            deadlines: BinaryHeap::new(),
            stale_deadlines: 0,
            incidents: Vec::new(),
            keys: HashMap::default(),
            open_project_quotas: BTreeSet::new(),
            trouble: HashMap::default(),
            regions: HashMap::default(),
            changes: Vec::new(),
            record_changes: false,
            clock: None,
            latest_event_time: None,
            last_applied: None,
            stats: EngineStats::default(),
        }
    }

    /// Whether to keep a list of changes for [`Engine::drain_changes`]
    /// (the live monitor and the store want it; plain replay does not).
    pub fn record_changes(&mut self, on: bool) {
        self.record_changes = on;
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies one validated event, unless its id was seen before.
    pub fn handle_event(&mut self, event: &Event<'_>) -> Outcome {
        if !self.seen.insert(id_hash(&event.id)) {
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
        Outcome::Accepted
    }

    /// The entity of the last event [`Engine::handle_event`] accepted (it
    /// exists once an event about it was accepted, even an illegal one).
    pub fn last_applied(&self) -> Option<EntityRef> {
        self.last_applied
    }

    /// Whether an event with this id was accepted before.
    pub fn has_seen(&self, event_id: &str) -> bool {
        self.seen.contains(&id_hash(event_id))
    }

    /// Moves the clock to `now`: every visit whose deadline is before `now`
    /// and that has not ended becomes stuck. The clock never moves back.
    pub fn handle_time(&mut self, now: Timestamp) {
        self.clock = Some(self.clock.map_or(now, |clock| clock.max(now)));
        // Popping a stale entry costs a heap operation each; dropping them all
        // in one pass is cheaper once they are a good share of the heap (as
        // at the end of a replay, the only time replay moves the clock).
        if self.stale_deadlines > 1024 && self.stale_deadlines * 4 > self.deadlines.len() {
            self.drop_stale_deadlines();
        }
        while let Some(&Reverse((deadline, entity_type, index, visit))) = self.deadlines.peek() {
            if deadline >= now {
                break;
            }
            self.deadlines.pop();
            let entity = EntityRef { entity_type, index };
            let Some((state, entered_at, current_visit)) = self.visit_of(entity) else { continue };
            if current_visit != visit {
                self.stale_deadlines = self.stale_deadlines.saturating_sub(1);
                continue;
            }
            let key = IncidentKey::Stuck(entity, state);
            if self.keys.get(&key).is_some_and(|slot| slot.open.is_some()) {
                continue;
            }
            let summary = self.stuck_summary(entity, state, entered_at, deadline);
            let incident = self.open_incident(key, Some(state), deadline, None, summary);
            self.project_trouble(entity, incident);
        }
    }

    /// The earliest deadline of a visit that has not ended and is not stuck
    /// yet. [`Engine::handle_time`] with any instant after it makes it stuck.
    pub fn next_deadline(&mut self) -> Option<Timestamp> {
        while let Some(&Reverse((deadline, entity_type, index, visit))) = self.deadlines.peek() {
            let entity = EntityRef { entity_type, index };
            match self.visit_of(entity) {
                Some((_, _, current)) if current == visit => return Some(deadline),
                _ => {
                    self.deadlines.pop();
                    self.stale_deadlines = self.stale_deadlines.saturating_sub(1);
                }
            }
        }
        None
    }

    /// The changes recorded since the last call.
    pub fn drain_changes(&mut self) -> std::vec::Drain<'_, Change> {
        self.changes.drain(..)
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
        self.incidents.len() as u32
    }

    /// How many entities are tracked, of all types.
    pub fn entity_count(&self) -> usize {
        self.accounts.items.len() + self.projects.items.len() + self.disputes.items.len()
    }

    /// Whether an incident was retracted: a regional outage merged into
    /// another, or a stuck incident the clock opened before a late event
    /// showed the visit ended by its deadline.
    pub fn is_retracted(&self, index: u32) -> bool {
        self.incidents.get(index as usize).is_some_and(|incident| incident.retracted)
    }

    /// The record of one incident.
    pub fn record(&self, index: u32) -> Option<IncidentRecord> {
        let incident = self.incidents.get(index as usize)?;
        Some(self.make_record(incident))
    }

    /// Every incident that exists, open or resolved, ordered by `opened_at`
    /// then `key` (then creation order).
    pub fn records(&self) -> Vec<IncidentRecord> {
        self.sorted_incidents().into_iter().filter_map(|index| self.record(index)).collect()
    }

    /// The indexes of every incident that exists (retracted ones left out), in
    /// the order of [`Engine::records`], for writing records one at a time.
    pub fn sorted_incidents(&self) -> Vec<u32> {
        let mut order: Vec<(Timestamp, String, u32, u32)> = self
            .incidents
            .iter()
            .enumerate()
            .filter(|(_, incident)| !incident.retracted)
            .map(|(index, incident)| {
                let (subject_type, entity_id) = self.subject_of(incident.key);
                let key = self.key_string(incident.key, subject_type, entity_id);
                (incident.opened_at, key, incident.ordinal, index as u32)
            })
            .collect();
        order.sort_unstable();
        order.into_iter().map(|(_, _, _, index)| index).collect()
    }

    /// The projection of one entity.
    pub fn entity(&self, entity: EntityRef) -> Option<EntityView<'_>> {
        let record = match entity.entity_type {
            EntityType::Account => self.accounts.items.get(entity.index as usize)?.view(),
            EntityType::Project => self.projects.items.get(entity.index as usize)?.view(),
            EntityType::Dispute => self.disputes.items.get(entity.index as usize)?.view(),
        };
        Some(EntityView {
            entity_type: entity.entity_type,
            id: record.id,
            state: record.state,
            entered_at: record.entered_at,
            account_id: record.account.map(|account| self.accounts.items[account as usize].id.as_str()),
            region: record.region.map(|region| self.strings.get(region)),
            plan: record.plan.map(|plan| self.strings.get(plan)),
            live_projects: record.live_projects,
        })
    }

    /// Every tracked entity, accounts first, each type in the order first seen.
    pub fn entities(&self) -> impl Iterator<Item = EntityRef> + '_ {
        let refs = |entity_type: EntityType, count: usize| {
            (0..count as u32).map(move |index| EntityRef { entity_type, index })
        };
        refs(EntityType::Account, self.accounts.items.len())
            .chain(refs(EntityType::Project, self.projects.items.len()))
            .chain(refs(EntityType::Dispute, self.disputes.items.len()))
    }

    /// Looks an entity up by type and id.
    pub fn find_entity(&self, entity_type: EntityType, id: &str) -> Option<EntityRef> {
        let index = match entity_type {
            EntityType::Account => self.accounts.find(id),
            EntityType::Project => self.projects.find(id),
            EntityType::Dispute => self.disputes.find(id),
        }?;
        Some(EntityRef { entity_type, index })
    }
}

// ---------------------------------------------------------------------------
// Entities

/// An entity id: inline when it fits (almost all do), so that looking an
/// entity up touches one cache line less and costs no allocation.
#[derive(Clone, Debug)]
enum EntityId {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<str>),
}

impl EntityId {
    fn new(id: &str) -> EntityId {
        let mut bytes = [0u8; 22];
        match bytes.get_mut(..id.len()) {
            Some(prefix) => {
                prefix.copy_from_slice(id.as_bytes());
                EntityId::Inline { len: id.len() as u8, bytes }
            }
            None => EntityId::Heap(id.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            EntityId::Inline { len, bytes } => &bytes[..usize::from(*len)],
            EntityId::Heap(id) => id.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Always a copy of a `&str`, so this cannot fail.
            EntityId::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            EntityId::Heap(id) => id,
        }
    }
}

/// One entity, kept small: at a million entities every byte here is a megabyte.
#[derive(Clone, Debug)]
struct Entity<S> {
    id: EntityId,
    entered_at: Timestamp,
    /// Bumped on every state entry; deadline heap entries of older visits are stale.
    visit: u32,
    /// Projects and disputes: the account slot they belong to ([`NONE`] if unknown).
    account: u32,
    /// Projects: `project.requested` region; accounts: `account.created` region ([`NONE`] if unknown).
    region: u32,
    /// Accounts: the plan ([`NONE`] if unknown).
    plan: u32,
    /// Accounts: live projects that name this account.
    live_projects: u32,
    state: Option<S>,
}

/// "No such slot" in the compact fields of [`Entity`].
const NONE: u32 = u32::MAX;

fn some(slot: u32) -> Option<u32> {
    (slot != NONE).then_some(slot)
}

struct EntityFields<'a> {
    id: &'a str,
    state: Option<State>,
    entered_at: Timestamp,
    account: Option<u32>,
    region: Option<u32>,
    plan: Option<u32>,
    live_projects: u32,
}

impl<S: Copy + Into<State>> Entity<S> {
    fn view(&self) -> EntityFields<'_> {
        EntityFields {
            id: self.id.as_str(),
            state: self.state.map(Into::into),
            entered_at: self.entered_at,
            account: some(self.account),
            region: some(self.region),
            plan: some(self.plan),
            live_projects: self.live_projects,
        }
    }
}

/// Entities of one type, by id, without storing the id twice.
struct Arena<S> {
    items: Vec<Entity<S>>,
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl<S> Default for Arena<S> {
    fn default() -> Self {
        Arena { items: Vec::new(), index: HashTable::new(), hasher: foldhash::fast::RandomState::default() }
    }
}

impl<S> Arena<S> {
    fn find(&self, id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(id.as_bytes());
        self.index.find(hash, |&slot| self.items[slot as usize].id.as_bytes() == id.as_bytes()).copied()
    }

    fn get_or_insert(&mut self, id: &str) -> u32 {
        let hash = self.hasher.hash_one(id.as_bytes());
        let items = &self.items;
        if let Some(&slot) =
            self.index.find(hash, |&slot| items[slot as usize].id.as_bytes() == id.as_bytes())
        {
            return slot;
        }
        let slot = self.items.len() as u32;
        self.items.push(Entity {
            id: EntityId::new(id),
            state: None,
            entered_at: Timestamp::MIN,
            visit: 0,
            account: NONE,
            region: NONE,
            plan: NONE,
            live_projects: 0,
        });
        let items = &self.items;
        let hasher = &self.hasher;
        self.index.insert_unique(hash, slot, |&other| hasher.hash_one(items[other as usize].id.as_bytes()));
        slot
    }
}

/// Plans, regions and quota resources, stored once.
#[derive(Default)]
struct Interner {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&index) = self.index.get(name) {
            return index;
        }
        let index = self.names.len() as u32;
        self.names.push(name.into());
        self.index.insert(name.into(), index);
        index
    }

    fn get(&self, index: u32) -> &str {
        self.names.get(index as usize).map_or("", |name| name)
    }
}

/// Event ids are kept as 128-bit hashes: 16 bytes each instead of the id,
/// with a collision chance far below that of a hardware fault.
fn id_hash(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// The id hashes are uniformly distributed already; hashing them again is waste.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

// ---------------------------------------------------------------------------
// Incidents

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum IncidentKey {
    Stuck(EntityRef, State),
    ProvisioningFailed(u32),
    OnboardingFailed(u32),
    ProjectQuota(u32, u32),
    AccountQuota(u32),
    BillingDispute(u32),
    Illegal(EntityRef),
    Invariant(u32),
    Outage(u32),
}

impl IncidentKey {
    fn kind(self) -> IncidentKind {
        match self {
            IncidentKey::Stuck(..) => IncidentKind::Stuck,
            IncidentKey::ProvisioningFailed(_) => IncidentKind::ProvisioningFailed,
            IncidentKey::OnboardingFailed(_) => IncidentKind::OnboardingFailed,
            IncidentKey::ProjectQuota(..) | IncidentKey::AccountQuota(_) => IncidentKind::QuotaBreach,
            IncidentKey::BillingDispute(_) => IncidentKind::BillingDispute,
            IncidentKey::Illegal(_) => IncidentKind::IllegalTransition,
            IncidentKey::Invariant(_) => IncidentKind::InvariantViolation,
            IncidentKey::Outage(_) => IncidentKind::RegionalOutage,
        }
    }

    /// The entity the incident is about (`None` for a region).
    fn entity(self) -> Option<EntityRef> {
        let project = |index| Some(EntityRef { entity_type: EntityType::Project, index });
        match self {
            IncidentKey::Stuck(entity, _) | IncidentKey::Illegal(entity) => Some(entity),
            IncidentKey::ProvisioningFailed(index)
            | IncidentKey::ProjectQuota(index, _)
            | IncidentKey::Invariant(index) => project(index),
            IncidentKey::OnboardingFailed(index) | IncidentKey::AccountQuota(index) => {
                Some(EntityRef { entity_type: EntityType::Account, index })
            }
            IncidentKey::BillingDispute(index) => Some(EntityRef { entity_type: EntityType::Dispute, index }),
            IncidentKey::Outage(_) => None,
        }
    }
}

#[derive(Clone, Copy, Default, Debug)]
struct KeySlot {
    open: Option<u32>,
    opened: u32,
}

#[derive(Clone, Debug)]
struct Incident {
    key: IncidentKey,
    /// The how-manieth incident of this key, from 1: makes the id stable.
    ordinal: u32,
    state: Option<State>,
    opened_at: Timestamp,
    resolved_at: Option<Timestamp>,
    count: u32,
    events: Vec<Box<str>>,
    summary: String,
    retracted: bool,
}

/// The regional outages of one region and the count they derive from.
#[derive(Default)]
struct RegionOutages {
    timeline: Timeline,
    /// Outage incidents by `opened_at`; they never overlap.
    incidents: BTreeMap<Timestamp, u32>,
}

impl Engine {
    fn open_incident(
        &mut self,
        key: IncidentKey,
        state: Option<State>,
        at: Timestamp,
        event_id: Option<&str>,
        summary: String,
    ) -> u32 {
        let index = self.incidents.len() as u32;
        let slot = self.keys.entry(key).or_default();
        slot.opened += 1;
        slot.open = Some(index);
        let ordinal = slot.opened;
        self.incidents.push(Incident {
            key,
            ordinal,
            state,
            opened_at: at,
            resolved_at: None,
            count: 1,
            events: event_id.map(Box::from).into_iter().collect(),
            summary,
            retracted: false,
        });
        self.note(index, Transition::Opened);
        index
    }

    /// Raises the condition of `key`: adds to the open incident, or opens one.
    fn raise(
        &mut self,
        key: IncidentKey,
        state: Option<State>,
        at: Timestamp,
        event_id: &str,
        summary: impl FnOnce(u32) -> String,
    ) -> u32 {
        match self.keys.get(&key).and_then(|slot| slot.open) {
            Some(index) => {
                let incident = &mut self.incidents[index as usize];
                incident.count += 1;
                if incident.events.len() < MAX_RECORD_EVENTS {
                    incident.events.push(event_id.into());
                }
                incident.summary = summary(incident.count);
                self.note(index, Transition::Updated);
                index
            }
            None => self.open_incident(key, state, at, Some(event_id), summary(1)),
        }
    }

    /// Resolves the open incident of `key`, if any, and returns it.
    fn resolve(&mut self, key: IncidentKey, at: Timestamp, event_id: Option<&str>) -> Option<u32> {
        let index = self.keys.get_mut(&key)?.open.take()?;
        let incident = &mut self.incidents[index as usize];
        incident.resolved_at = Some(at.max(incident.opened_at));
        if let Some(event_id) = event_id
            && incident.events.len() < MAX_RECORD_EVENTS
        {
            incident.events.push(event_id.into());
        }
        self.note(index, Transition::Resolved);
        Some(index)
    }

    fn note(&mut self, index: u32, transition: Transition) {
        if self.record_changes {
            self.changes.push(Change::Incident { index, transition });
        }
    }

    fn note_entity(&mut self, entity: EntityRef) {
        if self.record_changes {
            self.changes.push(Change::Entity(entity));
        }
    }

    fn make_record(&self, incident: &Incident) -> IncidentRecord {
        let kind = incident.key.kind();
        let (subject_type, entity_id, account_id, region) = match incident.key.entity() {
            Some(entity) => {
                let fields = match entity.entity_type {
                    EntityType::Account => self.accounts.items[entity.index as usize].view(),
                    EntityType::Project => self.projects.items[entity.index as usize].view(),
                    EntityType::Dispute => self.disputes.items[entity.index as usize].view(),
                };
                let account_id = match entity.entity_type {
                    EntityType::Account => Some(fields.id.to_string()),
                    _ => fields
                        .account
                        .map(|account| self.accounts.items[account as usize].id.as_str().to_string()),
                };
                let subject_type = match entity.entity_type {
                    EntityType::Account => SubjectType::Account,
                    EntityType::Project => SubjectType::Project,
                    EntityType::Dispute => SubjectType::Dispute,
                };
                let region = fields.region.map(|region| self.strings.get(region).to_string());
                (subject_type, fields.id.to_string(), account_id, region)
            }
            None => {
                let region = match incident.key {
                    IncidentKey::Outage(region) => self.strings.get(region).to_string(),
                    _ => String::new(),
                };
                (SubjectType::Region, region.clone(), None, Some(region))
            }
        };
        let key = self.key_string(incident.key, subject_type, &entity_id);
        let severity: Severity = self.config.severity(kind, subject_type, incident.state);
        IncidentRecord {
            id: format!(
                "inc_{:016x}",
                xxhash_rust::xxh3::xxh3_64(format!("{key}#{}", incident.ordinal).as_bytes())
            ),
            key,
            kind,
            severity,
            status: if incident.resolved_at.is_some() { Status::Resolved } else { Status::Open },
            entity: EntityRecord { entity_type: subject_type, id: entity_id },
            account_id,
            region,
            state: incident.state.map(|state| state.as_str().to_string()),
            owner: self.config.owner(kind, subject_type).to_string(),
            runbook: self.config.runbook(kind).to_string(),
            opened_at: incident.opened_at,
            resolved_at: incident.resolved_at,
            summary: incident.summary.clone(),
            count: incident.count,
            events: incident.events.iter().map(|id| id.to_string()).collect(),
        }
    }

    /// The subject type and id an incident key is about.
    fn subject_of(&self, key: IncidentKey) -> (SubjectType, &str) {
        match key.entity() {
            Some(entity) => {
                let subject_type = match entity.entity_type {
                    EntityType::Account => SubjectType::Account,
                    EntityType::Project => SubjectType::Project,
                    EntityType::Dispute => SubjectType::Dispute,
                };
                (subject_type, self.name_of(entity))
            }
            None => match key {
                IncidentKey::Outage(region) => (SubjectType::Region, self.strings.get(region)),
                _ => (SubjectType::Region, ""),
            },
        }
    }

    fn key_string(&self, key: IncidentKey, subject_type: SubjectType, entity_id: &str) -> String {
        let kind = key.kind();
        match key {
            IncidentKey::Stuck(_, state) => format!("{kind}:{subject_type}:{entity_id}:{state}"),
            IncidentKey::ProjectQuota(_, resource) => {
                format!("{kind}:{subject_type}:{entity_id}:{}", self.strings.get(resource))
            }
            _ => format!("{kind}:{subject_type}:{entity_id}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Applying events

impl Engine {
    fn visit_of(&self, entity: EntityRef) -> Option<(State, Timestamp, u32)> {
        let index = entity.index as usize;
        match entity.entity_type {
            EntityType::Account => {
                let item = self.accounts.items.get(index)?;
                Some((State::Account(item.state?), item.entered_at, item.visit))
            }
            EntityType::Project => {
                let item = self.projects.items.get(index)?;
                Some((State::Project(item.state?), item.entered_at, item.visit))
            }
            EntityType::Dispute => {
                let item = self.disputes.items.get(index)?;
                Some((State::Dispute(item.state?), item.entered_at, item.visit))
            }
        }
    }

    fn name_of(&self, entity: EntityRef) -> &str {
        let index = entity.index as usize;
        match entity.entity_type {
            EntityType::Account => self.accounts.items[index].id.as_str(),
            EntityType::Project => self.projects.items[index].id.as_str(),
            EntityType::Dispute => self.disputes.items[index].id.as_str(),
        }
    }

    /// Common to every machine: the illegal-transition incident, ending the
    /// old visit, and starting the new one. Returns whether the event applies.
    fn transition(
        &mut self,
        entity: EntityRef,
        previous: Option<State>,
        outcome: Step<State>,
        event: &Event<'_>,
    ) -> bool {
        let Step { legal, applies, next, entered } = outcome;
        if !legal {
            let type_name = event.event_type;
            let entity_name = format!("{} {}", entity.entity_type, self.name_of(entity));
            let arrived = previous.map_or("nonexistent".to_string(), |state| format!("in state {state}"));
            self.raise(IncidentKey::Illegal(entity), previous, event.time, &event.id, |count| {
                if count == 1 {
                    format!("{type_name} is not allowed for {entity_name} ({arrived})")
                } else {
                    format!("{count} illegal events for {entity_name}, latest {type_name}")
                }
            });
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
            self.note_entity(entity);
        }
        true
    }

    /// The retroactive stuck rule: a visit that ends at `t` was stuck iff
    /// `t > entered_at + deadline`.
    fn end_visit(&mut self, entity: EntityRef, state: State, event: &Event<'_>) {
        let Some(deadline) = self.config.deadline(state) else { return };
        let Some((_, entered_at, _)) = self.visit_of(entity) else { return };
        let due = entered_at.saturating_add(deadline);
        let key = IncidentKey::Stuck(entity, state);
        // Only the clock opens a stuck incident before its visit ends, and only
        // once it has passed the deadline: skip the lookup otherwise.
        if self.clock.is_some_and(|clock| clock > due)
            && let Some(index) = self.keys.get(&key).and_then(|slot| slot.open)
        {
            if event.time > due {
                self.resolve(key, event.time, Some(&event.id));
                self.refresh_stuck_summary(index, entity, state);
            } else {
                // A late event shows the visit ended by its deadline: it was
                // never stuck, though the clock passed the deadline first.
                self.retract_stuck(key, index);
            }
            self.project_trouble(entity, index);
            return;
        }
        // The visit's heap entry was not popped (no stuck incident was open): it is stale now.
        self.stale_deadlines += 1;
        if event.time > due {
            let summary = self.stuck_summary(entity, state, entered_at, due);
            let index = self.open_incident(key, Some(state), due, None, summary);
            self.resolve(key, event.time, Some(&event.id));
            self.refresh_stuck_summary(index, entity, state);
            self.project_trouble(entity, index);
        }
    }

    /// Drops the open stuck incident `index` of `key`: consumers are told it
    /// no longer exists, and it lasts no time, so it leaves the regional count.
    fn retract_stuck(&mut self, key: IncidentKey, index: u32) {
        if let Some(slot) = self.keys.get_mut(&key) {
            slot.open = None;
        }
        let incident = &mut self.incidents[index as usize];
        incident.resolved_at = Some(incident.opened_at);
        incident.retracted = true;
        self.note(index, Transition::Retracted);
    }

    fn start_visit(&mut self, entity: EntityRef, state: State, at: Timestamp) {
        let index = entity.index as usize;
        let visit = match entity.entity_type {
            EntityType::Account => bump(&mut self.accounts.items[index], at),
            EntityType::Project => bump(&mut self.projects.items[index], at),
            EntityType::Dispute => bump(&mut self.disputes.items[index], at),
        };
        if let Some(deadline) = self.config.deadline(state) {
            self.deadlines.push(Reverse((
                at.saturating_add(deadline),
                entity.entity_type,
                entity.index,
                visit,
            )));
            if self.stale_deadlines > 4096 && self.stale_deadlines * 2 > self.deadlines.len() {
                self.drop_stale_deadlines();
            }
        }

        fn bump<S>(item: &mut Entity<S>, at: Timestamp) -> u32 {
            item.entered_at = at;
            item.visit = item.visit.wrapping_add(1);
            item.visit
        }
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
            self.name_of(entity)
        )
    }

    fn refresh_stuck_summary(&mut self, index: u32, entity: EntityRef, state: State) {
        let incident = &self.incidents[index as usize];
        let deadline = self.config.deadline(state).unwrap_or(Duration::ZERO);
        let entered_at = incident.opened_at.saturating_sub(deadline);
        let stayed = incident.resolved_at.unwrap_or(incident.opened_at).since(entered_at);
        let summary = format!(
            "{} {} stuck in {state} for {stayed} (deadline {deadline})",
            entity.entity_type,
            self.name_of(entity)
        );
        self.incidents[index as usize].summary = summary;
    }

    fn apply_account(&mut self, event: &Event<'_>, account_event: AccountEvent) {
        let index = self.accounts.get_or_insert(&event.subject);
        let entity = EntityRef { entity_type: EntityType::Account, index };
        self.last_applied = Some(entity);
        let previous = self.accounts.items[index as usize].state;
        let outcome = step::<AccountMachine>(previous, account_event);
        let applies =
            self.transition(entity, previous.map(State::Account), outcome.map(State::Account), event);
        if !applies {
            return;
        }
        self.accounts.items[index as usize].state = outcome.next;
        let mut plan_changed = false;
        match (&event.payload, account_event) {
            (Payload::AccountCreated { plan, region }, AccountEvent::Created) if outcome.legal => {
                let plan = self.strings.intern(plan);
                let region = region.as_deref().map(|region| self.strings.intern(region));
                let item = &mut self.accounts.items[index as usize];
                item.plan = plan;
                item.region = region.unwrap_or(NONE);
                plan_changed = true;
            }
            (Payload::AccountPlanChanged { plan }, _) => {
                let plan = self.strings.intern(plan);
                self.accounts.items[index as usize].plan = plan;
                plan_changed = true;
                self.note_entity(entity);
            }
            (Payload::AccountOnboardingFailed { reason }, _) => {
                let name = event.subject.to_string();
                self.raise(IncidentKey::OnboardingFailed(index), None, event.time, &event.id, |count| {
                    if count == 1 {
                        format!("account {name} failed onboarding: {reason}")
                    } else {
                        format!("account {name} failed onboarding {count} times, last: {reason}")
                    }
                });
            }
            _ => {}
        }
        if outcome.entered && matches!(outcome.next, Some(AccountState::Active | AccountState::Closed)) {
            self.resolve(IncidentKey::OnboardingFailed(index), event.time, Some(&event.id));
        }
        if plan_changed {
            self.check_account_quota(index, event, true);
        }
    }

    fn apply_project(&mut self, event: &Event<'_>, project_event: ProjectEvent) {
        let index = self.projects.get_or_insert(&event.subject);
        let entity = EntityRef { entity_type: EntityType::Project, index };
        self.last_applied = Some(entity);
        let previous = self.projects.items[index as usize].state;
        let outcome = step::<ProjectMachine>(previous, project_event);
        let applies =
            self.transition(entity, previous.map(State::Project), outcome.map(State::Project), event);
        if !applies {
            return;
        }
        self.projects.items[index as usize].state = outcome.next;
        let name = &event.subject;
        match &event.payload {
            Payload::ProjectRequested { account_id, region } if outcome.legal => {
                let account = self.accounts.get_or_insert(account_id);
                let region = self.strings.intern(region);
                let item = &mut self.projects.items[index as usize];
                item.account = account;
                item.region = region;
                let account_state = self.accounts.items[account as usize].state;
                if account_state != Some(AccountState::Active) {
                    let why = match account_state {
                        None => "which does not exist".to_string(),
                        Some(state) => format!("which is {state}, not active"),
                    };
                    let summary = format!("project {name} requested for account {account_id} {why}");
                    self.raise(IncidentKey::Invariant(index), None, event.time, &event.id, |_| summary);
                }
            }
            Payload::ProjectProvisioningFailed { error, retryable } => {
                let retry = match retryable {
                    Some(true) => " (retryable)",
                    Some(false) => " (not retryable)",
                    None => "",
                };
                let incident = self.raise(
                    IncidentKey::ProvisioningFailed(index),
                    None,
                    event.time,
                    &event.id,
                    |count| {
                        if count == 1 {
                            format!("project {name} failed to provision: {error}{retry}")
                        } else {
                            format!("project {name} failed to provision {count} times, last: {error}{retry}")
                        }
                    },
                );
                self.project_trouble(entity, incident);
            }
            Payload::ProjectQuotaExceeded { resource, limit, used } => {
                let resource_index = self.strings.intern(resource);
                self.open_project_quotas.insert((index, resource_index));
                self.raise(
                    IncidentKey::ProjectQuota(index, resource_index),
                    None,
                    event.time,
                    &event.id,
                    |count| {
                        let times = if count == 1 { String::new() } else { format!(" ({count} reports)") };
                        format!("project {name} exceeded its {resource} quota: {used} used of {limit}{times}")
                    },
                );
            }
            Payload::ProjectQuotaRestored { resource } => {
                let resource_index = self.strings.intern(resource);
                if self.open_project_quotas.remove(&(index, resource_index)) {
                    self.resolve(
                        IncidentKey::ProjectQuota(index, resource_index),
                        event.time,
                        Some(&event.id),
                    );
                }
            }
            _ => {}
        }
        if outcome.entered {
            let next = outcome.next;
            if matches!(next, Some(ProjectState::Active | ProjectState::Deleting | ProjectState::Deleted))
                && let Some(incident) =
                    self.resolve(IncidentKey::ProvisioningFailed(index), event.time, Some(&event.id))
            {
                self.project_trouble(entity, incident);
            }
            if matches!(next, Some(ProjectState::Deleting | ProjectState::Deleted)) {
                let open: Vec<(u32, u32)> =
                    self.open_project_quotas.range((index, 0)..=(index, u32::MAX)).copied().collect();
                for (project, resource) in open {
                    self.open_project_quotas.remove(&(project, resource));
                    self.resolve(IncidentKey::ProjectQuota(project, resource), event.time, Some(&event.id));
                }
            }
            let was_live = previous.is_some_and(ProjectState::is_live);
            let is_live = next.is_some_and(ProjectState::is_live);
            if was_live != is_live
                && let Some(account) = some(self.projects.items[index as usize].account)
            {
                let item = &mut self.accounts.items[account as usize];
                if is_live {
                    item.live_projects += 1;
                } else {
                    item.live_projects = item.live_projects.saturating_sub(1);
                }
                let account_ref = EntityRef { entity_type: EntityType::Account, index: account };
                self.note_entity(account_ref);
                self.check_account_quota(account, event, is_live);
            }
        }
    }

    fn apply_dispute(&mut self, event: &Event<'_>, dispute_event: DisputeEvent) {
        let index = self.disputes.get_or_insert(&event.subject);
        let entity = EntityRef { entity_type: EntityType::Dispute, index };
        self.last_applied = Some(entity);
        let previous = self.disputes.items[index as usize].state;
        let outcome = step::<DisputeMachine>(previous, dispute_event);
        let applies =
            self.transition(entity, previous.map(State::Dispute), outcome.map(State::Dispute), event);
        if !applies {
            return;
        }
        self.disputes.items[index as usize].state = outcome.next;
        match &event.payload {
            Payload::DisputeOpened { account_id, amount_cents, currency } if outcome.legal => {
                let account = self.accounts.get_or_insert(account_id);
                self.disputes.items[index as usize].account = account;
                let amount = format!("{}.{:02}", amount_cents / 100, (amount_cents % 100).unsigned_abs());
                let summary = format!(
                    "dispute {} opened by account {account_id} for {amount} {currency}",
                    event.subject
                );
                self.raise(IncidentKey::BillingDispute(index), None, event.time, &event.id, |_| summary);
            }
            Payload::DisputeClosed { outcome: result } => {
                if let Some(incident) =
                    self.resolve(IncidentKey::BillingDispute(index), event.time, Some(&event.id))
                {
                    let summary = &mut self.incidents[incident as usize].summary;
                    summary.push_str(&format!("; closed: {result}"));
                }
            }
            _ => {}
        }
    }

    /// The account-level quota: live projects against the plan's limit.
    /// `worse` says whether the change could only have raised the count or
    /// changed the plan; only such changes add to an open incident.
    fn check_account_quota(&mut self, account: u32, event: &Event<'_>, worse: bool) {
        let item = &self.accounts.items[account as usize];
        let live = item.live_projects;
        let plan = some(item.plan).map(|plan| self.strings.get(plan).to_string());
        let limit = plan.as_deref().and_then(|plan| self.config.max_projects(plan));
        let key = IncidentKey::AccountQuota(account);
        let open = self.keys.get(&key).and_then(|slot| slot.open).is_some();
        match limit {
            Some(limit) if live > limit => {
                if open && !worse {
                    return;
                }
                let name = item.id.as_str().to_string();
                let plan = plan.unwrap_or_default();
                self.raise(key, None, event.time, &event.id, |_| {
                    format!("account {name} has {live} live projects, over the {plan} plan limit of {limit}")
                });
            }
            _ => {
                if open {
                    self.resolve(key, event.time, Some(&event.id));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Regional outages

impl Engine {
    /// A `stuck` or `provisioning_failed` incident of a project changed: update
    /// its region's count of projects in trouble and the outages derived from it.
    fn project_trouble(&mut self, entity: EntityRef, incident: u32) {
        if entity.entity_type != EntityType::Project {
            return;
        }
        let Some(region) = some(self.projects.items[entity.index as usize].region) else { return };
        let (start, end) = {
            let incident = &self.incidents[incident as usize];
            (incident.opened_at, incident.resolved_at.unwrap_or(Timestamp::MAX))
        };
        let intervals = self.trouble.entry(entity.index).or_default();
        let old = union(intervals.iter().map(|&(_, start, end)| (start, end)));
        match intervals.iter_mut().find(|(index, _, _)| *index == incident) {
            Some(entry) => *entry = (incident, start, end),
            None => intervals.push((incident, start, end)),
        }
        let new = union(intervals.iter().map(|&(_, start, end)| (start, end)));
        let changes = difference(&old, &new);
        if changes.is_empty() {
            return;
        }
        let outages = self.regions.entry(region).or_default();
        let mut low = Timestamp::MAX;
        let mut high = Timestamp::MIN;
        for &(start, end, delta) in &changes {
            outages.timeline.add(start, end, delta);
            low = low.min(start);
            high = high.max(end);
        }
        self.reconcile_outages(region, low, high);
    }

    /// Makes the outage incidents of `region` that touch `[low, high]` agree
    /// with the runs of its count at or above the threshold.
    fn reconcile_outages(&mut self, region: u32, low: Timestamp, high: Timestamp) {
        let threshold = self.config.outage_threshold;
        let Some(outages) = self.regions.get(&region) else { return };
        let runs = outages.timeline.runs(threshold, low, high);
        let mut old: Vec<u32> = Vec::new();
        for (_, &index) in outages.incidents.range(..=high).rev() {
            let incident = &self.incidents[index as usize];
            if incident.resolved_at.unwrap_or(Timestamp::MAX) < low {
                break;
            }
            old.push(index);
        }
        old.reverse();
        let region_name = self.strings.get(region).to_string();
        let summary = format!(
            "regional outage in {region_name}: {threshold} or more projects stuck or failing to provision"
        );
        for (position, &(start, end)) in runs.iter().enumerate() {
            let resolved_at = (end != Timestamp::MAX).then_some(end);
            match old.get(position) {
                Some(&index) => {
                    let incident = &mut self.incidents[index as usize];
                    if incident.opened_at == start && incident.resolved_at == resolved_at {
                        continue;
                    }
                    let previous_start = incident.opened_at;
                    let was_open = incident.resolved_at.is_none();
                    incident.opened_at = start;
                    incident.resolved_at = resolved_at;
                    let transition = match (was_open, resolved_at.is_none()) {
                        (true, false) => Transition::Resolved,
                        (false, true) => Transition::Reopened,
                        _ => Transition::Updated,
                    };
                    let slot = self.keys.entry(IncidentKey::Outage(region)).or_default();
                    if resolved_at.is_none() {
                        slot.open = Some(index);
                    } else if slot.open == Some(index) {
                        slot.open = None;
                    }
                    if let Some(outages) = self.regions.get_mut(&region) {
                        outages.incidents.remove(&previous_start);
                        outages.incidents.insert(start, index);
                    }
                    self.note(index, transition);
                }
                None => {
                    let index =
                        self.open_incident(IncidentKey::Outage(region), None, start, None, summary.clone());
                    if let Some(end) = resolved_at {
                        self.resolve(IncidentKey::Outage(region), end, None);
                    }
                    if let Some(outages) = self.regions.get_mut(&region) {
                        outages.incidents.insert(start, index);
                    }
                }
            }
        }
        for &index in old.iter().skip(runs.len()) {
            let incident = &mut self.incidents[index as usize];
            incident.retracted = true;
            let start = incident.opened_at;
            if let Some(outages) = self.regions.get_mut(&region)
                && outages.incidents.get(&start) == Some(&index)
            {
                outages.incidents.remove(&start);
            }
            if let Some(slot) = self.keys.get_mut(&IncidentKey::Outage(region))
                && slot.open == Some(index)
            {
                slot.open = None;
            }
            self.note(index, Transition::Retracted);
        }
    }

    /// Drops every stale heap entry in one pass. Called when stale entries
    /// are at least half the heap, so the heap stays proportional to the
    /// visits waiting on a deadline and the pass is paid for by the pushes
    /// that made them stale.
    fn drop_stale_deadlines(&mut self) {
        let entries = std::mem::take(&mut self.deadlines).into_vec();
        let live: Vec<_> = entries
            .into_iter()
            .filter(|Reverse((_, entity_type, index, visit))| {
                let entity = EntityRef { entity_type: *entity_type, index: *index };
                self.visit_of(entity).is_some_and(|(_, _, current)| current == *visit)
            })
            .collect();
        self.deadlines = BinaryHeap::from(live);
        self.stale_deadlines = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;

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
}
