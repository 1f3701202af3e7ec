//! `Db::verify`: reads the whole log back, checks every record's checksum and that the index
//! agrees with the log in both directions, and lists every problem it finds (the check
//! behind `talus check`). It changes nothing; [`Options::repair`](crate::Options::repair)
//! is what fixes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::{Db, Inner, parse_located};
use crate::error::Result;
use crate::record::{FLAG_BATCH, FLAG_BATCH_END, RecordKind};
use crate::recovery::{Found, walk_log};
use crate::segment::{SEGMENT_HEADER_LEN, segment_path};

/// At most this many problems are listed; [`VerifyReport::n_problems`] counts them all.
pub const MAX_PROBLEMS_LISTED: usize = 1000;

/// What [`Db::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Log bytes read.
    pub n_bytes_scanned: u64,
    /// Valid records in the log (checksums verified).
    pub n_records: u64,
    /// Records the index points at: one per live key.
    pub n_live_records: u64,
    /// Records that hold no live value: puts replaced by a later record of their key, and
    /// every delete. With no problems, `n_live_records + n_superseded_records == n_records`.
    pub n_superseded_records: u64,
    /// Delete records.
    pub n_delete_records: u64,
    /// Entries in the index.
    pub n_index_entries: u64,
    /// Every problem found (the first [`MAX_PROBLEMS_LISTED`]), in log order.
    pub problems: Vec<Problem>,
    /// How many problems were found in all.
    pub n_problems: u64,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.n_problems == 0
    }

    fn push(&mut self, problem: Problem) {
        tracing::warn!(%problem, "verify found a problem");
        self.n_problems += 1;
        if self.problems.len() < MAX_PROBLEMS_LISTED {
            self.problems.push(problem);
        }
    }
}

/// One thing [`Db::verify`] found wrong, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The file (relative to the database directory): a log segment, or `index` for a
    /// problem of the index as a whole.
    pub file: String,
    /// The byte offset in that file.
    pub offset: u64,
    /// The logical log address, if the problem has one.
    pub address: Option<u64>,
    /// Bytes affected (damaged log bytes; 0 for a problem of the index).
    pub n_bytes: u64,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at offset {}", self.file, self.offset)?;
        if let Some(address) = self.address {
            write!(f, " (log address {address})")?;
        }
        if self.n_bytes > 0 {
            write!(f, ", {} bytes", self.n_bytes)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl Db {
    /// Verifies the database: writes everything to the segment files, then reads the whole
    /// log back, verifying every record's checksum and every batch's completeness, and
    /// checks the index against the log both ways: every key's latest put is what the index
    /// points at, a deleted key has no entry, and the index holds nothing else. Damage does
    /// not stop the check: it goes on at the next valid record and lists every problem.
    ///
    /// It takes `&mut self` because the check needs a database nobody writes meanwhile, and
    /// it holds background compaction and checkpoints off while it runs.
    /// It reads the whole log (and, for each record, the index), so it takes time in
    /// proportion to the log's size.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let mut db = talus_engine::Db::open(dir.path())?;
    /// db.put(b"k", b"v")?;
    /// let report = db.verify()?;
    /// assert!(report.is_ok() && report.n_live_records == 1, "{report:?}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// I/O errors reading the log; damage is not an error but a [`Problem`] in the report.
    pub fn verify(&mut self) -> Result<VerifyReport> {
        self.verify_with_progress(|_, _| {})
    }

    /// As [`verify`](Self::verify), calling `progress(bytes checked, bytes in all)` every
    /// few MiB.
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify).
    pub fn verify_with_progress(&mut self, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport> {
        let inner = &*self.inner;
        let _span = tracing::info_span!("verify", path = %inner.path.display()).entered();
        // No compaction or checkpoint meanwhile: compaction moves records the walk counts.
        let _maintenance = inner.maintenance.lock();
        if !inner.poisoned.load(Ordering::Acquire) {
            // Every record into the files; a poisoned database checks what reached them.
            self.sync()?;
        }
        let log_begin = inner.manifest.lock().log_begin;
        let log_end = inner.writer.lock().written_until;
        let mut check = Check::new(inner);
        walk_log(&inner.segments, log_begin, log_end, &mut progress, &mut |found| {
            match found {
                Found::Record(address, record) => check.record(address, record.kind, record.flags, record.key)?,
                Found::Damage(damage) => {
                    check.break_batch("the batch that starts here is broken by damage");
                    check.report.push(Problem {
                        file: damage.file,
                        offset: damage.offset,
                        address: Some(damage.address),
                        n_bytes: damage.n_bytes,
                        reason: damage.reason.to_owned(),
                    });
                }
            }
            Ok(())
        })?;
        check.report.n_bytes_scanned = log_end - log_begin;
        check.finish()
    }
}

/// The state of one verification.
struct Check<'a> {
    inner: &'a Inner,
    report: VerifyReport,
    /// Keys whose latest record so far is a put the index does not know, with its address:
    /// fine only if a later delete follows.
    unindexed: HashMap<Vec<u8>, u64>,
    /// The address of the first record of a batch whose end is not seen yet.
    batch_start: Option<u64>,
}

impl<'a> Check<'a> {
    fn new(inner: &'a Inner) -> Check<'a> {
        Check { inner, report: VerifyReport::default(), unindexed: HashMap::new(), batch_start: None }
    }

    fn problem_at(&self, address: u64, n_bytes: u64, reason: String) -> Problem {
        let first = self.inner.segments.first_address_of(address);
        Problem {
            file: segment_path(first),
            offset: SEGMENT_HEADER_LEN + (address - first),
            address: Some(address),
            n_bytes,
            reason,
        }
    }

    /// A batch that started and will not end: reported at its first record.
    fn break_batch(&mut self, reason: &str) {
        if let Some(start) = self.batch_start.take() {
            let problem = self.problem_at(start, 0, reason.to_owned());
            self.report.push(problem);
        }
    }

    fn record(&mut self, address: u64, kind: RecordKind, flags: u8, key: &[u8]) -> Result<()> {
        self.report.n_records += 1;
        if let Some(start) = self.batch_start
            && self.inner.segments.hole_between(start, address)
        {
            // The batch went on into a segment compaction removed, which happens only once
            // the log is durable past it: the batch was complete.
            self.batch_start = None;
        }
        if flags & FLAG_BATCH == 0 {
            self.break_batch("the batch that starts here never finishes");
        } else {
            self.batch_start.get_or_insert(address);
            if flags & FLAG_BATCH_END != 0 {
                self.batch_start = None;
            }
        }
        if kind == RecordKind::Delete {
            self.report.n_delete_records += 1;
        }
        let hash = self.inner.hash(key);
        let current = match self.find(hash, key, address) {
            Ok(current) => current,
            Err(error) => {
                let problem = self.problem_at(address, 0, format!("looking this record's key up failed: {error}"));
                self.report.push(problem);
                return Ok(());
            }
        };
        match current {
            Some(current) if current == address => {
                self.report.n_live_records += 1;
                self.unindexed.remove(key);
            }
            Some(current) if current > address => self.report.n_superseded_records += 1,
            Some(_) if kind == RecordKind::Delete => {
                let problem =
                    self.problem_at(address, 0, "the index points at a record older than this delete".to_owned());
                self.report.push(problem);
            }
            Some(current) => {
                let reason = format!("the index points at an older record of this key, at log address {current}");
                let problem = self.problem_at(address, 0, reason);
                self.report.push(problem);
            }
            None => match kind {
                RecordKind::Put => {
                    // Superseded by a later delete, which must follow.
                    self.report.n_superseded_records += 1;
                    self.unindexed.insert(key.to_vec(), address);
                }
                RecordKind::Delete => {
                    self.unindexed.remove(key);
                    self.report.n_superseded_records += 1;
                }
            },
        }
        Ok(())
    }

    /// The index's address for `key`. Does not read the record at `address` (the walk just
    /// did); reads every other candidate to compare keys.
    fn find(&self, hash: u64, key: &[u8], address: u64) -> Result<Option<u64>> {
        let candidates = self.inner.candidates(hash);
        let guard = self.inner.ring.pin();
        let mut found = None;
        for &candidate in candidates.as_slice() {
            let is_key = match candidate == address {
                true => true,
                false => {
                    let located = self.inner.locate(&guard, candidate)?;
                    parse_located(&located, candidate, &self.inner.segments)?.key == key
                }
            };
            if is_key {
                if let Some(other) = found {
                    let reason = format!("the index has two entries for this key, at {other} and {candidate}");
                    return Err(crate::error::corruption("index", 0, reason));
                }
                found = Some(candidate);
            }
        }
        Ok(found)
    }

    fn finish(mut self) -> Result<VerifyReport> {
        self.break_batch("the batch that starts here never finishes");
        let mut unindexed: Vec<(Vec<u8>, u64)> = std::mem::take(&mut self.unindexed).into_iter().collect();
        unindexed.sort_unstable_by_key(|&(_, address)| address);
        for (key, address) in unindexed {
            let reason = format!("the latest record of key {} is a put the index does not know", key.escape_ascii());
            let problem = self.problem_at(address, 0, reason);
            self.report.push(problem);
        }
        self.report.n_index_entries = self.inner.index.len();
        if self.report.n_index_entries != self.report.n_live_records {
            self.index_entries_without_records();
        }
        Ok(self.report)
    }

    /// The index holds more entries than there are live records: finds the ones that point
    /// at no record of a key with their hash.
    fn index_entries_without_records(&mut self) {
        let n_extra = self.report.n_index_entries.saturating_sub(self.report.n_live_records);
        let mut n_found = 0u64;
        let guard = self.inner.ring.pin();
        for (hash, address) in self.inner.index.iter() {
            let why = match self.inner.locate(&guard, address) {
                Err(error) => Some(format!("it points at no valid record: {error}")),
                Ok(located) => match parse_located(&located, address, &self.inner.segments) {
                    Err(error) => Some(format!("it points at no valid put: {error}")),
                    Ok(record) if self.inner.hash(record.key) != hash => {
                        Some("it is filed under a hash that is not its key's".to_owned())
                    }
                    Ok(_) => None,
                },
            };
            if let Some(why) = why {
                n_found += 1;
                let reason = format!("index entry for hash {hash:016x} and log address {address}: {why}");
                self.report.push(Problem {
                    file: "index".to_owned(),
                    offset: 0,
                    address: Some(address),
                    n_bytes: 0,
                    reason,
                });
            }
        }
        if n_found == 0 || n_found < n_extra {
            let reason = format!(
                "the index holds {} entries but the log has {} live records",
                self.report.n_index_entries, self.report.n_live_records
            );
            self.report.push(Problem { file: "index".to_owned(), offset: 0, address: None, n_bytes: 0, reason });
        }
    }
}
