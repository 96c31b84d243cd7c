//! The parser: one line into an [`Event`] or a [`Rejection`] with a named
//! reason. It borrows from the line wherever it can: attribute and data
//! strings without escapes are slices of the line, and only the members named
//! in the table of `fields.rs` are decoded into typed values.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::fields::{Attribute, DataField, Member};
use super::{
    AccountEvent, DisputeEvent, Event, EventType, FieldType, MAX_ID_BYTES, MAX_LINE_BYTES, MAX_SUBJECT_CHARS,
    Payload, ProjectEvent, RejectReason, Rejection,
};
use crate::time::Timestamp;

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

/// A member name: `Some` for a member of the table, `None` for any other.
struct MemberName<T>(Option<T>);

struct MemberNameVisitor<T>(PhantomData<T>);

impl<'de, T: Member> Visitor<'de> for MemberNameVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Option<T>, E> {
        Ok(T::from_name(value))
    }
}

impl<'de, T: Member> de::Deserialize<'de> for MemberName<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(MemberNameVisitor(PhantomData)).map(MemberName)
    }
}

/// How many attributes have a slot in [`Scratch::attributes`]: all but `data`.
const ATTRIBUTE_SLOTS: usize = Attribute::COUNT - 1;

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
    attributes: [Option<Field<'a>>; ATTRIBUTE_SLOTS],
    duplicate: Option<&'static str>,
    data: DataShape,
    data_fields: [Option<Field<'a>>; DataField::COUNT],
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
        while let Some(MemberName(field)) = map.next_key::<MemberName<DataField>>()? {
            match field {
                Some(field) => {
                    let value: Field<'de> = map.next_value()?;
                    let slot = &mut scratch.data_fields[field as usize];
                    if slot.is_some() {
                        scratch.data_duplicate = Some(field.name());
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
        while let Some(MemberName(attribute)) = map.next_key::<MemberName<Attribute>>()? {
            match attribute {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(Attribute::Data) => {
                    if seen_data {
                        scratch.duplicate = Some(Attribute::Data.name());
                    }
                    seen_data = true;
                    map.next_value_seed(DataSeed(&mut *scratch))?;
                }
                Some(attribute) => {
                    let value: Field<'de> = map.next_value()?;
                    let slot = &mut scratch.attributes[attribute as usize];
                    if slot.is_some() {
                        scratch.duplicate = Some(attribute.name());
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
        let value = DataField::from_name(spec.name).map_or(&None, |field| &fields[field as usize]);
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
    let mut take_string = |field: DataField| -> Option<Cow<'a, str>> {
        match fields[field as usize].take() {
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
            let plan = string(take_string(DataField::Plan));
            let region = take_string(DataField::Region);
            Payload::AccountCreated { plan, region }
        }
        EventType::Account(A::OnboardingFailed) => {
            Payload::AccountOnboardingFailed { reason: string(take_string(DataField::Reason)) }
        }
        EventType::Account(A::Suspended) => {
            Payload::AccountSuspended { reason: string(take_string(DataField::Reason)) }
        }
        EventType::Account(A::PlanChanged) => {
            Payload::AccountPlanChanged { plan: string(take_string(DataField::Plan)) }
        }
        EventType::Project(P::Requested) => {
            let account_id = string(take_string(DataField::AccountId));
            let region = string(take_string(DataField::Region));
            Payload::ProjectRequested { account_id, region }
        }
        EventType::Project(P::ProvisioningStarted) => {
            Payload::ProjectProvisioningStarted { attempt: integer(fields, DataField::Attempt) }
        }
        EventType::Project(P::ProvisioningFailed) => {
            let error = string(take_string(DataField::Error));
            Payload::ProjectProvisioningFailed { error, retryable: boolean(fields, DataField::Retryable) }
        }
        EventType::Project(P::QuotaExceeded) => {
            let resource = string(take_string(DataField::Resource));
            Payload::ProjectQuotaExceeded {
                resource,
                limit: integer(fields, DataField::Limit).unwrap_or_default(),
                used: integer(fields, DataField::Used).unwrap_or_default(),
            }
        }
        EventType::Project(P::QuotaRestored) => {
            Payload::ProjectQuotaRestored { resource: string(take_string(DataField::Resource)) }
        }
        EventType::Dispute(D::Opened) => {
            let account_id = string(take_string(DataField::AccountId));
            let currency = string(take_string(DataField::Currency));
            Payload::DisputeOpened {
                account_id,
                amount_cents: integer(fields, DataField::AmountCents).unwrap_or_default(),
                currency,
            }
        }
        EventType::Dispute(D::Closed) => {
            Payload::DisputeClosed { outcome: string(take_string(DataField::Outcome)) }
        }
        _ => Payload::None,
    };
    Ok(payload)
}

fn integer(fields: &[Option<Field<'_>>; DataField::COUNT], field: DataField) -> Option<i64> {
    match fields[field as usize] {
        Some(Field::Int(value)) => Some(value),
        _ => None,
    }
}

fn boolean(fields: &[Option<Field<'_>>; DataField::COUNT], field: DataField) -> Option<bool> {
    match fields[field as usize] {
        Some(Field::Bool(value)) => Some(value),
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
