//! Checkpoints on a thread of their own.
//!
//! In WAL mode every commit appends pages to the WAL, and a checkpoint copies
//! them into the database file and syncs it. SQLite's automatic checkpoint
//! runs inside the commit that crosses its threshold, on the writer's thread:
//! with large batches that is a quarter of the writer's time (copying, then an
//! fsync of the database file). Here a second connection checkpoints on its
//! own thread while the writer goes on feeding the engine: the writer's
//! commit hook asks for a checkpoint each time the WAL has grown by
//! [`REQUEST_EVERY`] frames. A checkpoint never blocks the writer (PASSIVE),
//! and once it has copied every frame the next write transaction starts the
//! WAL over from its beginning, so the WAL stays about one batch long.
//!
//! Crash safety is SQLite's: a checkpoint only copies committed frames, and a
//! process killed during one leaves the WAL to be copied again at the next
//! open. If the thread falls behind (readers holding old snapshots keep a
//! checkpoint from finishing), the writer checkpoints itself once the WAL
//! reaches [`WRITER_CHECKPOINTS_AT`] frames, as SQLite's own would.

use std::ffi::c_int;
use std::path::Path;
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};

use crate::error::{Context, StoreError};
use crate::schema::Durability;

/// WAL growth, in frames (pages of 4 KiB), between two checkpoint requests:
/// 16 MiB. The live monitor's small commits ask rarely; each batch of
/// `replay --db` asks once.
const REQUEST_EVERY: c_int = 4_096;

/// WAL length, in frames, at which the writer checkpoints itself after a
/// commit: 1 GiB, far past what a keeping-up checkpoint thread lets it reach.
const WRITER_CHECKPOINTS_AT: c_int = 262_144;

enum Request {
    Checkpoint,
    Stop,
}

/// The checkpoint thread. Dropping it stops the thread (after the checkpoint
/// in progress, if any); the writer's connection, closed after it, copies
/// what is left when it is the last one open.
pub(crate) struct Checkpointer {
    requests: SyncSender<Request>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on a connection of its own to `path`, and sets the
    /// commit hook of `writer` (which replaces SQLite's automatic checkpoint).
    pub(crate) fn start(
        writer: &mut Connection,
        path: &Path,
        durability: Durability,
    ) -> Result<Checkpointer, StoreError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .context(path, "open the database for checkpoints")?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        connection.pragma_update(None, "synchronous", synchronous).context(path, "set synchronous mode")?;
        // One request waiting is enough: it checkpoints everything committed by then.
        let (requests, receiver) = mpsc::sync_channel::<Request>(1);
        let thread = std::thread::Builder::new()
            .name("lifewatch-checkpoint".to_string())
            .spawn(move || {
                while let Ok(Request::Checkpoint) = receiver.recv() {
                    // A failed checkpoint loses nothing (the frames stay in the
                    // WAL); the next request, the writer's own checkpoint or
                    // the close copies them.
                    let _ = connection.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE);
                }
            })
            .map_err(|source| StoreError::Spawn { path: path.to_path_buf(), thread: "checkpoint", source })?;
        let hook_requests = requests.clone();
        // The WAL length when a checkpoint was last asked for; a shorter WAL
        // means that it started over.
        let mut requested_at: c_int = 0;
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, frames: c_int| {
                if frames < requested_at {
                    requested_at = 0;
                }
                if frames >= WRITER_CHECKPOINTS_AT {
                    wal.checkpoint_v2(CheckpointMode::PASSIVE)?;
                } else if frames - requested_at >= REQUEST_EVERY {
                    // Full: a request is already waiting, and it will see these frames.
                    let _ = hook_requests.try_send(Request::Checkpoint);
                    requested_at = frames;
                }
                Ok(())
            }))
            .context(path, "set the commit hook")?;
        Ok(Checkpointer { requests, thread: Some(thread) })
    }
}

impl Checkpointer {
    /// Asks the thread for a checkpoint now (if one is not already asked
    /// for), without waiting for it.
    pub(crate) fn request(&self) {
        let _ = self.requests.try_send(Request::Checkpoint);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // A blocking send: it waits for a queued request to be taken, so the
        // thread sees Stop after it.
        let _ = self.requests.send(Request::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
