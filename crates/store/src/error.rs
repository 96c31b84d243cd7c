//! The one error type of the store, and how SQLite's error codes map to it.

use std::io;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// Everything that can go wrong with a lifewatch database. Every message names
/// the database file; causes are kept as sources.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the writer lock of this database.
    #[error(
        "{path} is locked by another writer ({holder}); stop it first, read-only commands work meanwhile"
    )]
    Locked {
        /// The database.
        path: PathBuf,
        /// What the lock file says about the holder (pid and start time).
        holder: String,
    },
    /// The sidecar lock file could not be created or locked.
    #[error("cannot lock {path} for writing: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A read-only command was pointed at a database that does not exist.
    #[error("{path} does not exist")]
    NotFound {
        /// The database.
        path: PathBuf,
    },
    /// The file exists but is not a lifewatch database.
    #[error("{path} is not a lifewatch database: {detail}")]
    NotLifewatch {
        /// The database.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The database was written by a newer lifewatch whose schema this one does not know.
    #[error(
        "{path} has schema version {found}, newer than the {supported} this lifewatch supports; \
         use a newer lifewatch"
    )]
    TooNew {
        /// The database.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// The file cannot be written (file mode, read-only file system).
    #[error("{path} is read-only: {detail}")]
    ReadOnly {
        /// The database.
        path: PathBuf,
        /// Why it cannot be written.
        detail: String,
    },
    /// SQLite found the file damaged.
    #[error("{path} is corrupt ({context}): {source}")]
    Corrupt {
        /// The database.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },
    /// The disk, or the size the database may grow to, is full; the batch was not stored.
    #[error("{path}: disk full while trying to {context}, nothing of this batch was stored: {source}")]
    DiskFull {
        /// The database.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },
    /// Any other SQLite failure.
    #[error("{path}: cannot {context}: {source}")]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite's `PRAGMA quick_check` found the file damaged when a writer
    /// opened it: writing on would spread the damage, so the writer refuses.
    #[error(
        "{path} is corrupt, quick_check says: {detail}; nothing was written: run \
         `lifewatch verify --db {path}` to see what is wrong, and restore the database from a backup \
         (docs/operations.md)"
    )]
    Damaged {
        /// The database.
        path: PathBuf,
        /// What quick_check reported (its first lines).
        detail: String,
    },
    /// A backup was asked to write over a file that exists.
    #[error("{path} exists already; a backup never overwrites a file, choose a new name")]
    Exists {
        /// The file asked for.
        path: PathBuf,
    },
    /// A stored value could not be decoded (a block of the log, an entity,
    /// a list of events).
    #[error("{path}: stored data cannot be read back: {detail}")]
    BadData {
        /// The database.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A stored incident record is not the JSON of a record.
    #[error("{path}: a stored incident record cannot be read back: {source}")]
    BadRecord {
        /// The database.
        path: PathBuf,
        /// Why it cannot be decoded.
        #[source]
        source: serde_json::Error,
    },
    /// An incident record could not be made JSON.
    #[error("{path}: cannot encode an incident record as JSON: {source}")]
    Encode {
        /// The database.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// zstd failed on a block of the event log.
    #[error("{path}: zstd cannot {context}: {source}")]
    Compression {
        /// The database.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// zstd's report.
        #[source]
        source: io::Error,
    },
    /// A thread of the store could not be started.
    #[error("{path}: cannot start the {thread} thread: {source}")]
    Spawn {
        /// The database.
        path: PathBuf,
        /// Which thread.
        thread: &'static str,
        /// The system's report.
        #[source]
        source: io::Error,
    },
    /// A thread of the store panicked; the batch it worked on was not stored.
    #[error("{path}: the {thread} thread panicked")]
    ThreadPanicked {
        /// The database.
        path: PathBuf,
        /// Which thread.
        thread: &'static str,
    },
    /// The thread of background commits is gone, so the batches it was
    /// given have no result.
    #[error("{path}: the thread of background commits stopped")]
    CommitThreadStopped {
        /// The database.
        path: PathBuf,
    },
    /// An earlier commit failed, so the engine holds changes the database does
    /// not: the writer must be reopened, which restores the engine from the log.
    #[error("{path}: an earlier commit failed; reopen the database to restore the engine from the log")]
    Poisoned {
        /// The database.
        path: PathBuf,
    },
}

impl StoreError {
    /// Classifies a SQLite error: full disk, corruption and read-only files
    /// get their own variants, so that the message says what to do.
    pub(crate) fn sqlite(path: &Path, context: &'static str, source: rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::DiskFull { path, context, source },
            Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt { path, context, source },
            Some(ErrorCode::NotADatabase) => {
                StoreError::NotLifewatch { path, detail: format!("not a SQLite database ({source})") }
            }
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path, detail: source.to_string() },
            _ => StoreError::Sqlite { path, context, source },
        }
    }
}

/// Shorthand for mapping a rusqlite result into a [`StoreError`].
pub(crate) trait Context<T> {
    fn context(self, path: &Path, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, path: &Path, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::sqlite(path, context, error))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A damaged incident record is reported as such, with serde's report
    /// kept as the cause (it used to be flattened into a `BadData` string).
    #[test]
    fn a_damaged_incident_record_keeps_its_cause() {
        let directory = std::env::temp_dir().join(format!("lifewatch-store-error-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("lifewatch.db");
        let mut writer = crate::Writer::open(&path, lifewatch_core::Config::shipped()).unwrap();
        let failed = serde_json::json!({"specversion": "1.0", "id": "e1", "source": "test/store",
            "type": "account.onboarding_failed", "subject": "acc_1", "time": "2026-11-27T10:00:00Z",
            "data": {"reason": "kyc"}});
        assert_eq!(writer.feed(failed.to_string().as_bytes(), "input:1"), crate::Fed::Accepted);
        writer.commit().unwrap();
        drop(writer);
        let connection = rusqlite::Connection::open(&path).unwrap();
        assert!(connection.execute("UPDATE incident_records SET record = '{torn'", []).unwrap() >= 1);
        drop(connection);
        let store = crate::Store::open_read_only(&path).unwrap();
        match store.incidents(&crate::IncidentFilter::default()) {
            Err(error @ StoreError::BadRecord { .. }) => {
                assert!(error.source().is_some_and(|source| source.is::<serde_json::Error>()), "{error}");
                assert!(error.to_string().contains("incident record"), "{error}");
            }
            other => panic!("expected BadRecord, got {other:?}"),
        }
        drop(store);
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
