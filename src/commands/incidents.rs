//! `incidents`: the stored incident records, filtered.

use std::path::Path;

use lifewatch_store::Store;
use lifewatch_store::query::{self, IncidentQuery};

use crate::output::{self, Format};

/// Prints the incidents `query` selects, in its order.
pub fn run(db: &Path, query: &IncidentQuery, format: Format) -> anyhow::Result<()> {
    let store = Store::open_read_only(db)?;
    let page = query::incidents(&store, query)?;
    output::print_record_stream(page.incidents.into_iter(), format)?;
    Ok(())
}
