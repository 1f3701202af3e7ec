//! `compact`, `checkpoint` and `backup`: the engine's maintenance on demand, each reported
//! in one sentence or, with `--json`, one JSON object.

use anyhow::{Context as _, Result};
use serde_json::json;
use talus_engine::{Db, SyncMode};

use crate::Outcome;
use crate::cli::{BackupArgs, Global, JsonArgs, OpenMode};
use crate::stats::{footprint, size, space_amplification_json};

/// Opens the existing database with the engine's background compaction off: the command
/// does the one job asked, and what it reports is everything it did.
fn open(global: &Global) -> Result<Db> {
    global.open_with(global.options(OpenMode::Existing, SyncMode::Always).background_compaction(false))
}

pub(crate) fn compact(global: &Global, args: &JsonArgs) -> Result<Outcome> {
    let db = open(global)?;
    let before = db.stats();
    let report = db.compact().context("compacting the log")?;
    let after = db.stats();
    db.close()?;
    if args.json {
        let summary = json!({
            "n_segments_compacted": report.n_segments_compacted,
            "n_records_copied": report.n_records_copied,
            "n_bytes_copied": report.n_bytes_copied,
            "n_tombstones_dropped": report.n_tombstones_dropped,
            "n_tombstones_copied": report.n_tombstones_copied,
            "n_bytes_reclaimed": report.n_bytes_reclaimed,
            "log_disk_bytes_before": before.log_disk_bytes,
            "log_disk_bytes_after": after.log_disk_bytes,
            "live_bytes_after": after.live_bytes,
            "space_amplification_after": space_amplification_json(&after),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(Outcome::Done);
    }
    if report.n_segments_compacted == 0 {
        println!("nothing worth compacting: the log takes {}", footprint(&after));
        return Ok(Outcome::Done);
    }
    let tombstones = match report.n_tombstones_copied {
        0 => format!("dropped {}", count(report.n_tombstones_dropped, "tombstone")),
        n_copied => {
            format!("dropped {} and carried {n_copied} forward", count(report.n_tombstones_dropped, "tombstone"))
        }
    };
    println!(
        "compacted {}: copied {} ({}), {tombstones}, gave back {}; the log now takes {}",
        count(report.n_segments_compacted, "segment"),
        count(report.n_records_copied, "record"),
        size(report.n_bytes_copied),
        size(report.n_bytes_reclaimed),
        footprint(&after)
    );
    Ok(Outcome::Done)
}

pub(crate) fn checkpoint(global: &Global, args: &JsonArgs) -> Result<Outcome> {
    let db = open(global)?;
    let report = db.checkpoint().context("writing a checkpoint")?;
    db.close()?;
    let path = &report.path;
    if args.json {
        let summary = json!({
            "path": path.display().to_string(),
            "replay_from": report.replay_from,
            "covers_until": report.covers_until,
            "n_entries": report.n_entries,
            "n_bytes": report.n_bytes,
            "duration_us": report.duration.as_micros() as u64,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(Outcome::Done);
    }
    println!(
        "wrote {}: {}, {} in {:.1?}; recovery after a crash now replays the log from address {}",
        path.display(),
        count(report.n_entries, "index entry"),
        size(report.n_bytes),
        report.duration,
        report.replay_from
    );
    Ok(Outcome::Done)
}

pub(crate) fn backup(global: &Global, args: &BackupArgs) -> Result<Outcome> {
    let db = open(global)?;
    let report = match db.backup_to(&args.backup_dir) {
        Ok(report) => report,
        // Says which directory and why already: `cannot back up to DIR: ...`.
        Err(error @ talus_engine::Error::Backup { .. }) => return Err(error.into()),
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!(
                "backing up to {} (what was written there is not a usable backup)",
                args.backup_dir.display()
            )));
        }
    };
    db.close()?;
    if args.json {
        let summary = json!({
            "path": report.path.display().to_string(),
            "log_end": report.log_end,
            "n_segments_linked": report.n_segments_linked,
            "n_segments_copied": report.n_segments_copied,
            "n_bytes_copied": report.n_bytes_copied,
            "duration_us": report.duration.as_micros() as u64,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(Outcome::Done);
    }
    println!(
        "backed up to {}: log up to address {}, {} linked, {} copied ({} copied) in {:.1?}",
        args.backup_dir.display(),
        report.log_end,
        count(report.n_segments_linked, "segment"),
        report.n_segments_copied,
        size(report.n_bytes_copied),
        report.duration
    );
    Ok(Outcome::Done)
}

/// `1 segment`, `2 segments`; `1 index entry`, `3 index entries`.
fn count(n: u64, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(0, "segment"), "0 segments");
        assert_eq!(count(1, "segment"), "1 segment");
        assert_eq!(count(12, "record"), "12 records");
        assert_eq!(count(1, "index entry"), "1 index entry");
        assert_eq!(count(3, "index entry"), "3 index entries");
    }
}
