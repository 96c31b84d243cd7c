//! Online backups: a consistent copy of a database while a writer runs.
//!
//! The WAL is part of the database: committed batches live in it until a
//! checkpoint copies them into the main file, so copying the `.db` file
//! alone can lose them, or copy half of a checkpoint. `VACUUM INTO` reads
//! one committed state through SQLite, WAL included, in a read transaction
//! that never blocks the writer, and writes it as one self-contained file.

use std::path::Path;

use crate::error::{Context, StoreError};
use crate::read::Store;

impl Store {
    /// Writes a copy of the database to `out`, a file that must not exist,
    /// with SQLite's `VACUUM INTO`: the copy is one consistent committed
    /// state (the WAL's committed frames included), taken in a read
    /// transaction, so it is safe while a writer runs, which goes on
    /// meanwhile. The copy is synced to disk before this returns.
    pub fn backup(&self, out: &Path) -> Result<(), StoreError> {
        // `VACUUM INTO` refuses a file that is not empty, but would write
        // into an empty one; a backup never touches an existing file.
        if out.exists() {
            return Err(StoreError::Exists { path: out.to_path_buf() });
        }
        let target = out.to_str().ok_or_else(|| StoreError::BadData {
            path: out.to_path_buf(),
            detail: "the backup's path is not valid UTF-8, which SQLite needs".to_string(),
        })?;
        self.connection().execute("VACUUM INTO ?1", [target]).context(out, "write the backup")?;
        std::fs::File::open(out).and_then(|file| file.sync_all()).map_err(|error| StoreError::BadData {
            path: out.to_path_buf(),
            detail: format!("cannot sync the backup to disk: {error}"),
        })?;
        Ok(())
    }
}
