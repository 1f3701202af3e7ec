//! The results as a table on stdout, and as `results.json` and `results.csv`.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::Value;

/// Columns of the engine rows, in order: (JSON key, heading).
const COLUMNS: &[(&str, &str)] = &[
    ("workload", "workload"),
    ("mode", "mode"),
    ("engine", "engine"),
    ("load_ops_per_sec", "load/s"),
    ("run_ops_per_sec", "ops/s"),
    ("read_p50_us", "read p50 µs"),
    ("read_p99_us", "read p99"),
    ("read_p999_us", "read p999"),
    ("write_p50_us", "write p50 µs"),
    ("write_p99_us", "write p99"),
    ("write_p999_us", "write p999"),
    ("peak_rss_bytes", "peak RSS MiB"),
    ("write_amplification", "write amp"),
    ("space_amplification", "space amp"),
];

fn cell(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        Value::Number(number) => {
            let number = number.as_f64().unwrap_or(0.0);
            match key {
                "peak_rss_bytes" | "disk_bytes_before_compaction" | "disk_bytes_after_compaction" => {
                    format!("{:.0}", number / (1 << 20) as f64)
                }
                // Reopens range from microseconds (no recovery) to seconds: milliseconds to µs.
                key if key.starts_with("open_after") => format!("{:.3}", number * 1000.0),
                key if key.ends_with("_secs") => format!("{number:.3}"),
                "load_ops_per_sec" | "run_ops_per_sec" | "writes_per_sec" | "keys" => format!("{number:.0}"),
                key if key.ends_with("amplification") => format!("{number:.2}"),
                _ => format!("{number:.1}"),
            }
        }
        other => other.to_string(),
    }
}

/// Columns of the redb-phases rows.
const PHASE_COLUMNS: &[(&str, &str)] = &[
    ("engine", "engine"),
    ("bulk_load_secs", "bulk load s"),
    ("individual_writes_secs", "1,000 writes s"),
    ("batch_writes_secs", "100 batches s"),
    ("gets_1_thread_secs", "gets 1 thread s"),
    ("gets_2_threads_secs", "gets 2 threads s"),
    ("removals_secs", "remove half s"),
    ("compaction_secs", "compaction s"),
    ("disk_bytes_before_compaction", "disk MiB"),
    ("disk_bytes_after_compaction", "after compaction MiB"),
];

/// Columns of the overwrite-churn rows.
const CHURN_COLUMNS: &[(&str, &str)] = &[
    ("engine", "engine"),
    ("writes_per_sec", "writes/s"),
    ("peak_space_amplification", "peak space amp"),
    ("final_space_amplification", "final space amp"),
    ("write_amplification", "write amp"),
    ("peak_rss_bytes", "peak RSS MiB"),
];

/// Columns of the recovery rows.
const RECOVERY_COLUMNS: &[(&str, &str)] = &[
    ("engine", "engine"),
    ("keys", "keys"),
    ("open_after_sigkill_secs", "open after SIGKILL ms"),
    ("open_after_clean_close_secs", "open after clean close ms"),
];

/// One result whose every number is the median of `runs`' (the first run's text fields).
pub fn median_of(runs: &[Value]) -> Value {
    let mut median = runs[0].clone();
    if let Value::Object(fields) = &mut median {
        for (key, value) in fields.iter_mut() {
            if !value.is_number() {
                continue;
            }
            let mut numbers: Vec<f64> = runs.iter().filter_map(|run| run[key.as_str()].as_f64()).collect();
            numbers.sort_by(f64::total_cmp);
            if let Some(number) = serde_json::Number::from_f64(numbers[numbers.len() / 2]) {
                *value = Value::Number(number);
            }
        }
        fields.insert("runs".to_owned(), Value::from(runs.len()));
    }
    median
}

/// Prints the raw baselines, then one row per engine run, then the redb-phases rows.
pub fn print_table(results: &[Value]) {
    for raw in results.iter().filter(|result| result["kind"] == "raw") {
        println!("raw disk: {}: {}", cell(raw, "what"), cell(raw, "summary"));
    }
    print_rows(results, "engine", COLUMNS, 3);
    if results.iter().any(|result| result["kind"] == "phases") {
        println!();
        println!("redb-phases:");
        print_rows(results, "phases", PHASE_COLUMNS, 1);
    }
    if results.iter().any(|result| result["kind"] == "churn") {
        println!();
        println!("overwrite-churn:");
        print_rows(results, "churn", CHURN_COLUMNS, 1);
    }
    if results.iter().any(|result| result["kind"] == "recovery") {
        println!();
        println!("recovery:");
        print_rows(results, "recovery", RECOVERY_COLUMNS, 1);
    }
}

fn print_rows(results: &[Value], kind: &str, columns: &[(&str, &str)], n_text: usize) {
    let rows: Vec<Vec<String>> = results
        .iter()
        .filter(|result| result["kind"] == kind)
        .map(|result| columns.iter().map(|(key, _)| cell(result, key)).collect())
        .collect();
    if rows.is_empty() {
        return;
    }
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(idx, (_, heading))| {
            rows.iter().map(|row| row[idx].chars().count()).chain([heading.chars().count()]).max().unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(idx, (cell, width))| match idx < n_text {
                true => format!("{cell:<width$}"),
                false => format!("{cell:>width$}"),
            })
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|(_, heading)| heading.to_string()).collect());
    for row in rows {
        line(row);
    }
}

/// Writes `results.json` (every field) and `results.csv` (the engine rows) into `dir`.
pub fn write_files(dir: &Path, results: &[Value]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(results)? + "\n")?;
    let mut csv = COLUMNS.iter().map(|(key, _)| *key).collect::<Vec<_>>().join(",") + ",bytes_written,disk_bytes\n";
    for result in results.iter().filter(|result| result["kind"] == "engine") {
        let mut cells: Vec<String> = COLUMNS
            .iter()
            .map(|(key, _)| match &result[*key] {
                Value::Null => String::new(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect();
        cells.push(result["bytes_written"].to_string());
        cells.push(result["disk_bytes"].to_string());
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    std::fs::write(dir.join("results.csv"), csv)?;
    Ok(())
}
