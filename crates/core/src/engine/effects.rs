//! What each machine's events do beyond moving the state: the incidents they
//! raise and resolve (onboarding and provisioning failures, quota breaches,
//! billing disputes, projects requested for accounts that are not active)
//! and what they record on the entities (plans, regions, owning accounts,
//! live project counts).

use super::arena::{AccountSlot, Packed};
use super::ledger::{IncidentKey, ProjectQuota};
use super::{Engine, EntityRef};
use crate::event::{AccountEvent, DisputeEvent, Event, Payload, ProjectEvent};
use crate::machine::{
    AccountMachine, AccountState, DisputeMachine, DisputeState, ProjectMachine, ProjectState, State, step,
};

impl Engine {
    pub(super) fn apply_account(&mut self, event: &Event<'_>, account_event: AccountEvent) {
        let account = self.entities.accounts.get_or_insert(&event.subject);
        let entity = EntityRef::from(account);
        self.last_applied = Some(entity);
        let previous = self.entities.accounts[account].state;
        let outcome = step::<AccountMachine>(previous, account_event);
        let applies =
            self.transition(entity, previous.map(State::Account), outcome.map(State::Account), event);
        if !applies {
            return;
        }
        self.entities.accounts[account].state = outcome.next;
        let mut plan_changed = false;
        match (&event.payload, account_event) {
            (Payload::AccountCreated { plan, region }, AccountEvent::Created) if outcome.legal => {
                let plan = self.entities.names.intern(plan);
                let region = region.as_deref().map(|region| self.entities.names.intern(region));
                let item = &mut self.entities.accounts[account];
                item.plan = Packed::new(Some(plan));
                item.region = Packed::new(region);
                plan_changed = true;
            }
            (Payload::AccountPlanChanged { plan }, _) => {
                let plan = self.entities.names.intern(plan);
                self.entities.accounts[account].plan = Packed::new(Some(plan));
                plan_changed = true;
                self.changes.entity(entity);
            }
            (Payload::AccountOnboardingFailed { reason }, _) => {
                let name = &event.subject;
                let summary = |count| {
                    if count == 1 {
                        format!("account {name} failed onboarding: {reason}")
                    } else {
                        format!("account {name} failed onboarding {count} times, last: {reason}")
                    }
                };
                let key = IncidentKey::OnboardingFailed(account);
                self.ledger.raise(key, None, event.time, &event.id, summary, &mut self.changes);
            }
            _ => {}
        }
        if outcome.entered && matches!(outcome.next, Some(AccountState::Active | AccountState::Closed)) {
            let key = IncidentKey::OnboardingFailed(account);
            self.ledger.resolve(key, event.time, Some(&event.id), &mut self.changes);
        }
        if plan_changed {
            self.check_account_quota(account, event, true);
        }
    }

    pub(super) fn apply_project(&mut self, event: &Event<'_>, project_event: ProjectEvent) {
        let project = self.entities.projects.get_or_insert(&event.subject);
        let entity = EntityRef::from(project);
        self.last_applied = Some(entity);
        let previous = self.entities.projects[project].state;
        let outcome = step::<ProjectMachine>(previous, project_event);
        let applies =
            self.transition(entity, previous.map(State::Project), outcome.map(State::Project), event);
        if !applies {
            return;
        }
        self.entities.projects[project].state = outcome.next;
        let name = &event.subject;
        match &event.payload {
            Payload::ProjectRequested { account_id, region } if outcome.legal => {
                let account = self.entities.accounts.get_or_insert(account_id);
                let region = self.entities.names.intern(region);
                let item = &mut self.entities.projects[project];
                item.account = Packed::new(Some(account));
                item.region = Packed::new(Some(region));
                let account_state = self.entities.accounts[account].state;
                if account_state != Some(AccountState::Active) {
                    let why = match account_state {
                        None => "which does not exist".to_string(),
                        Some(state) => format!("which is {state}, not active"),
                    };
                    let summary = format!("project {name} requested for account {account_id} {why}");
                    let key = IncidentKey::Invariant(project);
                    self.ledger.raise(key, None, event.time, &event.id, |_| summary, &mut self.changes);
                }
            }
            Payload::ProjectProvisioningFailed { error, retryable } => {
                let retry = match retryable {
                    Some(true) => " (retryable)",
                    Some(false) => " (not retryable)",
                    None => "",
                };
                let summary = |count| {
                    if count == 1 {
                        format!("project {name} failed to provision: {error}{retry}")
                    } else {
                        format!("project {name} failed to provision {count} times, last: {error}{retry}")
                    }
                };
                let key = IncidentKey::ProvisioningFailed(project);
                let incident =
                    self.ledger.raise(key, None, event.time, &event.id, summary, &mut self.changes);
                self.project_trouble(entity, incident);
            }
            Payload::ProjectQuotaExceeded { resource, limit, used } => {
                let quota = ProjectQuota { project, resource: self.entities.names.intern(resource) };
                self.ledger.note_project_quota(quota);
                let summary = |count| {
                    let times = if count == 1 { String::new() } else { format!(" ({count} reports)") };
                    format!("project {name} exceeded its {resource} quota: {used} used of {limit}{times}")
                };
                let key = IncidentKey::ProjectQuota(quota);
                self.ledger.raise(key, None, event.time, &event.id, summary, &mut self.changes);
            }
            Payload::ProjectQuotaRestored { resource } => {
                let quota = ProjectQuota { project, resource: self.entities.names.intern(resource) };
                if self.ledger.take_project_quota(quota) {
                    let key = IncidentKey::ProjectQuota(quota);
                    self.ledger.resolve(key, event.time, Some(&event.id), &mut self.changes);
                }
            }
            _ => {}
        }
        if !outcome.entered {
            return;
        }
        let next = outcome.next;
        if matches!(next, Some(ProjectState::Active | ProjectState::Deleting | ProjectState::Deleted)) {
            let key = IncidentKey::ProvisioningFailed(project);
            if let Some(incident) = self.ledger.resolve(key, event.time, Some(&event.id), &mut self.changes) {
                self.project_trouble(entity, incident);
            }
        }
        if matches!(next, Some(ProjectState::Deleting | ProjectState::Deleted)) {
            for quota in self.ledger.take_project_quotas(project) {
                let key = IncidentKey::ProjectQuota(quota);
                self.ledger.resolve(key, event.time, Some(&event.id), &mut self.changes);
            }
        }
        let was_live = previous.is_some_and(ProjectState::is_live);
        let is_live = next.is_some_and(ProjectState::is_live);
        if was_live != is_live
            && let Some(account) = self.entities.projects[project].account.get()
        {
            let item = &mut self.entities.accounts[account];
            if is_live {
                item.live_projects += 1;
            } else {
                item.live_projects = item.live_projects.saturating_sub(1);
            }
            self.changes.entity(account.into());
            self.check_account_quota(account, event, is_live);
        }
    }

    pub(super) fn apply_dispute(&mut self, event: &Event<'_>, dispute_event: DisputeEvent) {
        let dispute = self.entities.disputes.get_or_insert(&event.subject);
        let entity = EntityRef::from(dispute);
        self.last_applied = Some(entity);
        let previous: Option<DisputeState> = self.entities.disputes[dispute].state;
        let outcome = step::<DisputeMachine>(previous, dispute_event);
        let applies =
            self.transition(entity, previous.map(State::Dispute), outcome.map(State::Dispute), event);
        if !applies {
            return;
        }
        self.entities.disputes[dispute].state = outcome.next;
        let key = IncidentKey::BillingDispute(dispute);
        match &event.payload {
            Payload::DisputeOpened { account_id, amount_cents, currency } if outcome.legal => {
                let account = self.entities.accounts.get_or_insert(account_id);
                self.entities.disputes[dispute].account = Packed::new(Some(account));
                let amount = format!("{}.{:02}", amount_cents / 100, (amount_cents % 100).unsigned_abs());
                let summary = format!(
                    "dispute {} opened by account {account_id} for {amount} {currency}",
                    event.subject
                );
                self.ledger.raise(key, None, event.time, &event.id, |_| summary, &mut self.changes);
            }
            Payload::DisputeClosed { outcome: result } => {
                if let Some(incident) =
                    self.ledger.resolve(key, event.time, Some(&event.id), &mut self.changes)
                {
                    self.ledger.append_summary(incident, &format!("; closed: {result}"));
                }
            }
            _ => {}
        }
    }

    /// The account-level quota: live projects against the plan's limit.
    /// `worse` says whether the change could only have raised the count or
    /// changed the plan; only such changes add to an open incident.
    fn check_account_quota(&mut self, account: AccountSlot, event: &Event<'_>, worse: bool) {
        let item = &self.entities.accounts[account];
        let live = item.live_projects;
        let plan = item.plan.get().map(|plan| self.entities.names.get(plan));
        let limit = plan.and_then(|plan| self.config.max_projects(plan));
        let key = IncidentKey::AccountQuota(account);
        let open = self.ledger.open_of(key).is_some();
        match limit {
            Some(limit) if live > limit => {
                if open && !worse {
                    return;
                }
                let summary = format!(
                    "account {} has {live} live projects, over the {} plan limit of {limit}",
                    item.id(),
                    plan.unwrap_or_default()
                );
                self.ledger.raise(key, None, event.time, &event.id, |_| summary, &mut self.changes);
            }
            _ => {
                if open {
                    self.ledger.resolve(key, event.time, Some(&event.id), &mut self.changes);
                }
            }
        }
    }
}
