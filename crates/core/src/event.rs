//! Lifecycle events: the CloudEvents envelope, the event types of SPEC.md
//! section 2, and the parser that turns one line into an [`Event`] or a
//! [`Rejection`] with a named reason.
//!
//! The parser borrows from the input line wherever it can: attribute and data
//! strings without escapes are slices of the line, and only the fields the
//! engine needs are decoded into typed values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::time::Timestamp;

/// Lines longer than this are rejected as `too_large` without being parsed.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// The longest accepted event `id`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// The longest accepted `subject` (entity id), in characters.
pub const MAX_SUBJECT_CHARS: usize = 128;

/// The three kinds of entity whose lifecycle events lifewatch folds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum EntityType {
    /// A customer account (`account.*`).
    Account,
    /// A project inside an account (`project.*`).
    Project,
    /// A billing dispute (`dispute.*`).
    Dispute,
}

impl EntityType {
    /// Every entity type.
    pub const ALL: [EntityType; 3] = [EntityType::Account, EntityType::Project, EntityType::Dispute];

    /// The lowercase name used in event types, subjects and records.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Account => "account",
            EntityType::Project => "project",
            EntityType::Dispute => "dispute",
        }
    }

    /// The entity type of that name.
    pub fn parse(name: &str) -> Option<EntityType> {
        EntityType::ALL.into_iter().find(|entity_type| entity_type.as_str() == name)
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The events of the account machine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
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
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
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
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
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
    /// Every event type of SPEC.md section 2, in its order.
    pub const ALL: [EventType; 21] = [
        EventType::Account(AccountEvent::Created),
        EventType::Account(AccountEvent::Activated),
        EventType::Account(AccountEvent::OnboardingFailed),
        EventType::Account(AccountEvent::OnboardingRetried),
        EventType::Account(AccountEvent::Suspended),
        EventType::Account(AccountEvent::Reinstated),
        EventType::Account(AccountEvent::PlanChanged),
        EventType::Account(AccountEvent::Closed),
        EventType::Project(ProjectEvent::Requested),
        EventType::Project(ProjectEvent::ProvisioningStarted),
        EventType::Project(ProjectEvent::Provisioned),
        EventType::Project(ProjectEvent::ProvisioningFailed),
        EventType::Project(ProjectEvent::Suspended),
        EventType::Project(ProjectEvent::Resumed),
        EventType::Project(ProjectEvent::QuotaExceeded),
        EventType::Project(ProjectEvent::QuotaRestored),
        EventType::Project(ProjectEvent::DeletionRequested),
        EventType::Project(ProjectEvent::Deleted),
        EventType::Dispute(DisputeEvent::Opened),
        EventType::Dispute(DisputeEvent::Responded),
        EventType::Dispute(DisputeEvent::Closed),
    ];

    /// The full CloudEvents type, e.g. `project.provisioned`.
    pub fn as_str(self) -> &'static str {
        use AccountEvent as A;
        use DisputeEvent as D;
        use ProjectEvent as P;
        match self {
            EventType::Account(A::Created) => "account.created",
            EventType::Account(A::Activated) => "account.activated",
            EventType::Account(A::OnboardingFailed) => "account.onboarding_failed",
            EventType::Account(A::OnboardingRetried) => "account.onboarding_retried",
            EventType::Account(A::Suspended) => "account.suspended",
            EventType::Account(A::Reinstated) => "account.reinstated",
            EventType::Account(A::PlanChanged) => "account.plan_changed",
            EventType::Account(A::Closed) => "account.closed",
            EventType::Project(P::Requested) => "project.requested",
            EventType::Project(P::ProvisioningStarted) => "project.provisioning_started",
            EventType::Project(P::Provisioned) => "project.provisioned",
            EventType::Project(P::ProvisioningFailed) => "project.provisioning_failed",
            EventType::Project(P::Suspended) => "project.suspended",
            EventType::Project(P::Resumed) => "project.resumed",
            EventType::Project(P::QuotaExceeded) => "project.quota_exceeded",
            EventType::Project(P::QuotaRestored) => "project.quota_restored",
            EventType::Project(P::DeletionRequested) => "project.deletion_requested",
            EventType::Project(P::Deleted) => "project.deleted",
            EventType::Dispute(D::Opened) => "dispute.opened",
            EventType::Dispute(D::Responded) => "dispute.responded",
            EventType::Dispute(D::Closed) => "dispute.closed",
        }
    }

    /// The event type of that full name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|event_type| event_type.as_str() == name)
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

    /// The `data` fields this type carries: name, JSON type, and whether required.
    pub fn data_fields(self) -> &'static [DataFieldSpec] {
        use AccountEvent as A;
        use DisputeEvent as D;
        use FieldType::{Bool, Integer, String};
        use ProjectEvent as P;
        macro_rules! field {
            ($name:literal, $field_type:expr, $required:literal) => {
                DataFieldSpec { name: $name, field_type: $field_type, required: $required }
            };
        }
        match self {
            EventType::Account(A::Created) => {
                &[field!("plan", String, true), field!("region", String, false)]
            }
            EventType::Account(A::OnboardingFailed | A::Suspended) => &[field!("reason", String, true)],
            EventType::Account(A::PlanChanged) => &[field!("plan", String, true)],
            EventType::Project(P::Requested) => {
                &[field!("account_id", String, true), field!("region", String, true)]
            }
            EventType::Project(P::ProvisioningStarted) => &[field!("attempt", Integer, false)],
            EventType::Project(P::ProvisioningFailed) => {
                &[field!("error", String, true), field!("retryable", Bool, false)]
            }
            EventType::Project(P::QuotaExceeded) => &[
                field!("resource", String, true),
                field!("limit", Integer, true),
                field!("used", Integer, true),
            ],
            EventType::Project(P::QuotaRestored) => &[field!("resource", String, true)],
            EventType::Dispute(D::Opened) => &[
                field!("account_id", String, true),
                field!("amount_cents", Integer, true),
                field!("currency", String, true),
            ],
            EventType::Dispute(D::Closed) => &[field!("outcome", String, true)],
            _ => &[],
        }
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

/// Why an input was rejected. The names are part of the contract: they appear
/// in command output, the store and NATS subjects (`lifewatch.rejected.<reason>`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
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

impl RejectReason {
    /// Every reason.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::TooLarge,
        RejectReason::MalformedJson,
        RejectReason::MissingAttribute,
        RejectReason::InvalidAttribute,
        RejectReason::UnknownType,
        RejectReason::InvalidData,
        RejectReason::TimeInFuture,
        RejectReason::SubjectMismatch,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingAttribute => "missing_attribute",
            RejectReason::InvalidAttribute => "invalid_attribute",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::InvalidData => "invalid_data",
            RejectReason::TimeInFuture => "time_in_future",
            RejectReason::SubjectMismatch => "subject_mismatch",
        }
    }

    /// The reason of that name.
    pub fn parse(name: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|reason| reason.as_str() == name)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// Parses one line (without its newline) into an event, or says why not.
/// Never panics, whatever the bytes.
pub fn parse_event(line: &[u8]) -> Result<Event<'_>, Rejection> {
    if line.len() > MAX_LINE_BYTES {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!("line of {} bytes exceeds the limit of {MAX_LINE_BYTES}", line.len()),
        ));
    }
    // serde_json checks UTF-8 only in the strings it decodes, not in those it
    // skips (extensions, extra data fields), so the whole line is checked here:
    // JSON text is UTF-8, and a stored or forwarded event must be too.
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(error) => {
            return Err(Rejection::new(
                RejectReason::MalformedJson,
                format!("invalid UTF-8 at byte {}", error.valid_up_to()),
            ));
        }
    };
    // From `&str`, serde_json need not check UTF-8 again in every string.
    let mut scratch = Scratch::default();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = EnvelopeSeed(&mut scratch).deserialize(&mut deserializer).and_then(|()| deserializer.end());
    if let Err(error) = parsed {
        return Err(Rejection::new(RejectReason::MalformedJson, error.to_string()));
    }
    scratch.validate()
}

/// A JSON value as the parser sees it: strings borrowed, numbers classified,
/// containers skipped.
#[derive(Debug)]
enum Field<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    /// A number that is not an integer in the `i64` range.
    OtherNumber,
    Bool(bool),
    Array,
    Object,
}

impl Field<'_> {
    fn json_type(&self) -> &'static str {
        match self {
            Field::Null => "null",
            Field::Str(_) => "a string",
            Field::Int(_) => "an integer",
            Field::OtherNumber => "a non-integer or out-of-range number",
            Field::Bool(_) => "a boolean",
            Field::Array => "an array",
            Field::Object => "an object",
        }
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(value)))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(value.to_owned())))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(value)))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Field<'de>, E> {
        Ok(Field::Int(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Field<'de>, E> {
        Ok(i64::try_from(value).map_or(Field::OtherNumber, Field::Int))
    }
    fn visit_f64<E: de::Error>(self, _value: f64) -> Result<Field<'de>, E> {
        Ok(Field::OtherNumber)
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Field<'de>, E> {
        Ok(Field::Bool(value))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Object)
    }
}

impl<'de> de::Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

/// Names of the attributes the parser looks at; everything else is an extension.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Attribute {
    SpecVersion,
    Id,
    Source,
    Type,
    Subject,
    Time,
    DataContentType,
    Data,
    Extension,
}

const ATTRIBUTE_NAMES: [&str; 8] =
    ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"];

struct NameVisitor<'n>(&'n [&'static str]);

impl<'de> Visitor<'de> for NameVisitor<'_> {
    /// The index of the name in the list, or `usize::MAX` for any other.
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<usize, E> {
        // A `match` on the name compiles to length and byte comparisons, much
        // cheaper than comparing against each name in turn.
        let index = if self.0.len() == ATTRIBUTE_NAMES.len() {
            match value {
                "specversion" => 0,
                "id" => 1,
                "source" => 2,
                "type" => 3,
                "subject" => 4,
                "time" => 5,
                "datacontenttype" => 6,
                "data" => 7,
                _ => usize::MAX,
            }
        } else {
            data_field_index(value)
        };
        debug_assert!(index == usize::MAX || self.0[index] == value);
        Ok(index)
    }
}

struct Name<const DATA: bool>(usize);

impl<'de, const DATA: bool> de::Deserialize<'de> for Name<DATA> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names: &[&'static str] = if DATA { &DATA_FIELD_NAMES } else { &ATTRIBUTE_NAMES };
        deserializer.deserialize_str(NameVisitor(names)).map(Name)
    }
}

fn attribute_of(index: usize) -> Attribute {
    match index {
        0 => Attribute::SpecVersion,
        1 => Attribute::Id,
        2 => Attribute::Source,
        3 => Attribute::Type,
        4 => Attribute::Subject,
        5 => Attribute::Time,
        6 => Attribute::DataContentType,
        7 => Attribute::Data,
        _ => Attribute::Extension,
    }
}

/// The position of a `data` field name in [`DATA_FIELD_NAMES`], or
/// `usize::MAX`. A `match` compiles to length and byte comparisons, much
/// cheaper than comparing against each name in turn.
fn data_field_index(name: &str) -> usize {
    match name {
        "plan" => 0,
        "region" => 1,
        "reason" => 2,
        "account_id" => 3,
        "attempt" => 4,
        "error" => 5,
        "retryable" => 6,
        "resource" => 7,
        "limit" => 8,
        "used" => 9,
        "amount_cents" => 10,
        "currency" => 11,
        "outcome" => 12,
        _ => usize::MAX,
    }
}

/// Every `data` field name any event type uses.
const DATA_FIELD_NAMES: [&str; 13] = [
    "plan",
    "region",
    "reason",
    "account_id",
    "attempt",
    "error",
    "retryable",
    "resource",
    "limit",
    "used",
    "amount_cents",
    "currency",
    "outcome",
];

/// What the `data` member was.
#[derive(Clone, Copy, Debug, Default)]
enum DataShape {
    /// Absent or `null` (read as `{}`).
    #[default]
    Absent,
    /// An object; its known fields are in [`Scratch::data_fields`].
    Object,
    /// Something else.
    NotObject(&'static str),
}

/// Everything the parser keeps of one line before validation. It is filled
/// in place by the visitors below (a `DeserializeSeed` holds `&mut` to it), so
/// the several hundred bytes of fields are never moved around.
#[derive(Debug, Default)]
struct Scratch<'a> {
    /// `Some(what)` when the line is JSON but not an object.
    not_object: Option<&'static str>,
    attributes: [Option<Field<'a>>; 7],
    duplicate: Option<&'static str>,
    data: DataShape,
    data_fields: [Option<Field<'a>>; DATA_FIELD_NAMES.len()],
    data_duplicate: Option<&'static str>,
}

/// Fills [`Scratch::data_fields`] from a `data` object.
struct DataVisitor<'s, 'a>(&'s mut Scratch<'a>);

impl<'de> Visitor<'de> for DataVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let scratch = self.0;
        scratch.data = DataShape::Object;
        while let Some(Name(index)) = map.next_key::<Name<true>>()? {
            match scratch.data_fields.get_mut(index) {
                Some(slot) => {
                    let value: Field<'de> = map.next_value()?;
                    if slot.is_some() {
                        scratch.data_duplicate = Some(DATA_FIELD_NAMES[index]);
                    }
                    *slot = Some(value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.0.data = DataShape::NotObject("an array");
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _value: &str) -> Result<(), E> {
        self.0.data = DataShape::NotObject("a string");
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _value: i64) -> Result<(), E> {
        self.0.data = DataShape::NotObject("a number");
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _value: u64) -> Result<(), E> {
        self.0.data = DataShape::NotObject("a number");
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _value: f64) -> Result<(), E> {
        self.0.data = DataShape::NotObject("a number");
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _value: bool) -> Result<(), E> {
        self.0.data = DataShape::NotObject("a boolean");
        Ok(())
    }
}

/// `data` may be `null`, which reads as `{}`.
struct DataSeed<'s, 'a>(&'s mut Scratch<'a>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        struct NullOr<'s, 'a>(&'s mut Scratch<'a>);
        impl<'de> Visitor<'de> for NullOr<'_, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
                deserializer.deserialize_any(DataVisitor(self.0))
            }
        }
        deserializer.deserialize_option(NullOr(self.0))
    }
}

/// Fills a [`Scratch`] from the top-level value.
struct EnvelopeSeed<'s, 'a>(&'s mut Scratch<'a>);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(EnvelopeVisitor(self.0))
    }
}

struct EnvelopeVisitor<'s, 'a>(&'s mut Scratch<'a>);

impl<'de> Visitor<'de> for EnvelopeVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let scratch = self.0;
        let mut seen_data = false;
        while let Some(Name(index)) = map.next_key::<Name<false>>()? {
            match attribute_of(index) {
                Attribute::Extension => {
                    map.next_value::<IgnoredAny>()?;
                }
                Attribute::Data => {
                    if seen_data {
                        scratch.duplicate = Some("data");
                    }
                    seen_data = true;
                    map.next_value_seed(DataSeed(&mut *scratch))?;
                }
                _ => {
                    let value: Field<'de> = map.next_value()?;
                    let slot = &mut scratch.attributes[index];
                    if slot.is_some() {
                        scratch.duplicate = Some(ATTRIBUTE_NAMES[index]);
                    }
                    *slot = match value {
                        Field::Null => None,
                        other => Some(other),
                    };
                }
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.0.not_object = Some("an array");
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _value: &str) -> Result<(), E> {
        self.0.not_object = Some("a string");
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _value: i64) -> Result<(), E> {
        self.0.not_object = Some("a number");
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _value: u64) -> Result<(), E> {
        self.0.not_object = Some("a number");
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _value: f64) -> Result<(), E> {
        self.0.not_object = Some("a number");
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _value: bool) -> Result<(), E> {
        self.0.not_object = Some("a boolean");
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.not_object = Some("null");
        Ok(())
    }
}

fn missing(name: &str) -> Rejection {
    Rejection::new(RejectReason::MissingAttribute, format!("attribute {name:?} is missing"))
}

fn invalid(name: &str, why: impl fmt::Display) -> Rejection {
    Rejection::new(RejectReason::InvalidAttribute, format!("attribute {name:?} {why}"))
}

/// A required string attribute, borrowed when possible.
fn string_attribute<'a>(field: Option<Field<'a>>, name: &str) -> Result<Cow<'a, str>, Rejection> {
    match field {
        None => Err(missing(name)),
        Some(Field::Str(text)) => Ok(text),
        Some(other) => Err(invalid(name, format_args!("must be a string, not {}", other.json_type()))),
    }
}

/// Whether `subject` is 1 to 128 characters of `A-Z a-z 0-9 _ -`.
pub fn is_valid_entity_id(subject: &str) -> bool {
    /// `true` at the bytes an entity id may contain.
    const ALLOWED: [bool; 256] = {
        let mut table = [false; 256];
        let mut byte = 0;
        while byte < 256 {
            let b = byte as u8;
            table[byte] = b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
            byte += 1;
        }
        table
    };
    !subject.is_empty()
        && subject.len() <= MAX_SUBJECT_CHARS
        && subject.bytes().all(|byte| ALLOWED[usize::from(byte)])
}

impl<'a> Scratch<'a> {
    fn validate(&mut self) -> Result<Event<'a>, Rejection> {
        if let Some(what) = self.not_object {
            return Err(Rejection::new(
                RejectReason::MalformedJson,
                format!("an event must be a JSON object, not {what}"),
            ));
        }
        if let Some(name) = self.duplicate {
            return Err(invalid(name, "appears more than once"));
        }
        let [specversion, id, source, event_type, subject, time, datacontenttype] =
            std::mem::take(&mut self.attributes);

        let specversion = string_attribute(specversion, "specversion")?;
        if specversion != "1.0" {
            return Err(invalid("specversion", format_args!("must be \"1.0\", not {specversion:?}")));
        }
        let id = string_attribute(id, "id")?;
        if id.is_empty() {
            return Err(invalid("id", "must not be empty"));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(invalid(
                "id",
                format_args!("is {} bytes long; the limit is {MAX_ID_BYTES}", id.len()),
            ));
        }
        let source = string_attribute(source, "source")?;
        if source.is_empty() {
            return Err(invalid("source", "must not be empty"));
        }
        let type_name = string_attribute(event_type, "type")?;
        let event_type = EventType::parse(&type_name).ok_or_else(|| {
            Rejection::new(RejectReason::UnknownType, format!("unknown event type {type_name:?}"))
        })?;
        let subject = string_attribute(subject, "subject")?;
        if !is_valid_entity_id(&subject) {
            return Err(invalid(
                "subject",
                format_args!("{subject:?} must be 1 to 128 characters of A-Z a-z 0-9 _ -"),
            ));
        }
        let time_text = string_attribute(time, "time")?;
        let time = Timestamp::parse_rfc3339_with_reason(&time_text).map_err(|why| invalid("time", why))?;
        match datacontenttype {
            None => {}
            Some(Field::Str(content_type)) if content_type == "application/json" => {}
            Some(other) => {
                let shown = match &other {
                    Field::Str(text) => format!("{text:?}"),
                    other => other.json_type().to_string(),
                };
                return Err(invalid(
                    "datacontenttype",
                    format_args!("must be \"application/json\" when present, not {shown}"),
                ));
            }
        }
        let payload = validate_data(event_type, self)?;
        Ok(Event { id, source, event_type, subject, time, payload })
    }
}

fn invalid_data(detail: String) -> Rejection {
    Rejection::new(RejectReason::InvalidData, detail)
}

fn validate_data<'a>(event_type: EventType, scratch: &mut Scratch<'a>) -> Result<Payload<'a>, Rejection> {
    if let DataShape::NotObject(what) = scratch.data {
        return Err(invalid_data(format!("data must be a JSON object, not {what}")));
    }
    if let Some(name) = scratch.data_duplicate {
        return Err(invalid_data(format!("data field {name:?} appears more than once")));
    }
    let fields = &mut scratch.data_fields;
    // Check every field of the type, then build the payload from the checked values.
    for spec in event_type.data_fields() {
        let value = fields.get(data_field_index(spec.name)).unwrap_or(&None);
        let ok = match (value, spec.field_type) {
            (None | Some(Field::Null), _) => !spec.required,
            (Some(Field::Str(_)), FieldType::String)
            | (Some(Field::Int(_)), FieldType::Integer)
            | (Some(Field::Bool(_)), FieldType::Bool) => true,
            _ => false,
        };
        if !ok {
            let expected = match spec.field_type {
                FieldType::String => "a string",
                FieldType::Integer => "an integer",
                FieldType::Bool => "a boolean",
            };
            let detail = match value {
                None | Some(Field::Null) => {
                    format!("{event_type} needs data field {:?} ({expected})", spec.name)
                }
                Some(other) => format!(
                    "data field {:?} of {event_type} must be {expected}, not {}",
                    spec.name,
                    other.json_type()
                ),
            };
            return Err(invalid_data(detail));
        }
    }
    let mut take_string = |name: &str| -> Option<Cow<'a, str>> {
        match fields.get_mut(data_field_index(name))?.take() {
            Some(Field::Str(text)) => Some(text),
            _ => None,
        }
    };
    // Strings are taken first (they move out); integers and booleans are copied.
    use AccountEvent as A;
    use DisputeEvent as D;
    use ProjectEvent as P;
    fn string(value: Option<Cow<'_, str>>) -> Cow<'_, str> {
        value.unwrap_or_default()
    }
    let payload = match event_type {
        EventType::Account(A::Created) => {
            let plan = string(take_string("plan"));
            let region = take_string("region");
            Payload::AccountCreated { plan, region }
        }
        EventType::Account(A::OnboardingFailed) => {
            Payload::AccountOnboardingFailed { reason: string(take_string("reason")) }
        }
        EventType::Account(A::Suspended) => {
            Payload::AccountSuspended { reason: string(take_string("reason")) }
        }
        EventType::Account(A::PlanChanged) => {
            Payload::AccountPlanChanged { plan: string(take_string("plan")) }
        }
        EventType::Project(P::Requested) => {
            let account_id = string(take_string("account_id"));
            let region = string(take_string("region"));
            Payload::ProjectRequested { account_id, region }
        }
        EventType::Project(P::ProvisioningStarted) => {
            Payload::ProjectProvisioningStarted { attempt: integer(&fields[..], "attempt") }
        }
        EventType::Project(P::ProvisioningFailed) => {
            let error = string(take_string("error"));
            Payload::ProjectProvisioningFailed { error, retryable: boolean(&fields[..], "retryable") }
        }
        EventType::Project(P::QuotaExceeded) => {
            let resource = string(take_string("resource"));
            Payload::ProjectQuotaExceeded {
                resource,
                limit: integer(&fields[..], "limit").unwrap_or_default(),
                used: integer(&fields[..], "used").unwrap_or_default(),
            }
        }
        EventType::Project(P::QuotaRestored) => {
            Payload::ProjectQuotaRestored { resource: string(take_string("resource")) }
        }
        EventType::Dispute(D::Opened) => {
            let account_id = string(take_string("account_id"));
            let currency = string(take_string("currency"));
            Payload::DisputeOpened {
                account_id,
                amount_cents: integer(&fields[..], "amount_cents").unwrap_or_default(),
                currency,
            }
        }
        EventType::Dispute(D::Closed) => Payload::DisputeClosed { outcome: string(take_string("outcome")) },
        _ => Payload::None,
    };
    Ok(payload)
}

fn integer(fields: &[Option<Field<'_>>], name: &str) -> Option<i64> {
    match fields.get(data_field_index(name))? {
        Some(Field::Int(value)) => Some(*value),
        _ => None,
    }
}

fn boolean(fields: &[Option<Field<'_>>], name: &str) -> Option<bool> {
    match fields.get(data_field_index(name))? {
        Some(Field::Bool(value)) => Some(*value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(line: &str) -> RejectReason {
        parse_event(line.as_bytes()).unwrap_err().reason
    }

    const GOOD: &str = r#"{"specversion":"1.0","id":"e1","source":"cloud/provisioner","type":"project.requested","subject":"prj_1","time":"2026-11-27T12:00:00Z","data":{"account_id":"acc_1","region":"eu-west-1"}}"#;

    #[test]
    fn parses_a_good_event_borrowing_strings() {
        let event = parse_event(GOOD.as_bytes()).unwrap();
        assert_eq!(event.event_type, EventType::Project(ProjectEvent::Requested));
        assert!(matches!(event.id, Cow::Borrowed("e1")));
        assert_eq!(
            event.payload,
            Payload::ProjectRequested { account_id: "acc_1".into(), region: "eu-west-1".into() }
        );
        assert_eq!(event.nats_subject(), "lifecycle.project.prj_1.requested");
    }

    #[test]
    fn names_every_rejection() {
        let cases = [
            ("{", RejectReason::MalformedJson),
            ("[1,2]", RejectReason::MalformedJson),
            ("null", RejectReason::MalformedJson),
            (r#"{"id":"x"}"#, RejectReason::MissingAttribute),
            (
                &GOOD.replace(r#""specversion":"1.0""#, r#""specversion":"0.3""#),
                RejectReason::InvalidAttribute,
            ),
            (&GOOD.replace(r#""id":"e1""#, r#""id":null"#), RejectReason::MissingAttribute),
            (&GOOD.replace(r#""id":"e1""#, r#""id":"""#), RejectReason::InvalidAttribute),
            (&GOOD.replace(r#""id":"e1""#, r#""id":7"#), RejectReason::InvalidAttribute),
            (&GOOD.replace("project.requested", "project.exploded"), RejectReason::UnknownType),
            (&GOOD.replace("prj_1", "prj 1"), RejectReason::InvalidAttribute),
            (&GOOD.replace("2026-11-27T12:00:00Z", "yesterday"), RejectReason::InvalidAttribute),
            (&GOOD.replace(r#""region":"eu-west-1""#, r#""region":3"#), RejectReason::InvalidData),
            (&GOOD.replace(r#","region":"eu-west-1""#, ""), RejectReason::InvalidData),
            (
                &GOOD.replace(r#"{"account_id":"acc_1","region":"eu-west-1"}"#, "[]"),
                RejectReason::InvalidData,
            ),
            (
                &GOOD.replace(
                    r#""source":"cloud/provisioner","#,
                    r#""source":"cloud/provisioner","datacontenttype":"text/plain","#,
                ),
                RejectReason::InvalidAttribute,
            ),
            (&GOOD.replace(r#""id":"e1","#, r#""id":"e1","id":"e2","#), RejectReason::InvalidAttribute),
        ];
        for (line, expected) in cases {
            assert_eq!(reason(line), expected, "{line}");
        }
        assert_eq!(reason(&"x".repeat(MAX_LINE_BYTES + 1)), RejectReason::TooLarge);
        assert_eq!(parse_event(b"{\"id\":\"\xff\"}").unwrap_err().reason, RejectReason::MalformedJson);
        // Invalid UTF-8 in a value the parser skips (an extra data field) counts too.
        let skipped = GOOD.replace(r#""region":"eu-west-1""#, "\"region\":\"eu-west-1\",\"note\":\"\u{1}\"");
        let mut bytes = skipped.into_bytes();
        let position = bytes.iter().position(|&byte| byte == 1).unwrap();
        bytes[position] = 0xff;
        assert_eq!(parse_event(&bytes).unwrap_err().reason, RejectReason::MalformedJson);
    }

    #[test]
    fn integers_must_be_json_integers() {
        let line = |limit: &str| {
            format!(
                r#"{{"specversion":"1.0","id":"q","source":"s","type":"project.quota_exceeded","subject":"p","time":"2026-11-27T12:00:00Z","data":{{"resource":"cpu","limit":{limit},"used":5}}}}"#
            )
        };
        assert!(parse_event(line("3").as_bytes()).is_ok());
        for bad in ["3.0", "true", "\"3\"", "1e3", "99999999999999999999"] {
            assert_eq!(reason(&line(bad)), RejectReason::InvalidData, "{bad}");
        }
    }

    #[test]
    fn null_counts_as_absent() {
        let no_data = r#"{"specversion":"1.0","id":"a","source":"s","type":"account.activated","subject":"acc","time":"2026-11-27T12:00:00Z","data":null,"datacontenttype":null,"ext":{"x":[1]}}"#;
        assert_eq!(parse_event(no_data.as_bytes()).unwrap().payload, Payload::None);
        let optional_null = GOOD.replace(
            "project.requested\",\"subject\":\"prj_1\",\"time\":\"2026-11-27T12:00:00Z\",\"data\":{\"account_id\":\"acc_1\",\"region\":\"eu-west-1\"}",
            "account.created\",\"subject\":\"acc_1\",\"time\":\"2026-11-27T12:00:00Z\",\"data\":{\"plan\":\"free\",\"region\":null}",
        );
        assert_eq!(
            parse_event(optional_null.as_bytes()).unwrap().payload,
            Payload::AccountCreated { plan: "free".into(), region: None }
        );
    }
}
