//! `stats`: the engine's statistics as a table or as JSON, and how sizes and the log's
//! space amplification are shown (here and by the maintenance commands).

use anyhow::Result;
use serde_json::json;
use talus_engine::{SegmentStats, Stats, SyncMode};

use crate::Outcome;
use crate::cli::{Global, OpenMode, StatsArgs};

pub(crate) fn stats(global: &Global, args: &StatsArgs) -> Result<Outcome> {
    // Without background compaction: looking at a database does not rewrite its log.
    let db = global.open_with(global.options(OpenMode::Existing, SyncMode::Always).background_compaction(false))?;
    let stats = db.stats();
    db.close()?;
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&stats_json(&stats))?),
        false => {
            print!("{}", stats_table(&global.db.display().to_string(), &stats));
            if args.segments {
                print!("\n{}", segments_table(&stats.segments));
            }
        }
    }
    Ok(Outcome::Done)
}

pub(crate) fn stats_json(stats: &Stats) -> serde_json::Value {
    let recovery = &stats.recovery;
    let counters = &stats.counters;
    json!({
        "n_keys": stats.n_keys,
        "log_begin": stats.log_begin,
        "log_head": stats.log_head,
        "log_synced_until": stats.log_synced_until,
        "log_written_until": stats.log_written_until,
        "log_tail": stats.log_tail,
        "log_bytes": stats.log_bytes,
        "n_segments": stats.n_segments,
        "n_open_segments": stats.n_open_segments,
        "segment_size": stats.segment_size,
        "memory_budget_bytes": stats.memory_budget_bytes,
        "log_memory_bytes": stats.log_memory_bytes,
        "log_memory_used_bytes": stats.log_memory_used_bytes,
        "index_mapped_bytes": stats.index_mapped_bytes,
        "max_value_len": stats.max_value_len,
        "poisoned": stats.poisoned,
        "live_bytes": stats.live_bytes,
        "tombstone_bytes": stats.tombstone_bytes,
        "dead_bytes": stats.dead_bytes,
        "log_disk_bytes": stats.log_disk_bytes,
        "space_amplification": space_amplification_json(stats),
        "segments": stats.segments.iter().map(|segment| json!({
            "first_address": segment.first_address,
            "written_bytes": segment.written_bytes,
            "live_bytes": segment.live_bytes,
            "tombstone_bytes": segment.tombstone_bytes,
            "dead_bytes": segment.dead_bytes,
        })).collect::<Vec<_>>(),
        "counters": {
            "n_puts": counters.n_puts,
            "n_deletes": counters.n_deletes,
            "n_batches": counters.n_batches,
            "n_gets": counters.n_gets,
            "n_disk_reads": counters.n_disk_reads,
            "n_syncs": counters.n_syncs,
            "n_durable_writes": counters.n_durable_writes,
            "n_evicted": counters.n_evicted,
            "n_log_bytes_appended": counters.n_log_bytes_appended,
            "n_compaction_passes": counters.n_compaction_passes,
            "n_segments_compacted": counters.n_segments_compacted,
            "n_compaction_bytes_copied": counters.n_compaction_bytes_copied,
            "n_checkpoints": counters.n_checkpoints,
        },
        "recovery": {
            "clean": recovery.clean,
            "resumed": recovery.resumed,
            "n_records_replayed": recovery.n_records_replayed,
            "n_bytes_scanned": recovery.n_bytes_scanned,
            "n_torn_bytes": recovery.n_torn_bytes,
            "duration_us": recovery.duration.as_micros() as u64,
            "checkpoint_covers_until": recovery.checkpoint_covers_until,
            "n_checkpoints_rejected": recovery.n_checkpoints_rejected,
            "repair": recovery.repair.as_ref().map(|repair| json!({
                "cut_at_address": repair.cut_at_address,
                "file": repair.file,
                "offset": repair.offset,
                "reason": repair.reason,
                "n_bytes_dropped": repair.n_bytes_dropped,
                "n_records_dropped": repair.n_records_dropped,
            })),
        },
    })
}

fn stats_table(path: &str, stats: &Stats) -> String {
    let recovery = &stats.recovery;
    let counters = &stats.counters;
    let mut opened = match (recovery.clean, recovery.resumed) {
        (true, _) => format!("clean (index used as is) in {:.1?}", recovery.duration),
        (false, true) => {
            format!("after a kill, taken up as the process left it (index used as is) in {:.1?}", recovery.duration)
        }
        (false, false) => format!(
            "index rebuilt (after a crash, or at a backup's first open) {}{} records ({}) replayed in {:.1?}, \
             {} torn bytes cut",
            match recovery.checkpoint_covers_until {
                Some(address) => format!("from the checkpoint covering the log up to address {address}: "),
                None => "from the whole log: ".to_owned(),
            },
            recovery.n_records_replayed,
            size(recovery.n_bytes_scanned),
            recovery.duration,
            recovery.n_torn_bytes
        ),
    };
    if recovery.n_checkpoints_rejected > 0 {
        opened += &format!("; {} damaged or unusable checkpoint(s) passed over", recovery.n_checkpoints_rejected);
    }
    let rows: Vec<(&str, String)> = vec![
        ("database", path.to_owned()),
        ("live keys", stats.n_keys.to_string()),
        (
            "log",
            format!("{} in {} segment files of {}", size(stats.log_bytes), stats.n_segments, size(stats.segment_size)),
        ),
        ("log addresses", format!("{} .. {} (memory from {})", stats.log_begin, stats.log_tail, stats.log_head)),
        (
            "log records",
            format!(
                "{} live, {} in tombstones, {} dead (superseded: compaction gives them back)",
                size(stats.live_bytes),
                size(stats.tombstone_bytes),
                size(stats.dead_bytes)
            ),
        ),
        ("log on disk", log_on_disk(stats)),
        ("memory budget", format!("{} (log memory {})", size(stats.memory_budget_bytes), size(stats.log_memory_bytes))),
        ("index files", format!("{} (memory-mapped)", size(stats.index_mapped_bytes))),
        ("largest value", size(stats.max_value_len)),
        ("opened", opened),
        (
            "since open",
            format!(
                "{} appended to the log, {} compaction passes, {} segments compacted ({} copied), {} checkpoints",
                size(counters.n_log_bytes_appended),
                counters.n_compaction_passes,
                counters.n_segments_compacted,
                size(counters.n_compaction_bytes_copied),
                counters.n_checkpoints
            ),
        ),
        ("poisoned", stats.poisoned.to_string()),
    ];
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    rows.iter().map(|(name, value)| format!("{name:<width$}  {value}\n")).collect()
}

/// Bytes with a binary unit: `1.5 GiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// What the log takes on disk against what is live in it: `40.1 MiB for 38.2 MiB live
/// (1.05x)`, or `256.0 KiB with nothing live`.
pub(crate) fn footprint(stats: &Stats) -> String {
    let amplification = stats.space_amplification();
    match amplification.is_finite() {
        true => format!("{} for {} live ({amplification:.2}x)", size(stats.log_disk_bytes), size(stats.live_bytes)),
        false => format!("{} with nothing live", size(stats.log_disk_bytes)),
    }
}

/// The log's space amplification for JSON: a number with two decimals, or null when
/// nothing is live (infinite).
pub(crate) fn space_amplification_json(stats: &Stats) -> serde_json::Value {
    let amplification = stats.space_amplification();
    match amplification.is_finite() {
        true => json!((amplification * 100.0).round() / 100.0),
        false => serde_json::Value::Null,
    }
}

/// The size of the segment files, and how many times the live bytes that is.
fn log_on_disk(stats: &Stats) -> String {
    let amplification = stats.space_amplification();
    match amplification.is_finite() {
        true => format!(
            "{} in segment files: {amplification:.2}x the live bytes (space amplification)",
            size(stats.log_disk_bytes)
        ),
        false => format!("{} in segment files, with nothing live", size(stats.log_disk_bytes)),
    }
}

/// One line per segment file: what it holds, and the share of it that is dead.
fn segments_table(segments: &[SegmentStats]) -> String {
    const HEADER: [&str; 6] = ["first address", "written", "live", "tombstones", "dead", "garbage"];
    let rows: Vec<[String; 6]> = segments
        .iter()
        .map(|segment| {
            let garbage = match segment.written_bytes {
                0 => "-".to_owned(),
                written => format!("{:.1}%", segment.dead_bytes as f64 * 100.0 / written as f64),
            };
            [
                segment.first_address.to_string(),
                size(segment.written_bytes),
                size(segment.live_bytes),
                size(segment.tombstone_bytes),
                size(segment.dead_bytes),
                garbage,
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; 6]| {
        let cells: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:>width$}")).collect();
        format!("{}\n", cells.join("  "))
    };
    let mut table = line(HEADER);
    for row in &rows {
        table += &line(row.each_ref().map(String::as_str));
    }
    table
}
