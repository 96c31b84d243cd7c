//! Incident kinds, severities and the incident record of SPEC.md section 4.

use serde::{Deserialize, Serialize};

use strum::Display;

use crate::event::EntityType;
use crate::names::{name_methods, named_enum};
use crate::time::Timestamp;

named_enum! {
    /// What kind of trouble an incident reports.
    #[derive(Serialize, Deserialize, Display)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    #[serde(rename_all = "snake_case")]
    #[allow(missing_docs)]
    pub enum IncidentKind {
        Stuck,
        ProvisioningFailed,
        OnboardingFailed,
        QuotaBreach,
        BillingDispute,
        IllegalTransition,
        InvariantViolation,
        RegionalOutage,
    }
}

named_enum! {
    /// PagerDuty's severity scale, most severe first.
    #[derive(Serialize, Deserialize, Display)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    #[serde(rename_all = "snake_case")]
    #[allow(missing_docs)]
    pub enum Severity {
        Critical,
        Error,
        Warning,
        Info,
    }
}

named_enum! {
    /// What an incident is about: an account, project or dispute, or a region.
    #[derive(Serialize, Deserialize, Display)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    #[serde(rename_all = "snake_case")]
    #[allow(missing_docs)]
    pub enum SubjectType {
        Account,
        Project,
        Dispute,
        Region,
    }
}

named_enum! {
    /// Whether an incident is still open.
    #[derive(Serialize, Deserialize, Display)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    #[serde(rename_all = "snake_case")]
    #[allow(missing_docs)]
    pub enum Status {
        Open,
        Resolved,
    }
}

/// The `entity` member of a record.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EntityRecord {
    /// `account`, `project`, `dispute` or `region`.
    #[serde(rename = "type")]
    pub entity_type: SubjectType,
    /// The entity id (the region name for a region).
    pub id: String,
}

/// The incident record of SPEC.md section 4: the same in command output, the
/// HTTP API and NATS messages.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IncidentRecord {
    /// Stable id: the same input always gives the same ids.
    pub id: String,
    /// The dedup key: while an incident with this key is open, the same
    /// condition adds to it.
    pub key: String,
    /// What kind of trouble.
    pub kind: IncidentKind,
    /// How bad.
    pub severity: Severity,
    /// Open or resolved.
    pub status: Status,
    /// What it is about.
    pub entity: EntityRecord,
    /// The account concerned, when known.
    pub account_id: Option<String>,
    /// The region concerned, when known.
    pub region: Option<String>,
    /// For `stuck`, the state it is stuck in; for `illegal_transition`, the
    /// state the first illegal event arrived in (`null` for a missing entity).
    pub state: Option<String>,
    /// The team that owns it.
    pub owner: String,
    /// The runbook to follow.
    pub runbook: String,
    /// When the condition began, in event time.
    pub opened_at: Timestamp,
    /// When it ended, in event time.
    pub resolved_at: Option<Timestamp>,
    /// One line for people.
    pub summary: String,
    /// How many times the condition was raised while open.
    pub count: u32,
    /// Ids of the events that raised it (the first [`MAX_RECORD_EVENTS`]).
    #[cfg_attr(
        feature = "schema",
        schemars(
            description = "Ids of the first events that raised it (count stays exact beyond maxItems).",
            length(max = MAX_RECORD_EVENTS)
        )
    )]
    pub events: Vec<String>,
}

/// How many event ids a record lists at most; `count` stays exact beyond.
pub const MAX_RECORD_EVENTS: usize = 100;

/// The most bytes of event-supplied text a record field keeps before the cut
/// marker. SPEC puts no length limit on `data` strings (an `account_id` or a
/// `region` of half a megabyte is a valid event), and a record copies them,
/// its summary sometimes twice: cut here, every path that shows or sends a
/// record (replay, the store, NATS, the tables) gets the same bounded record,
/// while the event log keeps the event whole.
pub const MAX_RECORD_TEXT: usize = 1024;

/// `text` when it is at most `cap` bytes; else its first `cap` bytes (cut on
/// a character boundary) followed by `…[cut from N bytes]`, N the original
/// length. The one cut rule of records and of bounded NATS messages.
pub fn cut_text(text: &mut String, cap: usize) {
    if text.len() > cap {
        let length = text.len();
        text.truncate(text.floor_char_boundary(cap));
        text.push_str(&format!("…[cut from {length} bytes]"));
    }
}

named_enum! {
    /// How an incident changed, as published on NATS and kept in the store.
    #[derive(Serialize, Deserialize, Display)]
    #[serde(rename_all = "snake_case")]
    pub enum Transition {
        /// A new incident.
        Opened,
        /// An open incident got another event, or its times changed.
        Updated,
        /// It ended.
        Resolved,
        /// A resolved incident became open again (a regional outage whose count
        /// rose again once late evidence arrived).
        Reopened,
        /// It no longer exists: late evidence merged it into another regional
        /// outage, or showed that a visit the clock had called stuck ended by its
        /// deadline. Consumers should drop it.
        Retracted,
        /// A person acknowledged it (`lifewatch ack`): its escalation stops.
        Acknowledged,
        /// Nobody acknowledged it within a step of its owner's escalation
        /// chain: that step's targets are told.
        Escalated,
    }
}

name_methods!(IncidentKind, Severity, SubjectType, Status, Transition);

/// The one mapping from what the engine tracks to what a record is about.
impl From<EntityType> for SubjectType {
    fn from(entity_type: EntityType) -> SubjectType {
        match entity_type {
            EntityType::Account => SubjectType::Account,
            EntityType::Project => SubjectType::Project,
            EntityType::Dispute => SubjectType::Dispute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records are serialized by serde and the names printed and stored
    /// come from strum: both must say the same.
    #[test]
    fn strum_names_are_serde_names() {
        fn check<T: Serialize + Copy>(all: &[T], as_str: fn(T) -> &'static str) {
            for &value in all {
                let json = serde_json::to_string(&value).unwrap_or_default();
                assert_eq!(json, format!("\"{}\"", as_str(value)));
            }
        }
        check(&IncidentKind::ALL, IncidentKind::as_str);
        check(&Severity::ALL, Severity::as_str);
        check(&SubjectType::ALL, SubjectType::as_str);
        check(&Status::ALL, Status::as_str);
        check(&Transition::ALL, Transition::as_str);
        assert_eq!(IncidentKind::parse("quota_breach"), Some(IncidentKind::QuotaBreach));
        assert_eq!(IncidentKind::parse("QuotaBreach"), None);
        assert_eq!(SubjectType::from(EntityType::Dispute), SubjectType::Dispute);
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_with_its_length() {
        let mut short = "é".repeat(10);
        cut_text(&mut short, 20);
        assert_eq!(short, "é".repeat(10), "20 bytes fit");
        // 'é' is two bytes: a cut after "a" at 1,024 bytes must step back to 1,023.
        let mut long = format!("a{}", "é".repeat(600));
        cut_text(&mut long, MAX_RECORD_TEXT);
        assert_eq!(long, format!("a{}…[cut from 1201 bytes]", "é".repeat(511)));
        let mut huge = "a".repeat(530_000);
        cut_text(&mut huge, MAX_RECORD_TEXT);
        assert!(huge.len() < MAX_RECORD_TEXT + 32 && huge.ends_with("…[cut from 530000 bytes]"));
    }
}
