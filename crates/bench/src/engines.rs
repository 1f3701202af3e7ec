//! One `Engine` trait and an adapter per engine, each configured as fairly as its API
//! allows (docs/bench.md, "Fairness"): the same cache or memory budget, and the same
//! durability: with `durable`, every write is on disk (fsync) when it returns; without, no
//! write waits for the disk (each engine's buffered mode).

use std::path::Path;

use anyhow::{Context as _, Result};
use redb::ReadableDatabase as _;

/// What every engine is asked to do.
pub trait Engine: Send + Sync {
    /// Writes one pair (durable when it returns, in durable mode).
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Reads one key, handing the value to `found`; whether the key was there.
    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool>;
    /// Writes many pairs at once (the load phase: one batch or transaction).
    fn put_many(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()>;
    /// Makes everything written so far durable.
    fn sync(&self) -> Result<()>;
    /// Removes many keys at once (one batch or transaction).
    fn delete_many(&self, keys: &[Vec<u8>]) -> Result<()>;
    /// Gives back the space of removed and overwritten data if the engine can, now;
    /// `false` if it has no way to.
    fn compact(&mut self) -> Result<bool>;
}

/// How an engine is opened.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Every write durable when it returns (fsync per write or commit).
    pub durable: bool,
    /// The cache (or memory budget) in bytes.
    pub cache_bytes: u64,
}

/// The engines built into this binary (the default of `--engines`).
#[cfg(not(feature = "rocksdb"))]
pub const ENGINES: &[&str] = &["talus", "redb", "fjall", "lmdb"];

/// The engines built into this binary (RocksDB with the `rocksdb` feature).
#[cfg(feature = "rocksdb")]
pub const ENGINES: &[&str] = &["talus", "redb", "fjall", "lmdb", "rocksdb"];

/// Opens (creating) engine `name` in the empty directory `dir`.
pub fn open(name: &str, dir: &Path, settings: Settings) -> Result<Box<dyn Engine>> {
    match name {
        "talus" => Ok(Box::new(Talus::open(dir, settings)?)),
        "redb" => Ok(Box::new(Redb::open(dir, settings)?)),
        "fjall" => Ok(Box::new(Fjall::open(dir, settings)?)),
        "lmdb" => Ok(Box::new(Lmdb::open(dir, settings)?)),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Ok(Box::new(Rocksdb::open(dir, settings)?)),
        other => anyhow::bail!("unknown engine {other:?} (known: {})", ENGINES.join(", ")),
    }
}

// ---------------------------------------------------------------------------------------

/// Talus: `SyncMode::Always` (group commit) or `Never`; the memory budget is the cache.
struct Talus {
    db: talus_engine::Db,
}

impl Talus {
    fn open(dir: &Path, settings: Settings) -> Result<Talus> {
        let sync_mode = if settings.durable { talus_engine::SyncMode::Always } else { talus_engine::SyncMode::Never };
        let db = talus_engine::Options::new().memory_budget(settings.cache_bytes).sync_mode(sync_mode).open(dir)?;
        Ok(Talus { db })
    }
}

impl Engine for Talus {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put(key, value)?)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool> {
        Ok(self.db.get_with(key, |value| found(value))?.is_some())
    }

    fn put_many(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let n_bytes = pairs.iter().map(|(key, value)| key.len() + value.len()).sum();
        let mut batch = talus_engine::WriteBatch::with_capacity(pairs.len(), n_bytes);
        for (key, value) in pairs {
            batch.put(key, value);
        }
        Ok(self.db.write(batch)?)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.db.sync()?)
    }

    fn delete_many(&self, keys: &[Vec<u8>]) -> Result<()> {
        let n_bytes = keys.iter().map(Vec::len).sum();
        let mut batch = talus_engine::WriteBatch::with_capacity(keys.len(), n_bytes);
        for key in keys {
            batch.delete(key);
        }
        Ok(self.db.write(batch)?)
    }

    fn compact(&mut self) -> Result<bool> {
        self.db.compact()?;
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");

/// redb: one write transaction per put, committed with `Durability::Immediate` (durable) or
/// `Durability::None` (buffered); the page cache size is the budget.
struct Redb {
    db: redb::Database,
    durable: bool,
}

impl Redb {
    fn open(dir: &Path, settings: Settings) -> Result<Redb> {
        let db = redb::Database::builder()
            .set_cache_size(settings.cache_bytes as usize)
            .create(dir.join("redb.db"))
            .context("open redb")?;
        let txn = db.begin_write()?;
        txn.open_table(REDB_TABLE)?;
        txn.commit()?;
        Ok(Redb { db, durable: settings.durable })
    }

    fn write(&self, f: impl FnOnce(&mut redb::Table<'_, &[u8], &[u8]>) -> Result<()>) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        let durability = if self.durable { redb::Durability::Immediate } else { redb::Durability::None };
        txn.set_durability(durability)?;
        {
            let mut table = txn.open_table(REDB_TABLE)?;
            f(&mut table)?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl Engine for Redb {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(|table| {
            table.insert(key, value)?;
            Ok(())
        })
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_TABLE)?;
        Ok(match table.get(key)? {
            Some(guard) => {
                found(guard.value());
                true
            }
            None => false,
        })
    }

    fn put_many(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.write(|table| {
            for (key, value) in pairs {
                table.insert(key.as_slice(), value.as_slice())?;
            }
            Ok(())
        })
    }

    fn sync(&self) -> Result<()> {
        // An empty durable commit makes every earlier `Durability::None` commit durable.
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        txn.commit()?;
        Ok(())
    }

    fn delete_many(&self, keys: &[Vec<u8>]) -> Result<()> {
        self.write(|table| {
            for key in keys {
                table.remove(key.as_slice())?;
            }
            Ok(())
        })
    }

    fn compact(&mut self) -> Result<bool> {
        self.sync()?;
        self.db.compact()?;
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------

/// fjall: each put goes to the journal; durable mode persists it with
/// `PersistMode::SyncData` before returning; the block cache is the budget.
struct Fjall {
    db: fjall::Database,
    keyspace: fjall::Keyspace,
    durable: bool,
}

impl Fjall {
    fn open(dir: &Path, settings: Settings) -> Result<Fjall> {
        let db = fjall::Database::builder(dir.join("fjall")).cache_size(settings.cache_bytes).open()?;
        let keyspace = db.keyspace("bench", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, keyspace, durable: settings.durable })
    }
}

impl Engine for Fjall {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.keyspace.insert(key, value)?;
        if self.durable {
            self.db.persist(fjall::PersistMode::SyncData)?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool> {
        Ok(match self.keyspace.get(key)? {
            Some(value) => {
                found(&value);
                true
            }
            None => false,
        })
    }

    fn put_many(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = self.db.batch();
        for (key, value) in pairs {
            batch.insert(&self.keyspace, key.as_slice(), value.as_slice());
        }
        batch.commit()?;
        if self.durable {
            self.db.persist(fjall::PersistMode::SyncData)?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(self.db.persist(fjall::PersistMode::SyncAll)?)
    }

    fn delete_many(&self, keys: &[Vec<u8>]) -> Result<()> {
        let mut batch = self.db.batch();
        for key in keys {
            batch.remove(&self.keyspace, key.as_slice());
        }
        batch.commit()?;
        if self.durable {
            self.db.persist(fjall::PersistMode::SyncData)?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<bool> {
        self.keyspace.major_compact()?;
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------

/// LMDB through heed: one write transaction per put; durable mode keeps LMDB's default
/// (fsync at commit), buffered mode sets `NO_SYNC | NO_META_SYNC`. LMDB has no cache of its
/// own (it reads through the page cache), so the budget does not apply; the map size is
/// 64 GiB of address space.
struct Lmdb {
    env: heed::Env,
    db: heed::Database<heed::types::Bytes, heed::types::Bytes>,
}

impl Lmdb {
    fn open(dir: &Path, settings: Settings) -> Result<Lmdb> {
        let path = dir.join("lmdb");
        std::fs::create_dir_all(&path)?;
        let mut options = heed::EnvOpenOptions::new();
        options.map_size(64 << 30).max_dbs(1);
        if !settings.durable {
            // SAFETY: NO_SYNC and NO_META_SYNC only weaken durability (what buffered mode
            // asks for); they cannot corrupt the environment while the process lives.
            unsafe { options.flags(heed::EnvFlags::NO_SYNC | heed::EnvFlags::NO_META_SYNC) };
        }
        // SAFETY: heed requires that the environment is opened once per process and not
        // modified by another process meanwhile: this adapter opens it once, in a fresh
        // directory only this process uses.
        let env = unsafe { options.open(&path) }?;
        let mut txn = env.write_txn()?;
        let db = env.create_database(&mut txn, Some("bench"))?;
        txn.commit()?;
        Ok(Lmdb { env, db })
    }
}

impl Engine for Lmdb {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut txn = self.env.write_txn()?;
        self.db.put(&mut txn, key, value)?;
        txn.commit()?;
        Ok(())
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool> {
        let txn = self.env.read_txn()?;
        Ok(match self.db.get(&txn, key)? {
            Some(value) => {
                found(value);
                true
            }
            None => false,
        })
    }

    fn put_many(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut txn = self.env.write_txn()?;
        for (key, value) in pairs {
            self.db.put(&mut txn, key, value)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(self.env.force_sync()?)
    }

    fn delete_many(&self, keys: &[Vec<u8>]) -> Result<()> {
        let mut txn = self.env.write_txn()?;
        for key in keys {
            self.db.delete(&mut txn, key)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn compact(&mut self) -> Result<bool> {
        // LMDB reuses freed pages but never shrinks its file; a compacted copy
        // (`mdb_env_copy2`) is a new file, not this database.
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------------

/// RocksDB (the `rocksdb` feature): an LRU block cache of the budget for the block-based
/// tables (index and filter blocks in it), with a 10 bits-per-key bloom filter; `increase_parallelism(2)` (this 2-core
/// machine); the write-ahead log on in both modes. Durable mode writes with
/// `WriteOptions::set_sync(true)` (the log synced before each write or batch returns, one
/// sync per group of concurrent writers); buffered mode with `set_sync(false)` (the log
/// written, not synced, like fjall's buffered journal). The memtables (RocksDB's defaults)
/// are outside the cache.
#[cfg(feature = "rocksdb")]
struct Rocksdb {
    db: rocksdb::DB,
    write_options: rocksdb::WriteOptions,
}

#[cfg(feature = "rocksdb")]
impl Rocksdb {
    fn open(dir: &Path, settings: Settings) -> Result<Rocksdb> {
        let cache_bytes = usize::try_from(settings.cache_bytes).context("the cache size")?;
        let cache = rocksdb::Cache::new_lru_cache(cache_bytes);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks count against the cache, as every other engine's do.
        table.set_cache_index_and_filter_blocks(true);
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.increase_parallelism(2);
        options.set_block_based_table_factory(&table);
        let db = rocksdb::DB::open(&options, dir.join("rocksdb")).context("open rocksdb")?;
        let mut write_options = rocksdb::WriteOptions::default();
        write_options.set_sync(settings.durable);
        Ok(Rocksdb { db, write_options })
    }
}

#[cfg(feature = "rocksdb")]
impl Engine for Rocksdb {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put_opt(key, value, &self.write_options)?)
    }

    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool> {
        Ok(match self.db.get_pinned(key)? {
            Some(value) => {
                found(&value);
                true
            }
            None => false,
        })
    }

    fn put_many(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        // Sized up front, as Talus's batches are (keys and values plus a few bytes each of
        // RocksDB's framing).
        let n_bytes: usize = pairs.iter().map(|(key, value)| key.len() + value.len() + 8).sum();
        let mut batch = rocksdb::WriteBatch::with_capacity_bytes(n_bytes);
        for (key, value) in pairs {
            batch.put(key, value);
        }
        Ok(self.db.write_opt(batch, &self.write_options)?)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.db.flush_wal(true)?)
    }

    fn delete_many(&self, keys: &[Vec<u8>]) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        for key in keys {
            batch.delete(key);
        }
        Ok(self.db.write_opt(batch, &self.write_options)?)
    }

    fn compact(&mut self) -> Result<bool> {
        // Like fjall's major compaction: every level, the bottommost included, rewritten.
        let mut options = rocksdb::CompactOptions::default();
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db.compact_range_opt::<&[u8], &[u8]>(None, None, &options);
        Ok(true)
    }
}
