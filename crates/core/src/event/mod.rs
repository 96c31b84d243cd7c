//! Lifecycle events: the CloudEvents envelope, the event types of SPEC.md
//! section 2, the typed [`Payload`] of each, and [`Rejection`]s with their
//! named reasons. The parser that turns one line into an [`Event`] or a
//! [`Rejection`] is `parse.rs`; the one table of the members it reads (the
//! attributes, and the `data` fields of each event type) is `fields.rs`.

use std::borrow::Cow;
use std::fmt;

use strum::{Display, EnumCount, EnumString, IntoStaticStr, VariantArray};

use crate::names::{name_methods, named_enum};
use crate::time::Timestamp;

mod fields;
mod parse;

pub use parse::{is_valid_entity_id, parse_event};

/// Lines longer than this are rejected as `too_large` without being parsed.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// The longest accepted event `id`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// The longest accepted `subject` (entity id), in characters.
pub const MAX_SUBJECT_CHARS: usize = 128;

named_enum! {
    /// The three kinds of entity whose lifecycle events lifewatch folds.
    #[derive(Display)]
    pub enum EntityType {
        /// A customer account (`account.*`).
        Account,
        /// A project inside an account (`project.*`).
        Project,
        /// A billing dispute (`dispute.*`).
        Dispute,
    }
}

name_methods!(EntityType, RejectReason);

/// The events of the account machine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, IntoStaticStr, EnumString, VariantArray, EnumCount)]
#[strum(serialize_all = "snake_case", prefix = "account.")]
#[allow(missing_docs)]
pub enum AccountEvent {
    Created,
    Activated,
    OnboardingFailed,
    OnboardingRetried,
    Suspended,
    Reinstated,
    PlanChanged,
    Closed,
}

/// The events of the project machine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, IntoStaticStr, EnumString, VariantArray, EnumCount)]
#[strum(serialize_all = "snake_case", prefix = "project.")]
#[allow(missing_docs)]
pub enum ProjectEvent {
    Requested,
    ProvisioningStarted,
    Provisioned,
    ProvisioningFailed,
    Suspended,
    Resumed,
    QuotaExceeded,
    QuotaRestored,
    DeletionRequested,
    Deleted,
}

/// The events of the dispute machine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, IntoStaticStr, EnumString, VariantArray, EnumCount)]
#[strum(serialize_all = "snake_case", prefix = "dispute.")]
#[allow(missing_docs)]
pub enum DisputeEvent {
    Opened,
    Responded,
    Closed,
}

/// A CloudEvents `type`: which machine it drives, and which event of it.
/// A project event for an account cannot be expressed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum EventType {
    /// `account.*`
    Account(AccountEvent),
    /// `project.*`
    Project(ProjectEvent),
    /// `dispute.*`
    Dispute(DisputeEvent),
}

impl EventType {
    /// Every event type of SPEC.md section 2, in its order: the machines'
    /// events in declaration order, accounts, then projects, then disputes.
    pub const ALL: [EventType; 21] = {
        const ACCOUNT: usize = AccountEvent::VARIANTS.len();
        const PROJECT: usize = ProjectEvent::VARIANTS.len();
        let mut all = [EventType::Account(AccountEvent::Created); 21];
        assert!(ACCOUNT + PROJECT + DisputeEvent::VARIANTS.len() == 21, "21 event types");
        let mut index = 0;
        while index < 21 {
            all[index] = if index < ACCOUNT {
                EventType::Account(AccountEvent::VARIANTS[index])
            } else if index < ACCOUNT + PROJECT {
                EventType::Project(ProjectEvent::VARIANTS[index - ACCOUNT])
            } else {
                EventType::Dispute(DisputeEvent::VARIANTS[index - ACCOUNT - PROJECT])
            };
            index += 1;
        }
        all
    };

    /// The full CloudEvents type, e.g. `project.provisioned`: the machine's
    /// event name (`strum`'s snake_case) with the entity type as a prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Account(event) => event.into(),
            EventType::Project(event) => event.into(),
            EventType::Dispute(event) => event.into(),
        }
    }

    /// The event type of that full name. `strum`'s `EnumString` matches the
    /// event name without the prefix, so the entity type is split off first.
    pub fn parse(name: &str) -> Option<EventType> {
        let (entity, event) = name.split_once('.')?;
        match EntityType::parse(entity)? {
            EntityType::Account => event.parse().ok().map(EventType::Account),
            EntityType::Project => event.parse().ok().map(EventType::Project),
            EntityType::Dispute => event.parse().ok().map(EventType::Dispute),
        }
    }

    /// The entity type: the part of the name before the dot.
    pub fn entity_type(self) -> EntityType {
        match self {
            EventType::Account(_) => EntityType::Account,
            EventType::Project(_) => EntityType::Project,
            EventType::Dispute(_) => EntityType::Dispute,
        }
    }

    /// The event name: the part after the dot, as used in NATS subjects.
    pub fn event_name(self) -> &'static str {
        let full = self.as_str();
        full.split_once('.').map_or(full, |(_, name)| name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON type of a `data` field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FieldType {
    /// A JSON string.
    String,
    /// A JSON integer (no fraction, no exponent) that fits in 64 signed bits.
    Integer,
    /// `true` or `false`.
    Bool,
}

/// One field of an event type's `data`.
#[derive(Clone, Copy, Debug)]
pub struct DataFieldSpec {
    /// The field name inside `data`.
    pub name: &'static str,
    /// Its JSON type.
    pub field_type: FieldType,
    /// Whether an event without it is rejected.
    pub required: bool,
    /// What it means, for the schemas' readers.
    pub description: &'static str,
}

/// The typed `data` of an accepted event: exactly the fields its type defines.
#[derive(Clone, PartialEq, Eq, Debug)]
#[allow(missing_docs)]
pub enum Payload<'a> {
    /// Event types that carry no data.
    None,
    AccountCreated {
        plan: Cow<'a, str>,
        region: Option<Cow<'a, str>>,
    },
    AccountOnboardingFailed {
        reason: Cow<'a, str>,
    },
    AccountSuspended {
        reason: Cow<'a, str>,
    },
    AccountPlanChanged {
        plan: Cow<'a, str>,
    },
    ProjectRequested {
        account_id: Cow<'a, str>,
        region: Cow<'a, str>,
    },
    ProjectProvisioningStarted {
        attempt: Option<i64>,
    },
    ProjectProvisioningFailed {
        error: Cow<'a, str>,
        retryable: Option<bool>,
    },
    ProjectQuotaExceeded {
        resource: Cow<'a, str>,
        limit: i64,
        used: i64,
    },
    ProjectQuotaRestored {
        resource: Cow<'a, str>,
    },
    DisputeOpened {
        account_id: Cow<'a, str>,
        amount_cents: i64,
        currency: Cow<'a, str>,
    },
    DisputeClosed {
        outcome: Cow<'a, str>,
    },
}

/// An accepted, validated event. Strings borrow from the input line.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Event<'a> {
    /// The idempotency key.
    pub id: Cow<'a, str>,
    /// The emitting service.
    pub source: Cow<'a, str>,
    /// What happened.
    pub event_type: EventType,
    /// The entity id.
    pub subject: Cow<'a, str>,
    /// When it happened, in event time.
    pub time: Timestamp,
    /// The type's data fields.
    pub payload: Payload<'a>,
}

impl Event<'_> {
    /// The NATS subject this event belongs on:
    /// `lifecycle.<entity type>.<entity id>.<event name>`.
    pub fn nats_subject(&self) -> String {
        format!(
            "lifecycle.{}.{}.{}",
            self.event_type.entity_type(),
            self.subject,
            self.event_type.event_name()
        )
    }
}

named_enum! {
    /// Why an input was rejected. The names are part of the contract: they appear
    /// in command output, the store and NATS subjects (`lifewatch.rejected.<reason>`).
    #[derive(Display)]
    pub enum RejectReason {
        /// The line is longer than [`MAX_LINE_BYTES`].
        TooLarge,
        /// Not JSON, not UTF-8, or not a JSON object.
        MalformedJson,
        /// A required attribute is absent or `null`.
        MissingAttribute,
        /// An attribute has the wrong JSON type or a value outside its rule.
        InvalidAttribute,
        /// `type` is a string but names no event type of SPEC.md section 2.
        UnknownType,
        /// `data` is not an object, or lacks a required field, or has one of the wrong type.
        InvalidData,
        /// The event time is further in the future of the wall clock than allowed (live mode).
        TimeInFuture,
        /// The NATS subject the message arrived on disagrees with its payload.
        SubjectMismatch,
    }
}

/// A rejected input: the named reason and a sentence for the operator.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Rejection {
    /// The named reason.
    pub reason: RejectReason,
    /// What exactly was wrong, for people.
    pub detail: String,
}

impl Rejection {
    /// A rejection with this reason and detail.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Rejection {
        Rejection { reason, detail: detail.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_names_round_trip_and_keep_spec_order() {
        let names: Vec<&str> = EventType::ALL.iter().map(|event_type| event_type.as_str()).collect();
        assert_eq!(names[0], "account.created");
        assert_eq!(names[11], "project.provisioning_failed");
        assert_eq!(names[20], "dispute.closed");
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
            assert_eq!(
                event_type.as_str().split_once('.').map(|(entity, _)| entity),
                Some(event_type.entity_type().as_str())
            );
        }
        for name in ["", "account", "account.", "project.created", "account.created.x", "Account.created"] {
            assert_eq!(EventType::parse(name), None, "{name}");
        }
        assert_eq!(EventType::Project(ProjectEvent::QuotaExceeded).event_name(), "quota_exceeded");
        let reasons: Vec<&str> = RejectReason::ALL.iter().map(|reason| reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "too_large",
                "malformed_json",
                "missing_attribute",
                "invalid_attribute",
                "unknown_type",
                "invalid_data",
                "time_in_future",
                "subject_mismatch"
            ]
        );
    }
}
