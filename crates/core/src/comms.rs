//! Communication templates (`ops/comms/<name>.md`): what the status page,
//! support and customers are told about an incident. A file is Markdown:
//! each `## NAME` section is one template, its text up to the next section.
//! Placeholders are written `{{incident.id}}`; the set is fixed
//! ([`PLACEHOLDERS`]) and a name outside it is an error naming the file,
//! the template and the placeholder, so a typing mistake fails `check`
//! instead of reaching a customer. Rendering fills them from the incident
//! record and its counts ([`values`]); the text is plain, and each surface
//! escapes it its own way (HTML on the page, control characters in the
//! terminal). No IO: the caller reads the file.

use std::collections::BTreeMap;
use std::fmt;

use crate::incident::IncidentRecord;

/// The templates every incident kind's file must have.
pub const KIND_TEMPLATES: [&str; 6] = [
    "status-page: investigating",
    "status-page: identified",
    "status-page: monitoring",
    "status-page: resolved",
    "support-macro",
    "follow-up-email",
];

/// The comms files of the shipped package, for a reader away from a checkout.
pub const SHIPPED: [(&str, &str); 10] = [
    ("stuck", include_str!("../../../ops/comms/stuck.md")),
    ("provisioning_failed", include_str!("../../../ops/comms/provisioning_failed.md")),
    ("onboarding_failed", include_str!("../../../ops/comms/onboarding_failed.md")),
    ("quota_breach", include_str!("../../../ops/comms/quota_breach.md")),
    ("billing_dispute", include_str!("../../../ops/comms/billing_dispute.md")),
    ("illegal_transition", include_str!("../../../ops/comms/illegal_transition.md")),
    ("invariant_violation", include_str!("../../../ops/comms/invariant_violation.md")),
    ("regional_outage", include_str!("../../../ops/comms/regional_outage.md")),
    ("status-page", include_str!("../../../ops/comms/status-page.md")),
    ("internal-update", include_str!("../../../ops/comms/internal-update.md")),
];

/// Every placeholder a template may use, with what it holds.
pub const PLACEHOLDERS: [(&str, &str); 17] = [
    ("incident.id", "the incident's id"),
    ("incident.kind", "its kind, e.g. provisioning_failed"),
    ("incident.kind_text", "its kind in words, e.g. provisioning failure"),
    ("incident.severity", "critical, error, warning or info"),
    ("incident.status", "open or resolved"),
    ("incident.owner", "the owning team"),
    ("incident.entity_type", "account, project, dispute or region"),
    ("incident.entity_id", "the entity's id (the region's name for a region)"),
    ("incident.account_id", "the account concerned, or n/a"),
    ("incident.region", "the region concerned, or n/a"),
    ("incident.state", "the state it is stuck in (stuck), or n/a"),
    ("incident.opened_at", "when it began (RFC 3339, UTC)"),
    ("incident.resolved_at", "when it ended, or n/a while open"),
    ("incident.summary", "the record's one-line summary"),
    ("incident.runbook", "the runbook's path"),
    ("counts.events", "how many times the condition was raised while open"),
    (
        "counts.affected_projects",
        "for a regional outage, the projects of the region that failed or were stuck during it; else 1 for a project, 0 for other entities",
    ),
];

/// What is wrong with a comms file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommsError {
    /// A placeholder that is not one of [`PLACEHOLDERS`].
    UnknownPlaceholder {
        /// The template.
        template: String,
        /// The placeholder as written.
        placeholder: String,
    },
    /// `{{` without its `}}`.
    Unclosed {
        /// The template.
        template: String,
    },
    /// A template the file must have is missing.
    Missing {
        /// The template.
        template: String,
    },
    /// A template with no text.
    Empty {
        /// The template.
        template: String,
    },
    /// Two templates of one name.
    Duplicate {
        /// The template.
        template: String,
    },
}

impl fmt::Display for CommsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommsError::UnknownPlaceholder { template, placeholder } => write!(
                f,
                "template {template:?}: unknown placeholder {{{{{placeholder}}}}} (known: {})",
                PLACEHOLDERS.map(|(name, _)| name).join(", ")
            ),
            CommsError::Unclosed { template } => {
                write!(f, "template {template:?}: a `{{{{` without its `}}}}`")
            }
            CommsError::Missing { template } => write!(f, "no template {template:?}"),
            CommsError::Empty { template } => write!(f, "template {template:?} is empty"),
            CommsError::Duplicate { template } => write!(f, "two templates named {template:?}"),
        }
    }
}

/// One template: its name and text (with placeholders).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// Its name, the section's title.
    pub name: String,
    /// Its text, trimmed.
    pub text: String,
}

/// A rendered template.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rendered {
    /// The template's name.
    pub name: String,
    /// Its text with every placeholder filled.
    pub text: String,
}

/// The templates of a comms file, in order (text before the first section
/// is the file's own description and not a template), and every problem
/// found; `required` names templates the file must have.
pub fn parse(text: &str, required: &[&str]) -> (Vec<Template>, Vec<CommsError>) {
    let mut templates: Vec<Template> = Vec::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            templates.push(Template { name: title.trim().to_string(), text: String::new() });
        } else if let Some(template) = templates.last_mut() {
            template.text.push_str(line);
            template.text.push('\n');
        }
    }
    let mut problems = Vec::new();
    for template in &mut templates {
        template.text = template.text.trim().to_string();
        if template.text.is_empty() {
            problems.push(CommsError::Empty { template: template.name.clone() });
        }
        problems.extend(placeholder_problems(template));
    }
    for (index, template) in templates.iter().enumerate() {
        if templates[..index].iter().any(|earlier| earlier.name == template.name) {
            problems.push(CommsError::Duplicate { template: template.name.clone() });
        }
    }
    for name in required {
        if !templates.iter().any(|template| template.name == *name) {
            problems.push(CommsError::Missing { template: (*name).to_string() });
        }
    }
    (templates, problems)
}

/// The placeholders of a text, in order, or the first unclosed `{{`.
fn placeholders(text: &str) -> Result<Vec<&str>, ()> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(())?;
        found.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    Ok(found)
}

fn placeholder_problems(template: &Template) -> Vec<CommsError> {
    match placeholders(&template.text) {
        Err(()) => vec![CommsError::Unclosed { template: template.name.clone() }],
        Ok(found) => found
            .into_iter()
            .filter(|name| !PLACEHOLDERS.iter().any(|(known, _)| known == name))
            .map(|name| CommsError::UnknownPlaceholder {
                template: template.name.clone(),
                placeholder: name.to_string(),
            })
            .collect(),
    }
}

/// The values of the placeholders for `record`; `affected_projects` is the
/// count of a regional outage's projects (the caller reads it from the
/// store), ignored for other kinds.
pub fn values(record: &IncidentRecord, affected_projects: u64) -> BTreeMap<&'static str, String> {
    let or_na = |value: Option<&str>| value.map_or_else(|| "n/a".to_string(), str::to_string);
    let affected = match (record.kind, record.entity.entity_type) {
        (crate::IncidentKind::RegionalOutage, _) => affected_projects,
        (_, crate::SubjectType::Project) => 1,
        _ => 0,
    };
    BTreeMap::from([
        ("incident.id", record.id.clone()),
        ("incident.kind", record.kind.as_str().to_string()),
        ("incident.kind_text", kind_text(record.kind).to_string()),
        ("incident.severity", record.severity.as_str().to_string()),
        ("incident.status", record.status.as_str().to_string()),
        ("incident.owner", record.owner.clone()),
        ("incident.entity_type", record.entity.entity_type.as_str().to_string()),
        ("incident.entity_id", record.entity.id.clone()),
        ("incident.account_id", or_na(record.account_id.as_deref())),
        ("incident.region", or_na(record.region.as_deref())),
        ("incident.state", or_na(record.state.as_deref())),
        ("incident.opened_at", record.opened_at.to_string()),
        ("incident.resolved_at", record.resolved_at.map_or_else(|| "n/a".to_string(), |at| at.to_string())),
        ("incident.summary", record.summary.clone()),
        ("incident.runbook", record.runbook.clone()),
        ("counts.events", record.count.to_string()),
        ("counts.affected_projects", affected.to_string()),
    ])
}

/// A kind in words, for customer-facing text.
fn kind_text(kind: crate::IncidentKind) -> &'static str {
    use crate::IncidentKind::*;
    match kind {
        Stuck => "delay",
        ProvisioningFailed => "provisioning failure",
        OnboardingFailed => "sign-up failure",
        QuotaBreach => "quota issue",
        BillingDispute => "billing dispute",
        IllegalTransition => "inconsistent state",
        InvariantViolation => "inconsistent state",
        RegionalOutage => "regional outage",
    }
}

/// `template` with its placeholders filled from `values`; an unknown one
/// (which `parse` reports) is left as written.
pub fn render(template: &Template, values: &BTreeMap<&'static str, String>) -> Rendered {
    let mut text = String::with_capacity(template.text.len());
    let mut rest = template.text.as_str();
    while let Some(start) = rest.find("{{") {
        text.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match values.get(name) {
                    Some(value) => text.push_str(value),
                    None => text.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                text.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    text.push_str(rest);
    Rendered { name: template.name.clone(), text }
}

/// The shipped text of comms file `name`, if there is one.
pub fn shipped(name: &str) -> Option<&'static str> {
    SHIPPED.iter().find(|(shipped, _)| *shipped == name).map(|(_, text)| *text)
}

/// The templates a comms file of this name must have: an incident kind's
/// all of [`KIND_TEMPLATES`]; any other (`status-page`, `internal-update`)
/// at least one, checked by the caller.
pub fn required(name: &str) -> &'static [&'static str] {
    if crate::IncidentKind::parse(name).is_some() { &KIND_TEMPLATES } else { &[] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(body: &str) -> String {
        let mut text = String::from("# Comms\n\nintro\n\n");
        for name in KIND_TEMPLATES {
            text.push_str(&format!("## {name}\n\n{body}\n\n"));
        }
        text
    }

    #[test]
    fn every_shipped_file_parses_without_a_problem() {
        for (name, text) in SHIPPED {
            let (templates, problems) = parse(text, required(name));
            assert!(
                problems.is_empty(),
                "{name}: {:?}",
                problems.iter().map(ToString::to_string).collect::<Vec<_>>()
            );
            assert!(!templates.is_empty(), "{name}");
        }
        for kind in crate::IncidentKind::ALL {
            assert!(shipped(kind.as_str()).is_some(), "no shipped comms for {kind}");
        }
    }

    #[test]
    fn placeholders_fill_and_mistakes_are_named() {
        let (templates, problems) =
            parse(&file("{{incident.id}} in {{ incident.region }}: {{counts.events}}"), &KIND_TEMPLATES);
        assert!(problems.is_empty(), "{problems:?}");
        let values = BTreeMap::from([
            ("incident.id", "inc-1".to_string()),
            ("incident.region", "eu-west-1".to_string()),
            ("counts.events", "3".to_string()),
        ]);
        assert_eq!(render(&templates[0], &values).text, "inc-1 in eu-west-1: 3");

        let (_, problems) = parse(&file("{{incident.nope}}"), &KIND_TEMPLATES);
        assert_eq!(problems.len(), KIND_TEMPLATES.len());
        assert!(problems[0].to_string().contains("unknown placeholder {{incident.nope}}"), "{}", problems[0]);
        let (_, problems) = parse(&file("{{incident.id"), &KIND_TEMPLATES);
        assert!(matches!(problems[0], CommsError::Unclosed { .. }));
        let (_, problems) = parse("## support-macro\n\ntext\n", &KIND_TEMPLATES);
        assert_eq!(problems.len(), 5);
        assert_eq!(problems[0].to_string(), "no template \"status-page: investigating\"");
        let (_, problems) = parse(&format!("{}## support-macro\n\n\n", file("x")), &KIND_TEMPLATES);
        assert!(problems.contains(&CommsError::Empty { template: "support-macro".into() }));
        assert!(problems.contains(&CommsError::Duplicate { template: "support-macro".into() }));
    }
}
