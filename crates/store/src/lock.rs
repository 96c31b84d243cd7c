//! The single-writer lock: an exclusive OS lock on `<db>.lock`, holding the
//! pid and start time of the writer so that a refused second writer can say
//! who holds it. The OS drops the lock when the process ends, however it ends,
//! so a crashed writer never leaves a stale lock behind.
//!
//! The lock belongs to the database file, not to the name it was opened by:
//! the lock file sits beside the canonical path (symbolic links resolved),
//! and a database file with more than one hard link is refused, since two
//! names of one file would otherwise give two lock files and two writers.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use lifewatch_core::Timestamp;

use crate::error::StoreError;

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

/// The lock file of a database: `<db>.lock` beside it.
pub(crate) fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

impl WriterLock {
    /// Takes the writer lock of `database`, or says who holds it.
    pub(crate) fn acquire(database: &Path) -> Result<WriterLock, StoreError> {
        let path = lock_path(&canonical(database));
        let lock_error = |source| StoreError::Lock { path: path.clone(), source };
        refuse_hard_links(database).map_err(lock_error)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(lock_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder's description is best effort: a failed read still
                // refuses the second writer, just with less to say.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder =
                    if holder.is_empty() { "holder unknown".to_string() } else { holder.to_string() };
                return Err(StoreError::Locked { path: database.to_path_buf(), holder });
            }
            Err(TryLockError::Error(error)) => return Err(lock_error(error)),
        }
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(Timestamp::MIN, |since| Timestamp::from_unix_nanos(since.as_nanos() as i64));
        let description = format!("pid {} started {started}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(description.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(lock_error)?;
        Ok(WriterLock { _file: file })
    }
}

/// `database` with its symbolic links resolved, so that every name of the
/// file shares one lock file. A database not created yet is named by its
/// canonical directory and file name; where even that cannot be resolved,
/// the path as given (opening will then fail with the real cause).
fn canonical(database: &Path) -> PathBuf {
    if let Ok(path) = std::fs::canonicalize(database) {
        return path;
    }
    let parent = match database.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(parent), database.file_name()) {
        (Ok(parent), Some(name)) => parent.join(name),
        _ => database.to_path_buf(),
    }
}

/// Refuses a database file that has more than one hard link: the lock file
/// of one name would not stop a writer that opened another.
fn refuse_hard_links(database: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(database) {
        Ok(metadata) if metadata.nlink() > 1 => Err(std::io::Error::other(format!(
            "the database file has {} hard links, so a second writer could open it by another name \
             unseen; keep one name (remove the other links) or copy it with `VACUUM INTO`",
            metadata.nlink()
        ))),
        _ => Ok(()),
    }
}
