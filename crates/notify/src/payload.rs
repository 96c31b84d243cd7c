//! What each channel sends for one incident transition: pure functions from
//! the record to the receiver's JSON, so that every payload is tested
//! without a network. Strings that came from events are bounded before they
//! go into a message (Slack and PagerDuty refuse oversized fields).

use serde_json::{Value, json};

/// The incident record as the channels see it (the contract's record, as
/// JSON: this crate does not depend on the engine).
pub type Record = Value;

/// Slack's limit on a section block's text.
pub const SLACK_SECTION_TEXT: usize = 3_000;
/// Slack's limit on the blocks of one message.
pub const SLACK_MAX_BLOCKS: usize = 50;
/// PagerDuty's limit on `payload.summary`.
pub const PAGERDUTY_SUMMARY: usize = 1_024;

/// Links a message carries, and what it reports besides the record.
#[derive(Clone, Debug, Default)]
pub struct Links {
    /// The incident's page on the dashboard, when the dashboard's URL is configured.
    pub incident: Option<String>,
    /// The runbook (a URL, or the path in the operations package).
    pub runbook: Option<String>,
    /// For a regional outage: the incidents of its region held back while
    /// it was open (not sent on their own).
    pub held_back: Vec<String>,
    /// For an `escalated` transition, the step of the chain (from 1).
    pub escalation_step: Option<u32>,
    /// For a rate-limit summary: the deliveries it carries (see [`summary`]).
    pub summarised: Vec<Value>,
}

/// How many held-back incident ids a message lists (the count stays exact).
pub const HELD_BACK_LISTED: usize = 50;

/// `text` cut to at most `max` characters, with `…` when cut.
pub fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if text.chars().count() > max => format!("{}…", &text[..end]),
        _ => text.to_string(),
    }
}

fn field<'a>(record: &'a Record, name: &str) -> &'a str {
    record.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The webhook body: `{"transition", "incident"}`, and for an outage that
/// held incidents back, `"held_back": {"count", "incidents"}`.
pub fn webhook_body(transition: &str, record: &Record, links: &Links) -> Value {
    let mut body = json!({ "transition": transition, "incident": record });
    if let Some(step) = links.escalation_step {
        body["escalation"] = json!({ "step": step });
    }
    if !links.summarised.is_empty() {
        body["summarised"] = json!({
            "count": links.summarised.len(),
            "items": links.summarised.iter().take(SUMMARY_LISTED).collect::<Vec<_>>(),
        });
    }
    if !links.held_back.is_empty() {
        body["held_back"] = held_back(links);
    }
    body
}

fn held_back(links: &Links) -> Value {
    json!({
        "count": links.held_back.len(),
        "incidents": links.held_back.iter().take(HELD_BACK_LISTED).collect::<Vec<_>>(),
    })
}

/// A Slack incoming-webhook message: a one-line `text` (the notification
/// preview) and Block Kit blocks with severity, entity, owner, summary and
/// the links, every text within Slack's limits.
pub fn slack_message(transition: &str, record: &Record, links: &Links) -> Value {
    let severity = field(record, "severity").to_uppercase();
    let kind = field(record, "kind");
    let entity = format!(
        "{} {}",
        record.pointer("/entity/type").and_then(Value::as_str).unwrap_or(""),
        bounded(record.pointer("/entity/id").and_then(Value::as_str).unwrap_or(""), 200)
    );
    let summary = bounded(field(record, "summary"), 1_000);
    let text = bounded(&format!("[{severity}] {kind} {transition}: {summary}"), 300);
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{severity}")}),
        json!({"type": "mrkdwn", "text": format!("*Owner*\n{}", bounded(field(record, "owner"), 200))}),
        json!({"type": "mrkdwn", "text": format!("*Entity*\n{entity}")}),
        json!({"type": "mrkdwn", "text": format!("*Transition*\n{transition}")}),
    ];
    if let Some(region) = record.get("region").and_then(Value::as_str) {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Region*\n{}", bounded(region, 200))}));
    }
    let mut link_lines = Vec::new();
    if let Some(incident) = &links.incident {
        link_lines.push(format!("<{incident}|Dashboard>"));
    }
    if let Some(runbook) = &links.runbook {
        link_lines.push(format!("Runbook: {}", bounded(runbook, 500)));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": bounded(&format!("{severity} {kind}"), 150)}}),
        json!({"type": "section", "text": {"type": "plain_text", "text": bounded(&summary, SLACK_SECTION_TEXT)}}),
        json!({"type": "section", "fields": fields}),
    ];
    if !links.held_back.is_empty() {
        let listed: Vec<&str> = links.held_back.iter().take(HELD_BACK_LISTED).map(String::as_str).collect();
        let text = format!(
            "{} incidents of this region held back while it lasts: {}",
            links.held_back.len(),
            listed.join(", ")
        );
        blocks.push(json!({"type": "section", "text": {"type": "plain_text", "text": bounded(&text, SLACK_SECTION_TEXT)}}));
    }
    if !link_lines.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": bounded(&link_lines.join("\n"), SLACK_SECTION_TEXT)}}));
    }
    json!({ "text": text, "blocks": blocks })
}

/// The PagerDuty Events API v2 event: `trigger` for opened, reopened and
/// updated (an update of an open alert), `acknowledge`, `resolve` for
/// resolved and retracted; `dedup_key` is the incident's key, so every
/// transition of one incident is one alert.
pub fn pagerduty_event(routing_key: &str, transition: &str, record: &Record, links: &Links) -> Value {
    let event_action = match transition {
        "acknowledged" => "acknowledge",
        "resolved" | "retracted" => "resolve",
        _ => "trigger",
    };
    let severity = match field(record, "severity") {
        severity @ ("critical" | "error" | "warning" | "info") => severity,
        _ => "error",
    };
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": event_action,
        "dedup_key": bounded(field(record, "key"), 255),
        "client": "lifewatch",
        "payload": {
            "summary": bounded(field(record, "summary"), PAGERDUTY_SUMMARY),
            "source": bounded(record.pointer("/entity/id").and_then(Value::as_str).unwrap_or("lifewatch"), 255),
            "severity": severity,
            "component": record.pointer("/entity/type").and_then(Value::as_str).unwrap_or(""),
            "group": bounded(field(record, "owner"), 255),
            "class": field(record, "kind"),
            "timestamp": field(record, "opened_at"),
            "custom_details": { "transition": transition, "incident": record },
        },
    });
    if !links.held_back.is_empty() {
        event["payload"]["custom_details"]["held_back"] = held_back(links);
    }
    let mut pagerduty_links = Vec::new();
    if let Some(incident) = &links.incident {
        event["client_url"] = json!(incident);
        pagerduty_links.push(json!({"href": incident, "text": "Dashboard"}));
    }
    if let Some(runbook) = links.runbook.as_ref().filter(|runbook| runbook.starts_with("http")) {
        pagerduty_links.push(json!({"href": runbook, "text": "Runbook"}));
    }
    if !pagerduty_links.is_empty() {
        event["links"] = json!(pagerduty_links);
    }
    event
}

/// How many deliveries a rate-limit summary lists (the count stays exact).
pub const SUMMARY_LISTED: usize = 50;

/// One delivery a summary carries: `{delivery, incident, transition, kind,
/// severity, summary}`.
pub fn summary_item(delivery: i64, transition: &str, record: &Record) -> Value {
    json!({
        "delivery": delivery,
        "incident": field(record, "id"),
        "transition": transition,
        "kind": field(record, "kind"),
        "severity": field(record, "severity"),
        "summary": bounded(field(record, "summary"), 300),
    })
}

/// The record of a rate-limit summary of `channel`: a stand-in incident
/// (`kind` `summary`) whose severity is the most severe of its items and
/// whose summary lists them, so that every channel kind renders it as it
/// renders an incident. Sent with the transition `summary`.
pub fn summary(channel: &str, per_minute: u32, items: &[Value]) -> Record {
    let order = ["critical", "error", "warning", "info"];
    let severity = items
        .iter()
        .filter_map(|item| item.get("severity").and_then(Value::as_str))
        .filter_map(|severity| order.iter().position(|known| *known == severity))
        .min()
        .map_or("info", |index| order[index]);
    let listed: Vec<String> = items
        .iter()
        .take(SUMMARY_LISTED)
        .map(|item| {
            format!(
                "[{}] {} {}: {}",
                field(item, "severity").to_uppercase(),
                field(item, "kind"),
                field(item, "transition"),
                field(item, "summary")
            )
        })
        .collect();
    let text = format!(
        "{} notifications held back by the limit of {per_minute} a minute: {}",
        items.len(),
        listed.join("; ")
    );
    json!({
        "id": "summary", "key": "lifewatch:summary", "kind": "summary", "severity": severity,
        "status": "open", "entity": {"type": "channel", "id": channel}, "account_id": null,
        "region": null, "state": null, "owner": "lifewatch", "runbook": "",
        "opened_at": null, "resolved_at": null, "summary": bounded(&text, 3_000),
        "count": items.len(), "events": []
    })
}

/// An email notification: a one-line subject and the same facts as plain
/// text and as HTML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// The subject: no line breaks, at most 200 characters.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body (every value escaped).
    pub html: String,
}

/// Text from an event for a one-line place: control characters (line
/// breaks included, which would start a new header) become spaces.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The email of one transition.
pub fn email(transition: &str, record: &Record, links: &Links) -> Email {
    let severity = field(record, "severity").to_uppercase();
    let kind = field(record, "kind");
    let entity_type = record.pointer("/entity/type").and_then(Value::as_str).unwrap_or("");
    let entity_id =
        bounded(&one_line(record.pointer("/entity/id").and_then(Value::as_str).unwrap_or("")), 200);
    let summary = bounded(field(record, "summary"), 2_000);
    let step = links.escalation_step.map(|step| format!(" (step {step})")).unwrap_or_default();
    let subject =
        bounded(&one_line(&format!("[lifewatch] {severity} {kind} {transition}{step}: {summary}")), 200);
    let mut rows: Vec<(&str, String)> = vec![
        ("Transition", format!("{transition}{step}")),
        ("Severity", severity.clone()),
        ("Kind", kind.to_string()),
        ("Entity", format!("{entity_type} {entity_id}")),
        ("Owner", bounded(&one_line(field(record, "owner")), 200)),
        ("Status", field(record, "status").to_string()),
        ("Opened", field(record, "opened_at").to_string()),
        ("Incident", field(record, "id").to_string()),
    ];
    if let Some(region) = record.get("region").and_then(Value::as_str) {
        rows.push(("Region", bounded(&one_line(region), 200)));
    }
    if let Some(account) = record.get("account_id").and_then(Value::as_str) {
        rows.push(("Account", bounded(&one_line(account), 200)));
    }
    if let Some(runbook) = &links.runbook {
        rows.push(("Runbook", bounded(runbook, 500)));
    }
    if let Some(incident) = &links.incident {
        rows.push(("Dashboard", incident.clone()));
    }
    let held: Vec<&str> = links.held_back.iter().take(HELD_BACK_LISTED).map(String::as_str).collect();
    let mut text = format!("{summary}\n\n");
    for (name, value) in &rows {
        text.push_str(&format!("{name}: {value}\n"));
    }
    if !held.is_empty() {
        text.push_str(&format!(
            "\n{} incidents of this region held back while the outage lasts: {}\n",
            links.held_back.len(),
            held.join(", ")
        ));
    }
    let html = maud::html! {
        p { (summary) }
        table {
            @for (name, value) in &rows {
                tr {
                    th style="text-align:left;padding-right:1em" { (name) }
                    td {
                        @if *name == "Dashboard" { a href=(value) { (value) } } @else { (value) }
                    }
                }
            }
        }
        @if !held.is_empty() {
            p { (links.held_back.len()) " incidents of this region held back while the outage lasts: " (held.join(", ")) }
        }
    }
    .into_string();
    Email { subject, text, html }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(summary: &str) -> Record {
        json!({
            "id": "inc_1", "key": "stuck:project:prj_1:provisioning", "kind": "stuck", "severity": "error",
            "status": "open", "entity": {"type": "project", "id": "prj_1"}, "account_id": "acc_1",
            "region": "eu-west-1", "state": "provisioning", "owner": "platform-oncall",
            "runbook": "ops/runbooks/stuck.md", "opened_at": "2026-11-27T12:15:00Z", "resolved_at": null,
            "summary": summary, "count": 1, "events": ["e1"]
        })
    }

    #[test]
    fn pagerduty_actions_follow_the_transition_and_one_incident_is_one_alert() {
        let links =
            Links { incident: Some("http://127.0.0.1:9464/incidents/inc_1".into()), ..Links::default() };
        let opened = pagerduty_event("rk", "opened", &record("s"), &links);
        let resolved = pagerduty_event("rk", "resolved", &record("s"), &links);
        let acknowledged = pagerduty_event("rk", "acknowledged", &record("s"), &links);
        assert_eq!(opened["event_action"], "trigger");
        assert_eq!(resolved["event_action"], "resolve");
        assert_eq!(acknowledged["event_action"], "acknowledge");
        assert_eq!(opened["dedup_key"], resolved["dedup_key"]);
        assert_eq!(opened["links"][0]["href"], "http://127.0.0.1:9464/incidents/inc_1");
    }

    #[test]
    fn an_email_escapes_html_and_keeps_the_subject_on_one_line() {
        let hostile = "<script>alert(1)</script>\r\nBcc: victim@example.com";
        let email =
            email("opened", &record(hostile), &Links { escalation_step: Some(2), ..Links::default() });
        assert!(!email.subject.contains('\n') && !email.subject.contains('\r'), "{}", email.subject);
        assert!(email.subject.starts_with("[lifewatch] ERROR stuck opened (step 2): "), "{}", email.subject);
        assert!(email.subject.chars().count() <= 200);
        assert!(!email.html.contains("<script>") && email.html.contains("&lt;script&gt;"), "{}", email.html);
        assert!(email.text.contains("Owner: platform-oncall") && email.text.contains(hostile));
    }

    #[test]
    fn slack_messages_stay_within_block_kit_limits() {
        let long = "x".repeat(20_000);
        let message = slack_message("opened", &record(&long), &Links::default());
        let blocks = message["blocks"].as_array().unwrap();
        assert!(blocks.len() <= SLACK_MAX_BLOCKS);
        for block in blocks {
            if let Some(text) = block.pointer("/text/text").and_then(Value::as_str) {
                assert!(text.chars().count() <= SLACK_SECTION_TEXT, "{}", text.len());
            }
        }
        assert!(message["text"].as_str().unwrap().chars().count() <= 300);
    }
}
