//! `stats`: the engine's statistics as a table or as JSON.

use anyhow::Result;
use serde_json::json;
use talus_engine::Stats;

use crate::Outcome;
use crate::cli::{Global, OpenMode, StatsArgs};

pub(crate) fn stats(global: &Global, args: &StatsArgs) -> Result<Outcome> {
    let db = global.open(OpenMode::Existing)?;
    let stats = db.stats();
    db.close()?;
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&stats_json(&stats))?),
        false => print!("{}", stats_table(&global.db.display().to_string(), &stats)),
    }
    Ok(Outcome::Done)
}

pub(crate) fn stats_json(stats: &Stats) -> serde_json::Value {
    let recovery = &stats.recovery;
    json!({
        "n_keys": stats.n_keys,
        "log_begin": stats.log_begin,
        "log_head": stats.log_head,
        "log_synced_until": stats.log_synced_until,
        "log_written_until": stats.log_written_until,
        "log_tail": stats.log_tail,
        "log_bytes": stats.log_bytes,
        "n_segments": stats.n_segments,
        "segment_size": stats.segment_size,
        "memory_budget_bytes": stats.memory_budget_bytes,
        "log_memory_bytes": stats.log_memory_bytes,
        "log_memory_used_bytes": stats.log_memory_used_bytes,
        "index_mapped_bytes": stats.index_mapped_bytes,
        "max_value_len": stats.max_value_len,
        "poisoned": stats.poisoned,
        "recovery": {
            "clean": recovery.clean,
            "n_records_replayed": recovery.n_records_replayed,
            "n_bytes_scanned": recovery.n_bytes_scanned,
            "n_torn_bytes": recovery.n_torn_bytes,
            "duration_us": recovery.duration.as_micros() as u64,
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
    let opened = match recovery.clean {
        true => format!("clean (index used as is) in {:.1?}", recovery.duration),
        false => format!(
            "after a crash: {} records ({}) replayed in {:.1?}, {} torn bytes cut",
            recovery.n_records_replayed,
            size(recovery.n_bytes_scanned),
            recovery.duration,
            recovery.n_torn_bytes
        ),
    };
    let rows: Vec<(&str, String)> = vec![
        ("database", path.to_owned()),
        ("live keys", stats.n_keys.to_string()),
        (
            "log",
            format!("{} in {} segment files of {}", size(stats.log_bytes), stats.n_segments, size(stats.segment_size)),
        ),
        ("log addresses", format!("{} .. {} (memory from {})", stats.log_begin, stats.log_tail, stats.log_head)),
        ("memory budget", format!("{} (log memory {})", size(stats.memory_budget_bytes), size(stats.log_memory_bytes))),
        ("index files", format!("{} (memory-mapped)", size(stats.index_mapped_bytes))),
        ("largest value", size(stats.max_value_len)),
        ("opened", opened),
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
