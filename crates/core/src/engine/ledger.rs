//! The incident ledger: every incident ever opened, found by its typed
//! [`IncidentKey`], and the only code that opens, raises, resolves, reshapes
//! or retracts one. Each of those reports its [`Transition`] to the change
//! log. It also makes the public [`IncidentRecord`] of an incident.

use std::collections::{BTreeSet, HashMap};

use super::arena::{AccountSlot, DisputeSlot, Entities, Name, Packed, ProjectSlot};
use super::escalation::{Chains, StepDue, StepQueue};
use super::{ChangeLog, EntityRef, OperatorRefusal};
use crate::config::Config;
use crate::event::EntityType;
use crate::incident::{
    EntityRecord, IncidentKind, IncidentRecord, MAX_RECORD_EVENTS, MAX_RECORD_TEXT, Status, SubjectType,
    Transition, cut_text,
};
use crate::machine::State;
use crate::time::Timestamp;

/// The position of an incident in the ledger; the public API carries it as a `u32`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub(super) struct IncidentIndex(u32);

impl IncidentIndex {
    pub(super) fn new(index: u32) -> IncidentIndex {
        IncidentIndex(index)
    }

    pub(super) fn get(self) -> u32 {
        self.0
    }
}

/// A project's breach of one quota resource.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(super) struct ProjectQuota {
    pub(super) project: ProjectSlot,
    pub(super) resource: Name,
}

/// What an incident is about. While an incident of a key is open, the same
/// condition adds to it instead of opening another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum IncidentKey {
    Stuck(EntityRef, State),
    ProvisioningFailed(ProjectSlot),
    OnboardingFailed(AccountSlot),
    ProjectQuota(ProjectQuota),
    AccountQuota(AccountSlot),
    BillingDispute(DisputeSlot),
    Illegal(EntityRef),
    Invariant(ProjectSlot),
    /// A regional outage of the region of that name.
    Outage(Name),
}

impl IncidentKey {
    fn kind(self) -> IncidentKind {
        match self {
            IncidentKey::Stuck(..) => IncidentKind::Stuck,
            IncidentKey::ProvisioningFailed(_) => IncidentKind::ProvisioningFailed,
            IncidentKey::OnboardingFailed(_) => IncidentKind::OnboardingFailed,
            IncidentKey::ProjectQuota(_) | IncidentKey::AccountQuota(_) => IncidentKind::QuotaBreach,
            IncidentKey::BillingDispute(_) => IncidentKind::BillingDispute,
            IncidentKey::Illegal(_) => IncidentKind::IllegalTransition,
            IncidentKey::Invariant(_) => IncidentKind::InvariantViolation,
            IncidentKey::Outage(_) => IncidentKind::RegionalOutage,
        }
    }

    /// What the incident is about.
    fn subject_type(self) -> SubjectType {
        self.entity().map_or(SubjectType::Region, |entity| SubjectType::from(entity.entity_type))
    }

    /// The entity the incident is about (`None` for a region).
    fn entity(self) -> Option<EntityRef> {
        match self {
            IncidentKey::Stuck(entity, _) | IncidentKey::Illegal(entity) => Some(entity),
            IncidentKey::ProvisioningFailed(project)
            | IncidentKey::ProjectQuota(ProjectQuota { project, .. })
            | IncidentKey::Invariant(project) => Some(project.into()),
            IncidentKey::OnboardingFailed(account) | IncidentKey::AccountQuota(account) => {
                Some(account.into())
            }
            IncidentKey::BillingDispute(dispute) => Some(dispute.into()),
            IncidentKey::Outage(_) => None,
        }
    }
}

/// Per key: its open incident, and the highest ordinal of its incidents
/// that are not retracted.
#[derive(Clone, Copy, Default, Debug)]
struct KeySlot {
    open: Option<IncidentIndex>,
    opened: u32,
}

/// One incident.
#[derive(Clone, Debug)]
pub(super) struct Incident {
    key: IncidentKey,
    /// The how-manieth incident of this key, from 1, counting only incidents
    /// that are not retracted: makes the id stable, and independent of
    /// where the input was split (see [`Ledger::retract`]).
    ordinal: u32,
    state: Option<State>,
    pub(super) opened_at: Timestamp,
    pub(super) resolved_at: Option<Timestamp>,
    count: u32,
    events: Vec<Box<str>>,
    summary: String,
    retracted: bool,
    /// The account and region of the record, taken from the entity after
    /// each event or clock step that changed the incident ([`Ledger::settle`],
    /// docs/contract.md), so that the record replay prints is the one the
    /// store and INCIDENTS got with the last change, whatever the entity
    /// learned since.
    account: Packed<AccountSlot>,
    region: Packed<Name>,
    /// A person acknowledged it: no more escalation.
    acknowledged: bool,
    /// How many steps of its escalation chain fired.
    escalated: u32,
}

impl Incident {
    fn is_open(&self) -> bool {
        self.resolved_at.is_none() && !self.retracted
    }

    /// Takes the record's account and region from the entity as it stands now.
    fn take_fields(&mut self, entities: &Entities) {
        let Some(fields) = self.key.entity().and_then(|entity| entities.fields(entity)) else { return };
        self.account = Packed::new(fields.account);
        self.region = Packed::new(fields.region);
    }

    fn note_event(&mut self, event_id: &str) {
        if self.events.len() < MAX_RECORD_EVENTS {
            self.events.push(event_id.into());
        }
    }
}

/// Every incident, and the open ones by key.
#[derive(Default)]
pub(super) struct Ledger {
    incidents: Vec<Incident>,
    keys: HashMap<IncidentKey, KeySlot, foldhash::fast::RandomState>,
    /// The open quota breaches of each project, so that deleting a project
    /// resolves them without a scan of every key.
    open_project_quotas: BTreeSet<ProjectQuota>,
    /// Per key, the ordinals below its highest that retracted incidents
    /// gave back, for the next incidents of the key. Only a regional outage
    /// can be retracted while a later incident of its key exists, so this
    /// is nearly always empty.
    released: HashMap<IncidentKey, BTreeSet<u32>, foldhash::fast::RandomState>,
    /// The incidents changed since the last [`Ledger::settle`]; the buffer
    /// is kept, so that settling allocates nothing.
    unsettled: Vec<IncidentIndex>,
    /// The escalation chains, and the steps queued to fall due.
    chains: Chains,
    steps: StepQueue,
}

/// Whether a queued step is the next one of an incident that still escalates.
fn step_is_current(incidents: &[Incident], chains: &Chains, step: &StepDue) -> bool {
    let Some(incident) = incidents.get(step.incident as usize) else { return false };
    incident.is_open()
        && !incident.acknowledged
        && incident.escalated == step.step
        && chains
            .chain(incident.key.kind(), incident.key.subject_type())
            .and_then(|chain| chain.due(incident.opened_at, step.step))
            == Some(step.due)
}

impl Ledger {
    /// An empty ledger escalating by `config`'s chains.
    pub(super) fn new(config: &Config) -> Ledger {
        Ledger { chains: Chains::new(config), ..Ledger::default() }
    }

    /// How many incidents exist, retracted ones included.
    pub(super) fn len(&self) -> u32 {
        self.incidents.len() as u32
    }

    pub(super) fn get(&self, index: IncidentIndex) -> Option<&Incident> {
        self.incidents.get(index.0 as usize)
    }

    pub(super) fn is_retracted(&self, index: IncidentIndex) -> bool {
        self.get(index).is_some_and(|incident| incident.retracted)
    }

    /// The open incident of `key`.
    pub(super) fn open_of(&self, key: IncidentKey) -> Option<IncidentIndex> {
        self.keys.get(&key).and_then(|slot| slot.open)
    }

    /// Opens a new incident of `key` at `at`.
    pub(super) fn open(
        &mut self,
        key: IncidentKey,
        state: Option<State>,
        at: Timestamp,
        event_id: Option<&str>,
        summary: String,
        changes: &mut ChangeLog,
    ) -> IncidentIndex {
        let index = IncidentIndex(self.incidents.len() as u32);
        let slot = self.keys.entry(key).or_default();
        slot.open = Some(index);
        let released = if self.released.is_empty() { None } else { take_lowest(&mut self.released, key) };
        let ordinal = released.unwrap_or_else(|| {
            slot.opened += 1;
            slot.opened
        });
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
            account: Packed::new(None),
            region: Packed::new(None),
            acknowledged: false,
            escalated: 0,
        });
        self.changed(index, Transition::Opened, changes);
        self.queue_next_step(index);
        index
    }

    /// Raises the condition of `key`: adds to the open incident, or opens
    /// one. `summary` gets the count of times raised.
    pub(super) fn raise(
        &mut self,
        key: IncidentKey,
        state: Option<State>,
        at: Timestamp,
        event_id: &str,
        summary: impl FnOnce(u32) -> String,
        changes: &mut ChangeLog,
    ) -> IncidentIndex {
        match self.open_of(key) {
            Some(index) => {
                let incident = &mut self.incidents[index.0 as usize];
                incident.count += 1;
                incident.note_event(event_id);
                incident.summary = summary(incident.count);
                self.changed(index, Transition::Updated, changes);
                index
            }
            None => self.open(key, state, at, Some(event_id), summary(1), changes),
        }
    }

    /// Resolves the open incident of `key`, if any, and returns it.
    pub(super) fn resolve(
        &mut self,
        key: IncidentKey,
        at: Timestamp,
        event_id: Option<&str>,
        changes: &mut ChangeLog,
    ) -> Option<IncidentIndex> {
        let index = self.open_of(key)?;
        // Steps that fell due before the end escalated, even when the clock
        // never got there before this event (replay, lag): as the stuck rule.
        self.escalate_before(index, at, changes);
        self.keys.get_mut(&key)?.open.take()?;
        let incident = &mut self.incidents[index.0 as usize];
        incident.resolved_at = Some(at.max(incident.opened_at));
        if let Some(event_id) = event_id {
            incident.note_event(event_id);
        }
        self.changed(index, Transition::Resolved, changes);
        Some(index)
    }

    /// Moves an incident to `[opened_at, resolved_at)` (open when
    /// `resolved_at` is `None`), as late evidence reshapes an outage. Returns
    /// the old start, or `None` when nothing changed.
    pub(super) fn reshape(
        &mut self,
        index: IncidentIndex,
        opened_at: Timestamp,
        resolved_at: Option<Timestamp>,
        changes: &mut ChangeLog,
    ) -> Option<Timestamp> {
        let incident = self.incidents.get(index.0 as usize)?;
        if incident.opened_at == opened_at && incident.resolved_at == resolved_at {
            return None;
        }
        if let (true, Some(end)) = (incident.resolved_at.is_none(), resolved_at) {
            self.escalate_before(index, end, changes);
        }
        let incident = self.incidents.get_mut(index.0 as usize)?;
        let previous_start = incident.opened_at;
        let was_open = incident.resolved_at.is_none();
        incident.opened_at = opened_at;
        incident.resolved_at = resolved_at;
        let transition = match (was_open, resolved_at.is_none()) {
            (true, false) => Transition::Resolved,
            (false, true) => Transition::Reopened,
            _ => Transition::Updated,
        };
        let slot = self.keys.entry(incident.key).or_default();
        if resolved_at.is_none() {
            slot.open = Some(index);
        } else if slot.open == Some(index) {
            slot.open = None;
        }
        self.changed(index, transition, changes);
        self.queue_next_step(index);
        Some(previous_start)
    }

    // Escalation and operators

    /// Queues the next step of an open, unacknowledged incident's chain.
    fn queue_next_step(&mut self, index: IncidentIndex) {
        let Some(incident) = self.incidents.get(index.0 as usize) else { return };
        if !incident.is_open() || incident.acknowledged {
            return;
        }
        let Some(chain) = self.chains.chain(incident.key.kind(), incident.key.subject_type()) else { return };
        if let Some(due) = chain.due(incident.opened_at, incident.escalated) {
            self.steps.push(StepDue { due, incident: index.0, step: incident.escalated });
        }
    }

    /// Fires the next step of an incident's chain.
    fn escalate(&mut self, index: IncidentIndex, changes: &mut ChangeLog) {
        if let Some(incident) = self.incidents.get_mut(index.0 as usize) {
            incident.escalated += 1;
            self.changed(index, Transition::Escalated, changes);
            self.queue_next_step(index);
        }
    }

    /// Fires every step of an open incident's chain that falls due before `at`.
    fn escalate_before(&mut self, index: IncidentIndex, at: Timestamp, changes: &mut ChangeLog) {
        loop {
            let Some(incident) = self.incidents.get(index.0 as usize) else { return };
            if !incident.is_open() || incident.acknowledged {
                return;
            }
            let chain = self.chains.chain(incident.key.kind(), incident.key.subject_type());
            match chain.and_then(|chain| chain.due(incident.opened_at, incident.escalated)) {
                Some(due) if due < at => self.escalate(index, changes),
                _ => return,
            }
        }
    }

    /// When the next queued step falls due.
    pub(super) fn next_step_due(&mut self) -> Option<Timestamp> {
        let (incidents, chains) = (&self.incidents, &self.chains);
        self.steps.peek(|step| step_is_current(incidents, chains, step)).map(|step| step.due)
    }

    /// Fires the earliest step due before `now`; false when there is none.
    pub(super) fn escalate_due(&mut self, now: Timestamp, changes: &mut ChangeLog) -> bool {
        let (incidents, chains) = (&self.incidents, &self.chains);
        let Some(step) = self.steps.pop_due(now, |step| step_is_current(incidents, chains, step)) else {
            return false;
        };
        self.escalate(IncidentIndex(step.incident), changes);
        true
    }

    /// Whether a person acknowledged the incident, and how many steps of its chain fired.
    pub(super) fn operator_state(&self, index: IncidentIndex) -> Option<(bool, u32)> {
        self.get(index).map(|incident| (incident.acknowledged, incident.escalated))
    }

    /// An open incident a person may act on.
    fn actionable(&self, index: IncidentIndex) -> Result<&Incident, OperatorRefusal> {
        let incident = self.get(index).ok_or(OperatorRefusal::NoSuchIncident)?;
        if incident.retracted {
            return Err(OperatorRefusal::Retracted);
        }
        if incident.resolved_at.is_some() {
            return Err(OperatorRefusal::NotOpen);
        }
        Ok(incident)
    }

    /// A person acknowledged an open incident: its escalation stops.
    pub(super) fn acknowledge(
        &mut self,
        index: IncidentIndex,
        changes: &mut ChangeLog,
    ) -> Result<(), OperatorRefusal> {
        if self.actionable(index)?.acknowledged {
            return Err(OperatorRefusal::AlreadyAcknowledged);
        }
        if let Some(incident) = self.incidents.get_mut(index.0 as usize) {
            incident.acknowledged = true;
        }
        self.changed(index, Transition::Acknowledged, changes);
        Ok(())
    }

    /// A person resolved an open incident of a kind that never resolves by
    /// itself, at `at`. It does not escalate on the way out.
    pub(super) fn resolve_by_operator(
        &mut self,
        index: IncidentIndex,
        at: Timestamp,
        changes: &mut ChangeLog,
    ) -> Result<(), OperatorRefusal> {
        let incident = self.actionable(index)?;
        let kind = incident.key.kind();
        if !matches!(kind, IncidentKind::IllegalTransition | IncidentKind::InvariantViolation) {
            return Err(OperatorRefusal::ResolvesByItself(kind));
        }
        let key = incident.key;
        if let Some(incident) = self.incidents.get_mut(index.0 as usize) {
            incident.acknowledged = true;
        }
        self.resolve(key, at, None, changes);
        Ok(())
    }

    /// Reports a change of an incident, and notes it for [`Ledger::settle`].
    fn changed(&mut self, index: IncidentIndex, transition: Transition, changes: &mut ChangeLog) {
        self.unsettled.push(index);
        changes.incident(index, transition);
    }

    /// Takes the account and region of every incident changed since the
    /// last call from its entity, as the entity stands now. The engine calls
    /// it after each event and each clock step, so that a record's fields
    /// are those of the entity after the last event (or clock step) that
    /// changed the incident: an event never both changes an incident and
    /// gives its entity an account or region before the change (only a
    /// legal creation gives them, and it raises nothing before), so this is
    /// the entity as it stood at the change itself.
    pub(super) fn settle(&mut self, entities: &Entities) {
        for index in self.unsettled.drain(..) {
            if let Some(incident) = self.incidents.get_mut(index.0 as usize) {
                incident.take_fields(entities);
            }
        }
    }

    /// Retracts an incident: it no longer exists, and consumers are told to
    /// drop it. It gives its ordinal back: the next incident of its key gets
    /// it, and with it the retracted incident's id. So the incidents of a key
    /// that exist are always numbered 1 to n, whether or not the clock opened
    /// (and a later event retracted) incidents in between, which is what
    /// makes ids independent of where the input was split
    /// (docs/contract.md). The retraction is published and stored under the
    /// id before the id is used again, so a consumer that drops the incident
    /// on `retracted` then sees the new one open under it.
    pub(super) fn retract(&mut self, index: IncidentIndex, changes: &mut ChangeLog) {
        let Some(incident) = self.incidents.get_mut(index.0 as usize) else { return };
        if incident.retracted {
            return;
        }
        incident.retracted = true;
        let (key, ordinal) = (incident.key, incident.ordinal);
        if let Some(slot) = self.keys.get_mut(&key) {
            if slot.open == Some(index) {
                slot.open = None;
            }
            if ordinal == slot.opened {
                slot.opened -= 1;
                // Ordinals given back earlier just below it are now the
                // highest: they go too, so that what is left is 1 to n.
                while slot.opened > 0 && take_exact(&mut self.released, key, slot.opened) {
                    slot.opened -= 1;
                }
            } else {
                self.released.entry(key).or_default().insert(ordinal);
            }
        }
        self.changed(index, Transition::Retracted, changes);
    }

    /// Retracts an open incident whose condition never held: it lasts no
    /// time, so that it leaves whatever is derived from incident intervals.
    pub(super) fn retract_unfounded(&mut self, index: IncidentIndex, changes: &mut ChangeLog) {
        if let Some(incident) = self.incidents.get_mut(index.0 as usize) {
            incident.resolved_at = Some(incident.opened_at);
        }
        self.retract(index, changes);
    }

    pub(super) fn set_summary(&mut self, index: IncidentIndex, summary: String) {
        if let Some(incident) = self.incidents.get_mut(index.0 as usize) {
            incident.summary = summary;
        }
    }

    pub(super) fn append_summary(&mut self, index: IncidentIndex, text: &str) {
        if let Some(incident) = self.incidents.get_mut(index.0 as usize) {
            incident.summary.push_str(text);
        }
    }

    /// A quota breach of a project was raised.
    pub(super) fn note_project_quota(&mut self, quota: ProjectQuota) {
        self.open_project_quotas.insert(quota);
    }

    /// Forgets a project's quota breach; whether it was open.
    pub(super) fn take_project_quota(&mut self, quota: ProjectQuota) -> bool {
        self.open_project_quotas.remove(&quota)
    }

    /// Forgets every open quota breach of a project and returns them.
    pub(super) fn take_project_quotas(&mut self, project: ProjectSlot) -> Vec<ProjectQuota> {
        let range =
            ProjectQuota { project, resource: Name::MIN }..=ProjectQuota { project, resource: Name::MAX };
        let open: Vec<ProjectQuota> = self.open_project_quotas.range(range).copied().collect();
        for quota in &open {
            self.open_project_quotas.remove(quota);
        }
        open
    }

    // -----------------------------------------------------------------------
    // Records

    /// The record of one incident.
    pub(super) fn record(
        &self,
        index: IncidentIndex,
        entities: &Entities,
        config: &Config,
    ) -> Option<IncidentRecord> {
        let incident = self.get(index)?;
        let kind = incident.key.kind();
        let (subject_type, entity_id, account_id, region) = match incident.key.entity() {
            Some(entity) => {
                let fields = entities.fields(entity)?;
                // The account and region as they stood when the incident last
                // changed, not as the entity stands now (docs/contract.md).
                let account_id = match entity.entity_type {
                    EntityType::Account => Some(fields.id.to_string()),
                    _ => incident.account.get().map(|account| entities.accounts[account].id().to_string()),
                };
                let region = incident.region.get().map(|region| entities.names.get(region).to_string());
                (SubjectType::from(entity.entity_type), fields.id.to_string(), account_id, region)
            }
            None => {
                let region = match incident.key {
                    IncidentKey::Outage(region) => entities.names.get(region).to_string(),
                    _ => String::new(),
                };
                (SubjectType::Region, region.clone(), None, Some(region))
            }
        };
        let key = key_string(incident.key, subject_type, &entity_id, entities);
        // The id hashes the whole key, so incidents whose long region names
        // share a prefix keep distinct ids; then every text copied from
        // events is cut to MAX_RECORD_TEXT (entity ids are at most 256
        // bytes by validation, region names and account ids are unbounded).
        let mut hashed = String::with_capacity(key.len() + 11);
        hashed.push_str(&key);
        hashed.push('#');
        let _ = std::fmt::Write::write_fmt(&mut hashed, format_args!("{}", incident.ordinal));
        let id = format!("inc_{:016x}", xxhash_rust::xxh3::xxh3_64(hashed.as_bytes()));
        let bounded = |mut text: String| {
            cut_text(&mut text, MAX_RECORD_TEXT);
            text
        };
        let (key, entity_id, account_id, region) =
            (bounded(key), bounded(entity_id), account_id.map(bounded), region.map(bounded));
        Some(IncidentRecord {
            id,
            key,
            kind,
            severity: config.severity(kind, subject_type, incident.state),
            status: if incident.resolved_at.is_some() { Status::Resolved } else { Status::Open },
            entity: EntityRecord { entity_type: subject_type, id: entity_id },
            account_id,
            region,
            state: incident.state.map(|state| state.as_str().to_string()),
            owner: config.owner(kind, subject_type).to_string(),
            runbook: config.runbook(kind).to_string(),
            opened_at: incident.opened_at,
            resolved_at: incident.resolved_at,
            summary: bounded(incident.summary.clone()),
            count: incident.count,
            events: incident.events.iter().map(|id| id.to_string()).collect(),
        })
    }

    /// Every incident that is not retracted, ordered by `opened_at` then
    /// `key` (then creation order).
    pub(super) fn sorted(&self, entities: &Entities) -> Vec<u32> {
        let mut order: Vec<(Timestamp, String, u32, u32)> = self
            .incidents
            .iter()
            .enumerate()
            .filter(|(_, incident)| !incident.retracted)
            .map(|(index, incident)| {
                let (subject_type, entity_id) = subject_of(incident.key, entities);
                let key = key_string(incident.key, subject_type, entity_id, entities);
                (incident.opened_at, key, incident.ordinal, index as u32)
            })
            .collect();
        order.sort_unstable();
        order.into_iter().map(|(_, _, _, index)| index).collect()
    }
}

/// Takes the lowest ordinal `key`'s retracted incidents gave back, if any.
fn take_lowest(
    released: &mut HashMap<IncidentKey, BTreeSet<u32>, foldhash::fast::RandomState>,
    key: IncidentKey,
) -> Option<u32> {
    let ordinals = released.get_mut(&key)?;
    let lowest = ordinals.pop_first();
    if ordinals.is_empty() {
        released.remove(&key);
    }
    lowest
}

/// Takes `ordinal` from those `key`'s retracted incidents gave back; whether it was there.
fn take_exact(
    released: &mut HashMap<IncidentKey, BTreeSet<u32>, foldhash::fast::RandomState>,
    key: IncidentKey,
    ordinal: u32,
) -> bool {
    let Some(ordinals) = released.get_mut(&key) else { return false };
    let taken = ordinals.remove(&ordinal);
    if ordinals.is_empty() {
        released.remove(&key);
    }
    taken
}

/// The dedup key of SPEC.md section 4: kind, subject type, id, and the
/// state or resource that tells apart incidents of one entity.
///
/// Concatenated rather than `format!`ted: it is built for every record and
/// every sort, and the formatting machinery (through the enums' `Display`)
/// cost about three times the copying (callgrind, `replay --db`).
fn key_string(key: IncidentKey, subject_type: SubjectType, entity_id: &str, entities: &Entities) -> String {
    let suffix = match key {
        IncidentKey::Stuck(_, state) => Some(state.as_str()),
        IncidentKey::ProjectQuota(ProjectQuota { resource, .. }) => Some(entities.names.get(resource)),
        _ => None,
    };
    let parts = [key.kind().as_str(), subject_type.as_str(), entity_id];
    let mut text = String::with_capacity(
        parts.iter().map(|part| part.len() + 1).sum::<usize>() + suffix.map_or(0, |suffix| suffix.len() + 1),
    );
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            text.push(':');
        }
        text.push_str(part);
    }
    if let Some(suffix) = suffix {
        text.push(':');
        text.push_str(suffix);
    }
    text
}

/// The subject type and id an incident key is about.
fn subject_of(key: IncidentKey, entities: &Entities) -> (SubjectType, &str) {
    match key.entity() {
        Some(entity) => (entity.entity_type.into(), entities.name_of(entity)),
        None => match key {
            IncidentKey::Outage(region) => (SubjectType::Region, entities.names.get(region)),
            _ => (SubjectType::Region, ""),
        },
    }
}
