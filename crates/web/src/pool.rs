//! A few read-only `Store` handles reused across requests, used on the
//! blocking pool.
//!
//! Hand-written rather than r2d2/deadpool: those pools come with their own
//! rusqlite version (the store uses rusqlite with bundled SQLite), and all
//! this needs is a `Mutex<Vec<Store>>` — opening a handle costs a schema read
//! per request, which the pool saves.

use std::path::PathBuf;
use std::sync::Mutex;

use lifewatch_store::Store;

use crate::error::ApiError;

/// At most this many idle handles are kept.
const MAX_IDLE: usize = 8;

pub(crate) struct StorePool {
    path: PathBuf,
    idle: Mutex<Vec<Store>>,
}

impl StorePool {
    pub(crate) fn new(path: PathBuf) -> StorePool {
        StorePool { path, idle: Mutex::new(Vec::new()) }
    }

    /// The database.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs `read` with a handle on a blocking thread; the handle goes back to
    /// the pool unless the read failed (a failed handle may be broken).
    pub(crate) async fn read<T, F>(self: &std::sync::Arc<Self>, read: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let store = pool.take()?;
            let result = read(&store);
            if result.is_ok() {
                pool.put(store);
            }
            result
        })
        .await
        .map_err(ApiError::store)?
    }

    fn take(&self) -> Result<Store, ApiError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(store) => Ok(store),
            None => Store::open_read_only(&self.path).map_err(ApiError::store),
        }
    }

    fn put(&self, store: Store) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(store);
        }
    }
}
