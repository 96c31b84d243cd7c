//! The three state machines of SPEC.md section 2, as data, and the one step
//! function that applies the illegal-transition rule to any of them.

use std::fmt;

use crate::event::{AccountEvent, DisputeEvent, EntityType, ProjectEvent};
use crate::names::{name_methods, named_enum};

named_enum! {
    /// States of an account.
    #[allow(missing_docs)]
    pub enum AccountState {
        Pending,
        Active,
        Failed,
        Suspended,
        Closed,
    }
}

named_enum! {
    /// States of a project.
    #[allow(missing_docs)]
    pub enum ProjectState {
        Requested,
        Provisioning,
        Active,
        Failed,
        Suspended,
        Deleting,
        Deleted,
    }
}

named_enum! {
    /// States of a dispute.
    #[allow(missing_docs)]
    pub enum DisputeState {
        Open,
        Responded,
        Closed,
    }
}

/// A state of any machine, for records, configuration and reports.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum State {
    /// An account state.
    Account(AccountState),
    /// A project state.
    Project(ProjectState),
    /// A dispute state.
    Dispute(DisputeState),
}

/// What an event does to the state, when it applies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target<S> {
    /// The entity moves to this state.
    Move(S),
    /// The state stays as it is.
    Keep,
}

/// One row of a machine's table.
#[derive(Clone, Copy, Debug)]
pub struct Rule<S: 'static> {
    /// The states the event is allowed from; empty for the creation event.
    pub from: &'static [S],
    /// Where it leads.
    pub target: Target<S>,
    /// Whether this is the entity's creation event (allowed only from ∅).
    pub creates: bool,
}

/// A typed state machine.
pub trait Machine {
    /// The machine's states.
    type State: Copy + Eq + fmt::Debug + 'static;
    /// The machine's events.
    type Event: Copy;
    /// The row of the table for this event.
    fn rule(event: Self::Event) -> Rule<Self::State>;
    /// Whether no event leaves this state.
    fn is_terminal(state: Self::State) -> bool;
}

/// The account machine.
pub struct AccountMachine;
/// The project machine.
pub struct ProjectMachine;
/// The dispute machine.
pub struct DisputeMachine;

const fn rule<S>(from: &'static [S], target: Target<S>) -> Rule<S> {
    Rule { from, target, creates: false }
}

const fn creation<S>(state: S) -> Rule<S> {
    Rule { from: &[], target: Target::Move(state), creates: true }
}

impl Machine for AccountMachine {
    type State = AccountState;
    type Event = AccountEvent;

    fn rule(event: AccountEvent) -> Rule<AccountState> {
        use AccountState::*;
        use Target::{Keep, Move};
        match event {
            AccountEvent::Created => creation(Pending),
            AccountEvent::Activated => rule(&[Pending], Move(Active)),
            AccountEvent::OnboardingFailed => rule(&[Pending], Move(Failed)),
            AccountEvent::OnboardingRetried => rule(&[Failed], Move(Pending)),
            AccountEvent::Suspended => rule(&[Active], Move(Suspended)),
            AccountEvent::Reinstated => rule(&[Suspended], Move(Active)),
            AccountEvent::PlanChanged => rule(&[Active, Suspended], Keep),
            AccountEvent::Closed => rule(&[Pending, Active, Suspended, Failed], Move(Closed)),
        }
    }

    fn is_terminal(state: AccountState) -> bool {
        state == AccountState::Closed
    }
}

impl Machine for ProjectMachine {
    type State = ProjectState;
    type Event = ProjectEvent;

    fn rule(event: ProjectEvent) -> Rule<ProjectState> {
        use ProjectState::*;
        use Target::{Keep, Move};
        match event {
            ProjectEvent::Requested => creation(Requested),
            ProjectEvent::ProvisioningStarted => rule(&[Requested, Failed], Move(Provisioning)),
            ProjectEvent::Provisioned => rule(&[Provisioning], Move(Active)),
            ProjectEvent::ProvisioningFailed => rule(&[Provisioning], Move(Failed)),
            ProjectEvent::Suspended => rule(&[Active], Move(Suspended)),
            ProjectEvent::Resumed => rule(&[Suspended], Move(Active)),
            ProjectEvent::QuotaExceeded => rule(&[Requested, Provisioning, Active, Suspended], Keep),
            ProjectEvent::QuotaRestored => rule(&[Requested, Provisioning, Active, Suspended, Failed], Keep),
            ProjectEvent::DeletionRequested => {
                rule(&[Requested, Provisioning, Active, Suspended, Failed], Move(Deleting))
            }
            ProjectEvent::Deleted => rule(&[Deleting], Move(Deleted)),
        }
    }

    fn is_terminal(state: ProjectState) -> bool {
        state == ProjectState::Deleted
    }
}

impl Machine for DisputeMachine {
    type State = DisputeState;
    type Event = DisputeEvent;

    fn rule(event: DisputeEvent) -> Rule<DisputeState> {
        use DisputeState::*;
        use Target::Move;
        match event {
            DisputeEvent::Opened => creation(Open),
            DisputeEvent::Responded => rule(&[Open], Move(Responded)),
            DisputeEvent::Closed => rule(&[Open, Responded], Move(Closed)),
        }
    }

    fn is_terminal(state: DisputeState) -> bool {
        state == DisputeState::Closed
    }
}

/// What one event does to one entity, by SPEC.md section 2 "Applying events".
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step<S> {
    /// Whether the event is allowed from the current state.
    pub legal: bool,
    /// Whether the event takes effect (moves the state and has its effects).
    /// False only for illegal events that the rule says change nothing else.
    pub applies: bool,
    /// The state after the event (`None`: the entity still does not exist).
    pub next: Option<S>,
    /// Whether the entity entered a new state (creation included).
    pub entered: bool,
}

impl<S> Step<S> {
    /// The same step with the state mapped, e.g. into [`State`].
    pub fn map<T>(self, f: impl FnOnce(S) -> T) -> Step<T> {
        Step { legal: self.legal, applies: self.applies, next: self.next.map(f), entered: self.entered }
    }
}

/// Applies the table and the illegal-transition rule to `current`.
pub fn step<M: Machine>(current: Option<M::State>, event: M::Event) -> Step<M::State> {
    let rule = M::rule(event);
    let ignored = |legal| Step { legal, applies: false, next: current, entered: false };
    match current {
        None => match rule.target {
            Target::Move(state) => {
                Step { legal: rule.creates, applies: true, next: Some(state), entered: true }
            }
            // A state-keeping event for a missing entity changes nothing else.
            Target::Keep => ignored(false),
        },
        Some(state) if M::is_terminal(state) || rule.creates => ignored(false),
        Some(state) => {
            let next = match rule.target {
                Target::Move(target) => target,
                Target::Keep => state,
            };
            Step {
                legal: rule.from.contains(&state),
                applies: true,
                next: Some(next),
                entered: next != state,
            }
        }
    }
}

impl ProjectState {
    /// Whether a project in this state counts toward its account's plan limit.
    pub fn is_live(self) -> bool {
        !matches!(self, ProjectState::Deleting | ProjectState::Deleted)
    }
}

name_methods!(AccountState, ProjectState, DisputeState);

impl State {
    /// Every state of every machine.
    pub fn all() -> impl Iterator<Item = State> {
        AccountState::ALL
            .into_iter()
            .map(State::Account)
            .chain(ProjectState::ALL.into_iter().map(State::Project))
            .chain(DisputeState::ALL.into_iter().map(State::Dispute))
    }

    /// The machine this state belongs to.
    pub fn entity_type(self) -> EntityType {
        match self {
            State::Account(_) => EntityType::Account,
            State::Project(_) => EntityType::Project,
            State::Dispute(_) => EntityType::Dispute,
        }
    }

    /// The lowercase state name of SPEC.md.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Account(state) => state.as_str(),
            State::Project(state) => state.as_str(),
            State::Dispute(state) => state.as_str(),
        }
    }

    /// The state of that name in that machine.
    pub fn parse(entity_type: EntityType, name: &str) -> Option<State> {
        match entity_type {
            EntityType::Account => AccountState::parse(name).map(State::Account),
            EntityType::Project => ProjectState::parse(name).map(State::Project),
            EntityType::Dispute => DisputeState::parse(name).map(State::Dispute),
        }
    }

    /// Whether no event leaves this state.
    pub fn is_terminal(self) -> bool {
        match self {
            State::Account(state) => AccountMachine::is_terminal(state),
            State::Project(state) => ProjectMachine::is_terminal(state),
            State::Dispute(state) => DisputeMachine::is_terminal(state),
        }
    }

    /// A dense index over all states, for tables.
    pub fn index(self) -> usize {
        match self {
            State::Account(state) => state as usize,
            State::Project(state) => AccountState::ALL.len() + state as usize,
            State::Dispute(state) => AccountState::ALL.len() + ProjectState::ALL.len() + state as usize,
        }
    }

    /// How many states there are in all.
    pub const COUNT: usize = AccountState::ALL.len() + ProjectState::ALL.len() + DisputeState::ALL.len();
}

macro_rules! display_via_state {
    ($($state:ident),*) => {$(
        impl fmt::Display for $state {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                State::from(*self).fmt(f)
            }
        }
    )*};
}
display_via_state!(AccountState, ProjectState, DisputeState);

impl From<AccountState> for State {
    fn from(state: AccountState) -> State {
        State::Account(state)
    }
}

impl From<ProjectState> for State {
    fn from(state: ProjectState) -> State {
        State::Project(state)
    }
}

impl From<DisputeState> for State {
    fn from(state: DisputeState) -> State {
        State::Dispute(state)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn illegal_events_apply_except_in_the_three_cases() {
        // Illegal but applied: provisioned from requested moves to active.
        let s = step::<ProjectMachine>(Some(ProjectState::Requested), ProjectEvent::Provisioned);
        assert_eq!(s, Step { legal: false, applies: true, next: Some(ProjectState::Active), entered: true });
        // Same-state target: illegal, applied, not re-entered.
        let s = step::<ProjectMachine>(Some(ProjectState::Provisioning), ProjectEvent::ProvisioningStarted);
        assert_eq!(
            s,
            Step { legal: false, applies: true, next: Some(ProjectState::Provisioning), entered: false }
        );
        // Terminal: nothing.
        let s = step::<ProjectMachine>(Some(ProjectState::Deleted), ProjectEvent::Requested);
        assert!(!s.legal && !s.applies);
        // Creation for an existing entity: nothing.
        let s = step::<AccountMachine>(Some(AccountState::Active), AccountEvent::Created);
        assert!(!s.legal && !s.applies);
        // State-keeping event for a missing entity: nothing.
        let s = step::<AccountMachine>(None, AccountEvent::PlanChanged);
        assert!(!s.legal && !s.applies && s.next.is_none());
        // Moving event for a missing entity: illegal, creates it.
        let s = step::<DisputeMachine>(None, DisputeEvent::Responded);
        assert_eq!(
            s,
            Step { legal: false, applies: true, next: Some(DisputeState::Responded), entered: true }
        );
        // Creation from nothing is legal.
        assert!(step::<DisputeMachine>(None, DisputeEvent::Opened).legal);
    }

    #[test]
    fn state_names_round_trip() {
        for state in State::all() {
            assert_eq!(State::parse(state.entity_type(), state.as_str()), Some(state));
        }
        let mut indexes: Vec<usize> = State::all().map(State::index).collect();
        indexes.dedup();
        assert_eq!(indexes, (0..State::COUNT).collect::<Vec<_>>());
    }
}
