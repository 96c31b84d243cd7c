//! JSON Schemas (draft 2020-12) of the event envelope, of each event type's
//! `data`, and of the incident record: the files under `schemas/` that
//! emitting services in other languages code against.
//!
//! Nothing here is written by hand twice. The `data` schemas come from
//! [`EventType::ALL`] and [`EventType::data_fields`] (names, JSON types and
//! descriptions), the very table the parser validates with; the envelope from the parser's constants ([`MAX_ID_BYTES`],
//! [`MAX_SUBJECT_CHARS`]); the incident record from its Rust type through
//! `schemars`. The root package's `tests/schemas.rs` fails when a checked-in
//! file differs from [`all_schemas`], and rewrites them when asked to.
//!
//! What JSON Schema cannot say, and the parser still rejects: an `id` longer
//! than 256 *bytes* but not 256 characters, numbers written with a fraction or
//! an exponent (`3.0`, `1e3`) where an integer is required, times inside the
//! first and last representable years but outside the exact range, and
//! duplicate member names.

use serde_json::{Map, Value, json};

use crate::event::{EventType, FieldType, MAX_ID_BYTES, MAX_SUBJECT_CHARS};
use crate::incident::IncidentRecord;

/// The dialect every generated schema declares.
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// An RFC 3339 date-time with a mandatory offset, as the parser reads it.
///
/// Digits are spelled `[0-9]` because `\d` matches any Unicode digit in many
/// regex engines. The year is limited to 1677..=2262, the years an instant in
/// nanoseconds since the epoch in an `i64` can reach (see `time.rs`); a test
/// below ties this to [`crate::Timestamp::MIN`] and [`crate::Timestamp::MAX`].
const TIME_PATTERN: &str = concat!(
    "^(167[7-9]|16[89][0-9]|1[7-9][0-9]{2}|2[01][0-9]{2}|22[0-5][0-9]|226[0-2])",
    "-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
);

/// Every generated schema with its path relative to `schemas/`, in a fixed
/// order: `event.schema.json`, `data/<type>.schema.json` for each type of
/// [`EventType::ALL`], then `incident.schema.json`.
pub fn all_schemas() -> Vec<(String, Value)> {
    let mut schemas = Vec::with_capacity(EventType::ALL.len() + 2);
    schemas.push(("event.schema.json".to_string(), event_schema()));
    for event_type in EventType::ALL {
        schemas.push((format!("data/{}.schema.json", event_type.as_str()), data_schema_file(event_type)));
    }
    schemas.push(("incident.schema.json".to_string(), incident_schema()));
    schemas
}

/// The text of a schema file: pretty-printed with two-space indents, object
/// members sorted by name (whether or not serde_json keeps insertion order in
/// this build), and a trailing newline.
pub fn schema_file_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(schema)).unwrap_or_else(|error| {
        // A `Value` has only string keys, so serializing it cannot fail.
        unreachable!("a serde_json::Value always serializes: {error}")
    });
    text.push('\n');
    text
}

/// The envelope of SPEC.md section 1, with the `data` schema of each type
/// embedded under `$defs` and applied by `if`/`then` on `type`, so that this
/// one schema validates a whole event.
fn event_schema() -> Value {
    let type_names: Vec<&str> = EventType::ALL.iter().map(|event_type| event_type.as_str()).collect();
    let per_type: Vec<Value> = EventType::ALL
        .iter()
        .map(|&event_type| {
            let name = event_type.as_str();
            let data = json!({ "$ref": format!("#/$defs/{name}") });
            let then = if event_type.data_fields().iter().any(|field| field.required) {
                json!({ "required": ["data"], "properties": { "data": data } })
            } else {
                json!({ "properties": { "data": data } })
            };
            json!({
                "if": { "required": ["type"], "properties": { "type": { "const": name } } },
                "then": then,
            })
        })
        .collect();
    let definitions: Map<String, Value> = EventType::ALL
        .iter()
        .map(|&event_type| (event_type.as_str().to_string(), data_schema(event_type)))
        .collect();
    json!({
        "$schema": DRAFT_2020_12,
        "title": "lifewatch lifecycle event",
        "description": "One lifecycle event: a CloudEvents 1.0 JSON object in structured mode (SPEC.md \
            section 1), one per line in a file. Members other than those listed are CloudEvents \
            extensions: kept but ignored. JSON null counts as absent. An event this schema rejects \
            is rejected by lifewatch with a named reason. Generated from lifewatch-core; do not edit.",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time"],
        "properties": {
            "specversion": {
                "description": "The CloudEvents version.",
                "const": "1.0",
            },
            "id": {
                "description": format!(
                    "The event id, unique per event: the idempotency key. At most {MAX_ID_BYTES} bytes \
                    of UTF-8; maxLength counts characters, so an id with non-ASCII characters can pass \
                    this schema and still be rejected as too long."
                ),
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_ID_BYTES,
            },
            "source": {
                "description": "The emitting service, e.g. cloud/provisioner.",
                "type": "string",
                "minLength": 1,
                "examples": ["cloud/provisioner"],
            },
            "type": {
                "description": "What happened: <entity type>.<event name> (SPEC.md section 2).",
                "enum": type_names,
            },
            "subject": {
                "description": format!(
                    "The entity id (account, project or dispute id): 1 to {MAX_SUBJECT_CHARS} characters \
                    of A-Z a-z 0-9 _ -."
                ),
                "type": "string",
                "pattern": format!("^[A-Za-z0-9_-]{{1,{MAX_SUBJECT_CHARS}}}$"),
                "examples": ["prj_42"],
            },
            "time": {
                "description": "When it happened: RFC 3339 with an offset (Z or +hh:mm / -hh:mm), \
                    compared as instants. Years 1677 to 2262 only (nanoseconds since 1970 in 64 bits).",
                "type": "string",
                "format": "date-time",
                "pattern": TIME_PATTERN,
                "examples": ["2026-11-27T12:00:00Z", "2026-11-27T13:00:00.250+01:00"],
            },
            "datacontenttype": {
                "description": "Optional; when present, application/json (null counts as absent).",
                "enum": ["application/json", null],
            },
            "data": {
                "description": "The fields of the event type (see $defs); may be absent or null when the \
                    type requires no field.",
                "type": ["object", "null"],
            },
        },
        "additionalProperties": true,
        "allOf": per_type,
        "$defs": definitions,
    })
}

/// `schemas/data/<type>.schema.json`: the `data` schema as a standalone file.
fn data_schema_file(event_type: EventType) -> Value {
    let mut schema = data_schema(event_type);
    if let Value::Object(members) = &mut schema {
        members.insert("$schema".to_string(), Value::from(DRAFT_2020_12));
    }
    schema
}

/// The schema of one type's `data`: its fields with their JSON types, the
/// required ones listed as such, optional ones nullable, extra fields allowed.
/// A type that requires no field also accepts a `null` (or absent) `data`.
fn data_schema(event_type: EventType) -> Value {
    let fields = event_type.data_fields();
    let required: Vec<&str> = fields.iter().filter(|field| field.required).map(|field| field.name).collect();
    let properties: Map<String, Value> = fields
        .iter()
        .map(|field| {
            let json_type = match field.field_type {
                FieldType::String => "string",
                FieldType::Integer => "integer",
                FieldType::Bool => "boolean",
            };
            let mut property = Map::new();
            property.insert("description".to_string(), Value::from(field.description));
            property.insert(
                "type".to_string(),
                if field.required { json!(json_type) } else { json!([json_type, "null"]) },
            );
            if field.field_type == FieldType::Integer {
                // The parser reads integers as i64; larger ones are rejected.
                property.insert("minimum".to_string(), Value::from(i64::MIN));
                property.insert("maximum".to_string(), Value::from(i64::MAX));
            }
            (field.name.to_string(), Value::Object(property))
        })
        .collect();
    let name = event_type.as_str();
    let mut description = format!("The data member of {name} events (SPEC.md section 2).");
    if required.is_empty() {
        description.push_str(" No field is required: data may be absent, null or any object.");
    } else {
        description.push_str(" Required fields must be present and not null.");
    }
    if fields.iter().any(|field| !field.required) {
        description.push_str(" Optional fields may be null, which counts as absent.");
    }
    if fields.iter().any(|field| field.field_type == FieldType::Integer) {
        description.push_str(" Integers must be written as JSON integers (3, not 3.0 or 3e0).");
    }
    description
        .push_str(" Extra fields are allowed and ignored. Generated from lifewatch-core; do not edit.");
    json!({
        "title": format!("data of {name}"),
        "description": description,
        "type": if required.is_empty() { json!(["object", "null"]) } else { json!("object") },
        "required": required,
        "properties": properties,
        "additionalProperties": true,
    })
}

/// `schemas/incident.schema.json`, derived from [`IncidentRecord`].
fn incident_schema() -> Value {
    let mut schema = schemars::schema_for!(IncidentRecord).to_value();
    unwrap_descriptions(&mut schema);
    if let Value::Object(members) = &mut schema {
        members.insert("title".to_string(), Value::from("lifewatch incident record"));
        members.insert(
            "description".to_string(),
            Value::from(
                "The incident record of SPEC.md section 4: the same in command output, the HTTP API and \
                NATS messages. Generated from lifewatch-core; do not edit.",
            ),
        );
    }
    schema
}

/// Joins the lines of every `description` that `schemars` took from a doc
/// comment, whose line breaks are only the source's wrapping.
fn unwrap_descriptions(value: &mut Value) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                match member {
                    Value::String(text) if name == "description" => *text = text.replace('\n', " "),
                    other => unwrap_descriptions(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// A copy of `value` whose objects have their members in name order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(members) => {
            let mut entries: Vec<(&String, &Value)> = members.iter().collect();
            entries.sort_by(|left, right| left.0.cmp(right.0));
            Value::Object(entries.into_iter().map(|(name, member)| (name.clone(), sorted(member))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    #[test]
    fn the_time_pattern_covers_exactly_the_representable_years() {
        assert!(Timestamp::MIN.to_string().starts_with("1677-"));
        assert!(Timestamp::MAX.to_string().starts_with("2262-"));
        assert!(TIME_PATTERN.starts_with("^(167[7-9]|"));
        assert!(TIME_PATTERN.contains("|226[0-2])-"));
    }

    #[test]
    fn every_type_has_a_data_schema_with_its_required_fields() {
        let schemas = all_schemas();
        assert_eq!(schemas.len(), EventType::ALL.len() + 2);
        for event_type in EventType::ALL {
            let path = format!("data/{}.schema.json", event_type.as_str());
            let (_, schema) = schemas.iter().find(|(name, _)| *name == path).unwrap();
            let required: Vec<&str> =
                schema["required"].as_array().unwrap().iter().map(|name| name.as_str().unwrap()).collect();
            let expected: Vec<&str> = event_type
                .data_fields()
                .iter()
                .filter(|field| field.required)
                .map(|field| field.name)
                .collect();
            assert_eq!(required, expected, "{event_type}");
            for field in event_type.data_fields() {
                assert!(schema["properties"][field.name].is_object(), "{event_type}.{}", field.name);
            }
        }
    }

    #[test]
    fn file_text_is_sorted_pretty_json_with_a_newline() {
        let text = schema_file_text(&json!({ "b": 1, "a": { "d": [true], "c": null } }));
        assert_eq!(
            text,
            "{\n  \"a\": {\n    \"c\": null,\n    \"d\": [\n      true\n    ]\n  },\n  \"b\": 1\n}\n"
        );
    }
}
