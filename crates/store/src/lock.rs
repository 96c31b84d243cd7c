//! The single-writer lock: an exclusive OS lock on `<db>.lock`, holding the
//! pid and start time of the writer so that a refused second writer can say
//! who holds it. The OS drops the lock when the process ends, however it ends,
//! so a crashed writer never leaves a stale lock behind.

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
        let path = lock_path(database);
        let lock_error = |source| StoreError::Lock { path: path.clone(), source };
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
