//! The ids of accepted events, the engine's deduplication authority.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Event ids are kept as 128-bit hashes: 16 bytes each instead of the id,
/// with a collision chance far below that of a hardware fault.
#[derive(Default)]
pub(super) struct SeenIds(HashSet<u128, BuildHasherDefault<PassThroughHasher>>);

impl SeenIds {
    /// Records `id`; whether it was new.
    pub(super) fn insert(&mut self, id: &str) -> bool {
        self.0.insert(id_hash(id))
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.0.contains(&id_hash(id))
    }
}

fn id_hash(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// The id hashes are uniformly distributed already; hashing them again is waste.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}
