//! The communication templates of an incident (`ops/comms/<kind>.md`),
//! rendered for the incident page's Communication section, the API
//! (`/api/incidents/{id}/comms`) and `lifewatch comms`: the file under the
//! runbook root, else the shipped copy built in.

use std::path::Path;

use lifewatch_core::IncidentRecord;
use lifewatch_core::comms::{self, Rendered};
use lifewatch_store::{Store, StoreError, query};

/// Where a comms file's text came from.
pub enum Source {
    /// The file under the root.
    File(std::path::PathBuf),
    /// The copy built into lifewatch.
    Shipped,
    /// Neither exists.
    Missing,
}

/// The text of comms file `name` under `root`, or the shipped one.
pub fn text(root: &Path, name: &str) -> (Option<String>, Source) {
    let path = root.join("ops/comms").join(format!("{name}.md"));
    match std::fs::read_to_string(&path) {
        Ok(text) => (Some(text), Source::File(path)),
        Err(_) => match comms::shipped(name) {
            Some(text) => (Some(text.to_string()), Source::Shipped),
            None => (None, Source::Missing),
        },
    }
}

/// Every template of `record`'s kind, rendered with its values (the
/// outage's project count read from `store`).
pub fn render(root: &Path, store: &Store, record: &IncidentRecord) -> Result<Vec<Rendered>, StoreError> {
    let (Some(text), _) = text(root, record.kind.as_str()) else { return Ok(Vec::new()) };
    let (templates, _) = comms::parse(&text, &[]);
    let values = comms::values(record, query::outage_projects(store, record)?);
    Ok(templates.iter().map(|template| comms::render(template, &values)).collect())
}
