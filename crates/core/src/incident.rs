//! Incident kinds, severities and the incident record of SPEC.md section 4.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// What kind of trouble an incident reports.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
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

impl IncidentKind {
    /// Every kind.
    pub const ALL: [IncidentKind; 8] = [
        IncidentKind::Stuck,
        IncidentKind::ProvisioningFailed,
        IncidentKind::OnboardingFailed,
        IncidentKind::QuotaBreach,
        IncidentKind::BillingDispute,
        IncidentKind::IllegalTransition,
        IncidentKind::InvariantViolation,
        IncidentKind::RegionalOutage,
    ];

    /// The snake_case name used in records, subjects and runbook file names.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Stuck => "stuck",
            IncidentKind::ProvisioningFailed => "provisioning_failed",
            IncidentKind::OnboardingFailed => "onboarding_failed",
            IncidentKind::QuotaBreach => "quota_breach",
            IncidentKind::BillingDispute => "billing_dispute",
            IncidentKind::IllegalTransition => "illegal_transition",
            IncidentKind::InvariantViolation => "invariant_violation",
            IncidentKind::RegionalOutage => "regional_outage",
        }
    }

    /// The kind of that name.
    pub fn parse(name: &str) -> Option<IncidentKind> {
        IncidentKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PagerDuty's severity scale, most severe first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    /// The severity of that name.
    pub fn parse(name: &str) -> Option<Severity> {
        [Severity::Critical, Severity::Error, Severity::Warning, Severity::Info]
            .into_iter()
            .find(|severity| severity.as_str() == name)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an incident is about: an account, project or dispute, or a region.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum SubjectType {
    Account,
    Project,
    Dispute,
    Region,
}

impl SubjectType {
    /// Every subject type.
    pub const ALL: [SubjectType; 4] =
        [SubjectType::Account, SubjectType::Project, SubjectType::Dispute, SubjectType::Region];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectType::Account => "account",
            SubjectType::Project => "project",
            SubjectType::Dispute => "dispute",
            SubjectType::Region => "region",
        }
    }

    /// The subject type of that name.
    pub fn parse(name: &str) -> Option<SubjectType> {
        SubjectType::ALL.into_iter().find(|subject| subject.as_str() == name)
    }
}

impl fmt::Display for SubjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an incident is still open.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Status {
    Open,
    Resolved,
}

impl Status {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Resolved => "resolved",
        }
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

/// How an incident changed, as published on NATS and kept in the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
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
}

impl Transition {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Opened => "opened",
            Transition::Updated => "updated",
            Transition::Resolved => "resolved",
            Transition::Reopened => "reopened",
            Transition::Retracted => "retracted",
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
