//! The wire form of incidents on NATS: the subject an incident is published
//! on and the message that carries it (SPEC.md section 6).
//!
//! This is the only place the incident subject is built, so that the store
//! (which queues it with each outbox entry) and the publisher cannot disagree
//! about it.

use std::borrow::Cow;

use serde_json::Value;

use crate::incident::{IncidentRecord, cut_text};

/// The largest incident message published as is. NATS refuses messages over
/// its `max_payload` (1 MiB by default), and SPEC puts no length limit on the
/// strings of event data, so a record can grow past it; a message over this
/// limit is published in its bounded form ([`bounded_message`]), well under
/// the server's default, leaving room for headers and a smaller server limit.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The longest token kept as it is; longer ones are cut and hashed. Entity ids
/// are at most this long (`MAX_SUBJECT_CHARS`), so every valid id is kept.
const MAX_TOKEN_CHARS: usize = 128;

/// How many characters of the original a cleaned token keeps before its hash.
const CLEANED_PREFIX_CHARS: usize = 64;

/// The token of an empty text. It holds `~`, which a kept token never does,
/// so it is nobody's id.
const EMPTY_TOKEN: &str = "~";

/// The subject of an incident message:
/// `incidents.<kind>.<entity type>.<entity id as a token>` (see [`subject_token`]).
pub fn incident_subject(record: &IncidentRecord) -> String {
    // Concatenated rather than `format!`ed: one subject is made per stored
    // transition, and the formatting machinery over strum's `Display` took
    // about 1,800 instructions a subject against 420 concatenated
    // (callgrind, `replay --db` of a 100,000-event stream).
    let (kind, entity_type) = (record.kind.as_str(), record.entity.entity_type.as_str());
    let token = subject_token(&record.entity.id);
    let mut subject = String::with_capacity(12 + kind.len() + entity_type.len() + token.len());
    for part in ["incidents.", kind, ".", entity_type, ".", &token] {
        subject.push_str(part);
    }
    subject
}

/// `text` as one NATS subject token, deterministically.
///
/// A text of 1 to 128 characters of `A-Z a-z 0-9 _ -` (every valid entity id)
/// is kept byte for byte. Anything else — a region name from event data with
/// spaces, dots, `*`, `>`, control or non-ASCII characters, or a very long
/// one — becomes its first 64 characters with every other character replaced
/// by `_`, then `~` and the 64-bit xxh3 hash of the whole original in hex.
/// The hash keeps two texts that clean to the same characters apart
/// ("eu west" and "eu.west"), and the `~` keeps a cleaned token apart from
/// any kept one ("eu_west" itself). An empty text is `~`.
pub fn subject_token(text: &str) -> Cow<'_, str> {
    if text.is_empty() {
        return Cow::Borrowed(EMPTY_TOKEN);
    }
    if text.len() <= MAX_TOKEN_CHARS && text.bytes().all(is_kept_byte) {
        return Cow::Borrowed(text);
    }
    let mut token: String = text
        .chars()
        .take(CLEANED_PREFIX_CHARS)
        .map(|c| if c.is_ascii() && is_kept_byte(c as u8) { c } else { '_' })
        .collect();
    token.push('~');
    token.push_str(&format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes())));
    Cow::Owned(token)
}

fn is_kept_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// The incident message of SPEC.md section 6, `{"transition": ..., "incident": <record>}`,
/// from the record's JSON.
pub fn incident_message(transition: &str, record_json: &str) -> String {
    format!("{{\"transition\":\"{transition}\",\"incident\":{record_json}}}")
}

/// The message of an `escalated` transition: `step` (from 1) of the
/// owner's escalation chain beside the transition.
pub fn escalation_message(step: u32, record_json: &str) -> String {
    format!("{{\"transition\":\"escalated\",\"escalation\":{{\"step\":{step}}},\"incident\":{record_json}}}")
}

/// Caps tried in turn by [`bounded_message`], from the mildest: the longest
/// string kept whole (in bytes) and the most event ids listed.
const CAPS: [(usize, usize); 5] = [(4_096, 100), (1_024, 20), (256, 5), (64, 1), (16, 0)];

/// `message` (an incident message) as it may be published: unchanged when it
/// is at most [`MAX_MESSAGE_BYTES`], otherwise in a bounded form that still
/// says what happened to which incident.
///
/// The bounded form cuts the incident's long strings (all but its `id`) with
/// a marker giving their full length in bytes, lists fewer `events` (`count`
/// stays exact), and says `"truncated": true` beside `transition`. It tries
/// milder cuts first. The full record stays in the store and the API. A
/// message that is not JSON is returned unchanged: the server then refuses
/// it and the publisher sets it aside.
pub fn bounded_message(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let Ok(Value::Object(parsed)) = serde_json::from_str::<Value>(&message) else { return message };
    let mut smallest = None;
    for (string_cap, events_cap) in CAPS {
        let mut bounded = parsed.clone();
        if let Some(Value::Object(incident)) = bounded.get_mut("incident") {
            for (name, value) in incident.iter_mut() {
                match (name.as_str(), value) {
                    ("id", _) => {}
                    ("events", Value::Array(events)) => {
                        events.truncate(events_cap);
                        events.iter_mut().for_each(|event| cut_strings(event, string_cap));
                    }
                    (_, value) => cut_strings(value, string_cap),
                }
            }
        }
        bounded.insert("truncated".to_string(), Value::Bool(true));
        let text = Value::Object(bounded).to_string();
        if text.len() <= MAX_MESSAGE_BYTES {
            return text;
        }
        smallest = Some(text);
    }
    smallest.unwrap_or(message)
}

/// Cuts every string in `value` longer than `cap` bytes to at most `cap`
/// bytes (on a character boundary), marked with the original length.
fn cut_strings(value: &mut Value, cap: usize) {
    match value {
        Value::String(text) => cut_text(text, cap),
        Value::Array(items) => items.iter_mut().for_each(|item| cut_strings(item, cap)),
        Value::Object(fields) => fields.values_mut().for_each(|field| cut_strings(field, cap)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{EntityRecord, IncidentKind, Severity, Status, SubjectType};
    use crate::time::Timestamp;

    fn record(entity_type: SubjectType, id: &str) -> IncidentRecord {
        IncidentRecord {
            id: "inc_0123456789abcdef".to_string(),
            key: format!("regional_outage:{id}"),
            kind: IncidentKind::RegionalOutage,
            severity: Severity::Critical,
            status: Status::Open,
            entity: EntityRecord { entity_type, id: id.to_string() },
            account_id: None,
            region: Some(id.to_string()),
            state: None,
            owner: "platform-oncall".to_string(),
            runbook: "ops/runbooks/regional_outage.md".to_string(),
            opened_at: Timestamp::from_unix_nanos(0),
            resolved_at: None,
            summary: format!("5 projects failed in region {id}"),
            count: 5,
            events: vec!["e1".to_string()],
        }
    }

    /// What NATS accepts as one token of a published subject, ASCII only.
    fn is_valid_ascii_token(token: &str) -> bool {
        !token.is_empty()
            && token.bytes().all(|byte| byte.is_ascii_graphic() && !matches!(byte, b'.' | b'*' | b'>'))
    }

    #[test]
    fn valid_ids_are_kept_byte_for_byte() {
        for id in ["prj_42", "acc-7", "eu-west-1", "A", &"x".repeat(128)] {
            assert_eq!(subject_token(id), id);
        }
        assert_eq!(
            incident_subject(&record(SubjectType::Project, "prj_42")),
            "incidents.regional_outage.project.prj_42"
        );
    }

    #[test]
    fn region_names_become_valid_distinct_tokens() {
        let names = ["eu west", "eu.west", "eu_west", "eu*west", "a*b", "x>y", "é", "", " ", "eu\twest"];
        let tokens: Vec<String> = names.iter().map(|name| subject_token(name).into_owned()).collect();
        for (name, token) in names.iter().zip(&tokens) {
            assert!(is_valid_ascii_token(token), "{name:?} gave {token:?}");
            assert_eq!(subject_token(name), *token, "deterministic");
        }
        let mut distinct = tokens.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), tokens.len(), "no two names share a token: {tokens:?}");
        assert_eq!(tokens[2], "eu_west", "a valid name is kept");
        assert!(tokens[0].starts_with("eu_west~"), "{}", tokens[0]);
        assert_eq!(tokens[7], "~", "the empty name");
        let subject = incident_subject(&record(SubjectType::Region, "eu west"));
        assert_eq!(subject.split('.').count(), 4, "{subject}");
        assert!(subject.starts_with("incidents.regional_outage.region.eu_west~"), "{subject}");
    }

    #[test]
    fn long_names_are_cut_and_hashed() {
        let long = "r".repeat(129);
        let token = subject_token(&long);
        assert_eq!(token.len(), 64 + 1 + 16);
        assert_ne!(token, subject_token(&"r".repeat(130)));
        let huge = "é".repeat(300_000);
        assert!(subject_token(&huge).len() <= 81);
    }

    #[test]
    fn small_messages_are_kept() {
        let json = serde_json::to_string(&record(SubjectType::Region, "eu-west-1")).unwrap();
        let message = incident_message("opened", &json);
        assert_eq!(bounded_message(message.clone()), message);
        let value: Value = serde_json::from_str(&message).unwrap();
        assert_eq!(value["transition"], "opened");
        assert_eq!(value["incident"]["region"], "eu-west-1");
    }

    #[test]
    fn huge_messages_are_bounded_and_stay_valid_json() {
        let mut huge = record(SubjectType::Dispute, "dsp_1");
        let account = "a".repeat(530_000);
        huge.account_id = Some(account.clone());
        huge.summary = format!("dispute dsp_1 opened for account {account}");
        huge.events = (0..100).map(|n| format!("event-{n}-{}", "é".repeat(300))).collect();
        let message = incident_message("opened", &serde_json::to_string(&huge).unwrap());
        assert!(message.len() > 1 << 20);
        let bounded = bounded_message(message);
        assert!(bounded.len() <= MAX_MESSAGE_BYTES, "{} bytes", bounded.len());
        let value: Value = serde_json::from_str(&bounded).expect("valid JSON");
        assert_eq!(value["transition"], "opened");
        assert_eq!(value["truncated"], true);
        let incident = &value["incident"];
        assert_eq!(incident["id"], "inc_0123456789abcdef");
        assert_eq!(incident["count"], 5);
        assert_eq!(incident["entity"]["id"], "dsp_1");
        let account_id = incident["account_id"].as_str().unwrap();
        assert!(account_id.starts_with("aaaa") && account_id.ends_with("[cut from 530000 bytes]"));
        assert!(incident["events"].as_array().unwrap().len() <= 100);
        // Deserialises as a record again.
        serde_json::from_value::<IncidentRecord>(incident.clone()).expect("still a record");
    }

    #[test]
    fn many_mid_sized_strings_are_cut_further() {
        let mut wide = record(SubjectType::Region, "r");
        wide.events = (0..100).map(|n| format!("{n}-{}", "e".repeat(3_000))).collect();
        let bounded = bounded_message(incident_message("updated", &serde_json::to_string(&wide).unwrap()));
        assert!(bounded.len() <= MAX_MESSAGE_BYTES, "{} bytes", bounded.len());
        let value: Value = serde_json::from_str(&bounded).unwrap();
        assert!(value["incident"]["events"].as_array().unwrap().len() < 100);
    }
}
