//! Helpers the engine's test files share: small databases, fast temporary directories,
//! `MemStorage` opens and a checked snapshot of a database's contents.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use talus_engine::storage::MemStorage;
use talus_engine::{Db, Options, SyncMode};

/// The smallest memory budget: eviction happens after a megabyte of log.
pub const MEMORY_BUDGET: u64 = 1 << 20;
/// The smallest segments: rollover happens every 256 KiB of log.
pub const SEGMENT_SIZE: u64 = 256 << 10;

/// A database's contents.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// Options for a small database: [`MEMORY_BUDGET`] and [`SEGMENT_SIZE`], and no background
/// compaction (tests that lay out segments on purpose keep their layout; the compaction
/// tests and the crash loops turn it on).
pub fn options(sync_mode: SyncMode) -> Options {
    Options::new()
        .memory_budget(MEMORY_BUDGET)
        .segment_size(SEGMENT_SIZE)
        .sync_mode(sync_mode)
        .background_compaction(false)
}

/// A temporary directory in memory (`/dev/shm`) where there is one: every open after a
/// crash creates an index (a file and its fsyncs per bucket), and these tests open often.
pub fn try_fast_tempdir() -> std::io::Result<tempfile::TempDir> {
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()),
        false => tempfile::tempdir(),
    }
}

/// [`try_fast_tempdir`], failing the test on an error.
pub fn fast_tempdir() -> tempfile::TempDir {
    try_fast_tempdir().expect("tempdir")
}

/// Opens the database whose log lives in `storage` and whose index lives in `index_dir`.
pub fn open_mem(options: Options, storage: &MemStorage, index_dir: &Path) -> talus_engine::Result<Db> {
    options.open_with_storage(Arc::new(storage.clone()), index_dir)
}

/// Every live pair, through `iter`, checked against `get` and `n_keys`.
pub fn state_of(db: &Db) -> State {
    let state: State = db.iter().map(|pair| pair.expect("iter")).collect();
    assert_eq!(db.stats().n_keys, state.len() as u64, "n_keys and iter agree");
    for (key, value) in &state {
        assert_eq!(db.get(key).expect("get").as_ref(), Some(value), "get and iter agree on {key:?}");
    }
    state
}
