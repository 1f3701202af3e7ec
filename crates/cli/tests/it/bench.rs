//! Acceptance criterion 3: `talus bench` (small) finishes, prints a table with `ops/s` and
//! `p99` and rows for `load` and `run`, or one JSON object with `--json`, and removes its
//! temporary database unless `--keep`. No timing is asserted: only the shape of the output.

use std::path::Path;

use crate::support::{Output, path_arg, run};

/// `talus bench ARGS --dir DIR`.
fn bench(dir: &Path, args: &[&str]) -> Output {
    let mut all_args = vec!["bench", "--dir", path_arg(dir)];
    all_args.extend(args);
    run(&all_args, None)
}

fn entries_of(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list the bench directory")
        .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// Fails the test unless `out` printed the table: a header with `ops/s` and `p99`, then
/// rows for the `load` and `run` phases.
#[track_caller]
fn assert_table(out: &Output) {
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    let header_idx = lines
        .iter()
        .position(|line| line.contains("ops/s") && line.contains("p99"))
        .unwrap_or_else(|| panic!("a header line with ops/s and p99: {}", out.describe()));
    let first_words: Vec<&str> =
        lines[header_idx + 1..].iter().filter_map(|line| line.split_whitespace().next()).collect();
    for phase in ["load", "run"] {
        assert!(first_words.contains(&phase), "a `{phase}` row below the header: {}", out.describe());
    }
}

/// Fails the test unless `out` printed one JSON object (and no table).
#[track_caller]
fn assert_json(out: &Output) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|error| panic!("--json prints JSON ({error}): {}", out.describe()));
    assert!(report.is_object(), "--json prints one object: {}", out.describe());
    let text = report.to_string();
    for phase in ["load", "run"] {
        assert!(text.contains(phase), "the JSON reports the `{phase}` phase: {report}");
    }
    report
}

#[test]
fn bench_prints_a_table_and_removes_its_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bench(dir.path(), &["--keys", "20000", "--ops", "40000", "--seed", "7"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_table(&out);
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    assert_eq!(entries_of(dir.path()), Vec::<String>::new(), "bench removes its temporary database");
}

#[test]
fn bench_json_prints_one_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bench(dir.path(), &["--keys", "5000", "--ops", "10000", "--json", "--memory-budget", "8MiB"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_json(&out);
    assert_eq!(entries_of(dir.path()), Vec::<String>::new(), "bench removes its temporary database");
}

#[test]
fn bench_keep_leaves_the_loaded_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Workload c only reads: the database holds exactly the loaded keys.
    let out = bench(dir.path(), &["--workload", "c", "--keys", "3000", "--ops", "3000", "--keep", "--seed", "3"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_table(&out);
    let entries = entries_of(dir.path());
    assert_eq!(entries.len(), 1, "--keep leaves the one database directory: {entries:?}");
    // The database is that directory or one folder inside it: the one holding the log.
    let kept_dir = dir.path().join(&entries[0]);
    let kept = std::iter::once(kept_dir.clone())
        .chain(std::fs::read_dir(&kept_dir).expect("list the kept directory").map(|entry| entry.expect("entry").path()))
        .find(|path| path.join("log").is_dir())
        .unwrap_or_else(|| panic!("a database (a log folder) in {}", kept_dir.display()));
    let out = run(["--db", path_arg(&kept), "--memory-budget", "8MiB", "stats", "--json"], None);
    assert_eq!(out.code, 0, "the kept directory is a database: {}", out.describe());
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats --json");
    assert_eq!(stats["n_keys"], 3000, "{stats}");
    let out = run(["--db", path_arg(&kept), "--memory-budget", "8MiB", "check"], None);
    assert_eq!(out.code, 0, "the kept database checks clean: {}", out.describe());
}

#[test]
fn bench_runs_every_workload_and_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    for workload in ["a", "b", "c", "f", "w"] {
        let out = bench(dir.path(), &["--workload", workload, "--keys", "2000", "--ops", "4000", "--json"]);
        assert_eq!(out.code, 0, "--workload {workload}: {}", out.describe());
        assert_json(&out);
    }
    let out = bench(
        dir.path(),
        &[
            "--distribution",
            "uniform",
            "--threads",
            "3",
            "--key-size",
            "24",
            "--value-size",
            "300",
            "--keys",
            "3000",
            "--ops",
            "6000",
            "--memory-budget",
            "4MiB",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_table(&out);
    let out = bench(dir.path(), &["--zipf-theta", "0.5", "--keys", "2000", "--ops", "2000", "--sync", "100ms"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_table(&out);
    assert_eq!(entries_of(dir.path()), Vec::<String>::new(), "every run removed its database");
}
