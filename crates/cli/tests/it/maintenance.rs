//! `talus compact`, `talus checkpoint` and `talus backup`, and what `talus stats` shows of
//! the log's space: compaction gives back the space of overwrites and deletes and every
//! pair still reads back; a checkpoint is a directory under `checkpoints/`; a backup opens with
//! `--db` and exports exactly what the source exported, and a non-empty backup directory is
//! refused with one line; none of the three creates a database that is not there; `stats`
//! lists the live, tombstone and dead bytes, the space amplification and every segment.
//!
//! The database that `compact` is tested on is built through the library with background
//! compaction off: the tool's own writers (`import`, `put`) run the engine's background
//! compaction, which could take the garbage before the test's `talus compact` does.

use std::path::Path;

use talus_engine::{Options, SyncMode, WriteBatch};

use crate::support::{
    Pairs, SMALL_DB_OPTIONS, TempDb, assert_one_line_error, format_pairs, parse_pairs, path_arg, run,
};

const N_KEYS: u64 = 3000;
const N_ROUNDS: u64 = 6;

fn key(idx: u64) -> Vec<u8> {
    format!("key-{idx:06}").into_bytes()
}

/// Different in every round, and of a length that varies by key.
fn value(idx: u64, round: u64) -> Vec<u8> {
    format!("round {round} of key {idx};").repeat(2 + (idx % 5) as usize).into_bytes()
}

/// [`N_ROUNDS`] rounds of a put of every key, with a delete of every tenth key after the
/// second round; the keys of every twentieth are not put again (their tombstones must
/// survive compaction, the others' may go). Returns the pairs left, and the database's
/// statistics before it was closed.
fn build_with_overwrites(path: &Path) -> (Pairs, talus_engine::Stats) {
    let db = Options::new()
        .memory_budget(1 << 20)
        .segment_size(256 << 10)
        .sync_mode(SyncMode::Never)
        .background_compaction(false)
        .open(path)
        .expect("create the database");
    let mut pairs = Pairs::new();
    for round in 0..N_ROUNDS {
        if round == 2 {
            for idx in (0..N_KEYS).step_by(10) {
                db.delete(key(idx)).expect("delete");
                pairs.remove(&key(idx));
            }
        }
        for first in (0..N_KEYS).step_by(500) {
            let mut batch = WriteBatch::new();
            for idx in (first..(first + 500).min(N_KEYS)).filter(|idx| round < 2 || idx % 20 != 0) {
                batch.put(key(idx), value(idx, round));
                pairs.insert(key(idx), value(idx, round));
            }
            db.write(batch).expect("write a batch");
        }
    }
    let stats = db.stats();
    assert!(stats.n_segments >= 6, "the log spans many segments: {stats:?}");
    assert!(stats.dead_bytes > stats.live_bytes, "most of the log is overwritten: {stats:?}");
    db.close().expect("close");
    (pairs, stats)
}

/// The same rounds of overwrites as an import file (later lines replace earlier ones).
fn overwrites_file() -> (Pairs, Vec<u8>) {
    let mut text = Vec::new();
    let mut pairs = Pairs::new();
    for round in 0..N_ROUNDS {
        let round_pairs: Pairs = (0..N_KEYS).map(|idx| (key(idx), value(idx, round))).collect();
        text.extend_from_slice(&format_pairs(&round_pairs));
        pairs = round_pairs;
    }
    (pairs, text)
}

/// A database imported from [`overwrites_file`], with every tenth key deleted.
fn import_with_overwrites() -> (TempDb, Pairs) {
    let db = TempDb::new();
    let (mut pairs, text) = overwrites_file();
    let file = db.dir.path().join("overwrites.tsv");
    std::fs::write(&file, text).expect("write the import file");
    db.run(&["--sync", "never", "import", path_arg(&file)]).success();
    for idx in (0..N_KEYS).step_by(1000) {
        db.run(&["delete", std::str::from_utf8(&key(idx)).expect("ASCII")]).success();
        pairs.remove(&key(idx));
    }
    (db, pairs)
}

/// `talus --db PATH --memory-budget 1MiB --segment-size 256KiB ARGS`.
fn run_on(path: &Path, args: &[&str]) -> crate::support::Output {
    let mut all_args = vec!["--db", path_arg(path)];
    all_args.extend(SMALL_DB_OPTIONS);
    all_args.extend(args);
    run(all_args, None)
}

/// Every pair, through `talus export -`.
#[track_caller]
fn export_of(path: &Path) -> Pairs {
    let out = run_on(path, &["export", "-"]).success();
    parse_pairs(&out.stdout).unwrap_or_else(|problem| panic!("export -: {problem}: {}", out.describe()))
}

/// Stdout, which must be exactly one line, without its newline.
#[track_caller]
fn one_line(out: &crate::support::Output) -> String {
    let text = out.stdout_text();
    let line = text.strip_suffix('\n').unwrap_or_else(|| panic!("one line: {}", out.describe()));
    assert!(!line.contains('\n'), "one line: {}", out.describe());
    line.to_owned()
}

/// Stdout parsed as one JSON object.
#[track_caller]
fn json_of(out: &crate::support::Output) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|error| panic!("the output is JSON ({error}): {}", out.describe()));
    assert!(value.is_object(), "one JSON object: {}", out.describe());
    value
}

#[track_caller]
fn u64_field(json: &serde_json::Value, name: &str) -> u64 {
    json[name].as_u64().unwrap_or_else(|| panic!("{name} is a number: {json}"))
}

#[test]
fn compact_gives_back_the_space_of_overwrites_and_keeps_every_pair() {
    let db = TempDb::new();
    let (pairs, before) = build_with_overwrites(&db.path);

    let out = db.run(&["compact", "--json"]).success();
    let report = json_of(&out);
    assert!(u64_field(&report, "n_segments_compacted") > 0, "{report}");
    assert!(u64_field(&report, "n_bytes_reclaimed") > 0, "{report}");
    assert!(u64_field(&report, "n_tombstones_dropped") + u64_field(&report, "n_tombstones_copied") > 0, "{report}");
    for name in ["n_records_copied", "n_bytes_copied", "live_bytes_after"] {
        u64_field(&report, name);
    }
    let (disk_before, disk_after) =
        (u64_field(&report, "log_disk_bytes_before"), u64_field(&report, "log_disk_bytes_after"));
    assert!(disk_after < disk_before, "the log shrank: {report}");
    assert!(
        disk_after + u64_field(&report, "n_bytes_reclaimed") >= disk_before,
        "reclaimed at most the drop: {report}"
    );
    assert!(report["space_amplification_after"].as_f64().is_some_and(|amplification| amplification >= 1.0), "{report}");

    let stats = db.stats_json();
    assert!(u64_field(&stats, "log_disk_bytes") < before.log_disk_bytes, "{stats} after {before:?}");
    assert_eq!(u64_field(&stats, "log_disk_bytes"), disk_after, "{stats}");
    assert!(u64_field(&stats, "dead_bytes") < before.dead_bytes, "{stats} after {before:?}");
    assert_eq!(stats["n_keys"], pairs.len() as u64, "{stats}");

    assert!(export_of(&db.path) == pairs, "export gives every pair after the compaction");
    for idx in (0..N_KEYS).step_by(97) {
        assert_eq!(db.get_hex(&key(idx)), pairs.get(&key(idx)).cloned(), "get key {idx}");
    }
    db.run(&["check"]).success();

    // Everything worth it was compacted: a second run finds nothing, and says so.
    let out = db.run(&["compact"]).success();
    let line = one_line(&out);
    assert!(line.starts_with("nothing worth compacting: the log takes "), "{}", out.describe());
    assert!(line.ends_with("x)"), "the line ends with the space amplification: {}", out.describe());
}

#[test]
fn compact_says_what_it_did_in_one_line() {
    let db = TempDb::new();
    let (pairs, _) = build_with_overwrites(&db.path);
    let out = db.run(&["compact"]).success();
    let line = one_line(&out);
    assert!(line.starts_with("compacted "), "{}", out.describe());
    for part in [" segments: copied ", " records (", " tombstones", ", gave back ", "; the log now takes ", " live ("] {
        assert!(line.contains(part), "the summary holds {part:?}: {}", out.describe());
    }
    assert!(line.ends_with("x)"), "{}", out.describe());
    assert!(out.stderr.is_empty(), "{}", out.describe());
    assert!(export_of(&db.path) == pairs);
}

#[test]
fn checkpoint_writes_a_directory_under_checkpoints() {
    let (db, pairs) = import_with_overwrites();
    let out = db.run(&["checkpoint", "--json"]).success();
    let report = json_of(&out);
    let path =
        std::path::PathBuf::from(report["path"].as_str().unwrap_or_else(|| panic!("path is a string: {report}")));
    assert_eq!(path.parent(), Some(db.path.join("checkpoints").as_path()), "{report}");
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_else(|| panic!("a name: {report}"));
    assert_eq!(name, format!("{:016x}", u64_field(&report, "covers_until")), "named by what it covers: {report}");
    let meta = std::fs::read(path.join("CHECKPOINT")).unwrap_or_else(|error| panic!("read CHECKPOINT: {error}"));
    assert!(meta.starts_with(b"TALUSCKP"), "a checkpoint's metadata starts with its magic");
    assert!(path.join("index").join("MANIFEST").is_file(), "a checkpoint holds a copy of the index");
    assert_eq!(u64_field(&report, "n_entries"), pairs.len() as u64, "one entry per key: {report}");
    assert!(u64_field(&report, "n_bytes") > meta.len() as u64, "{report}");
    assert!(u64_field(&report, "replay_from") <= u64_field(&report, "covers_until"), "{report}");
    u64_field(&report, "duration_us");

    let out = db.run(&["checkpoint"]).success();
    let line = one_line(&out);
    let checkpoints = db.path.join("checkpoints");
    assert!(line.starts_with(&format!("wrote {}/", path_arg(&checkpoints))), "{}", out.describe());
    assert!(line.contains(&format!("{} index entries", pairs.len())), "{}", out.describe());
    let n_dirs = std::fs::read_dir(&checkpoints).expect("list checkpoints").count();
    assert!(n_dirs >= 1, "the checkpoints are directories in {}", checkpoints.display());

    assert!(export_of(&db.path) == pairs, "a checkpoint changes no pair");
    assert_eq!(db.stats_json()["recovery"]["clean"], true);
}

#[test]
fn a_backup_opens_and_exports_what_the_source_exports() {
    let (db, pairs) = import_with_overwrites();
    let source_export = db.run(&["export", "-"]).success().stdout;
    assert!(parse_pairs(&source_export).ok().as_ref() == Some(&pairs));

    let backup = db.dir.path().join("backup");
    let out = db.run(&["backup", path_arg(&backup)]).success();
    let line = one_line(&out);
    assert!(line.starts_with(&format!("backed up to {}: log up to address ", path_arg(&backup))), "{line}");
    assert!(line.contains(" linked, ") && line.contains(" copied ("), "{}", out.describe());
    let backup_export = run_on(&backup, &["export", "-"]).success().stdout;
    let mut source_lines: Vec<&[u8]> = source_export.split(|&byte| byte == b'\n').collect();
    let mut backup_lines: Vec<&[u8]> = backup_export.split(|&byte| byte == b'\n').collect();
    source_lines.sort_unstable();
    backup_lines.sort_unstable();
    assert!(source_lines == backup_lines, "the backup exports the same lines as the source");
    run_on(&backup, &["check"]).success();

    // The two go their own ways.
    db.run(&["put", "after", "the backup"]).success();
    let out = run_on(&backup, &["get", "after"]);
    assert_eq!(out.code, 1, "the backup holds no later write: {}", out.describe());
    run_on(&backup, &["put", "only in", "the backup"]).success();
    assert_eq!(db.run(&["get", "only in"]).code, 1);
    assert!(export_of(&backup).len() == pairs.len() + 1);

    // Into a directory that exists and is empty, with --json.
    let empty = db.dir.path().join("empty");
    std::fs::create_dir(&empty).expect("create an empty directory");
    let out = db.run(&["backup", path_arg(&empty), "--json"]).success();
    let report = json_of(&out);
    assert_eq!(report["path"].as_str(), Some(path_arg(&empty)), "{report}");
    assert!(u64_field(&report, "n_segments_linked") + u64_field(&report, "n_segments_copied") >= 1, "{report}");
    assert!(u64_field(&report, "log_end") > 0, "{report}");
    for name in ["n_bytes_copied", "duration_us"] {
        u64_field(&report, name);
    }
    let mut expected = pairs.clone();
    expected.insert(b"after".to_vec(), b"the backup".to_vec());
    assert!(export_of(&empty) == expected, "the second backup holds the later write");
}

#[test]
fn a_backup_into_a_non_empty_directory_is_refused() {
    let db = TempDb::new();
    db.run(&["put", "k", "v"]).success();
    let target = db.dir.path().join("taken");
    std::fs::create_dir(&target).expect("create a directory");
    std::fs::write(target.join("a-file"), b"already here").expect("write a file");
    for args in [&["backup", path_arg(&target)][..], &["backup", path_arg(&target), "--json"]] {
        let out = db.run(args);
        assert_one_line_error(&out, "the directory is not empty");
        assert_eq!(
            out.stderr,
            format!("talus: error: cannot back up to {}: the directory is not empty\n", path_arg(&target)),
            "{}",
            out.describe()
        );
        assert!(out.stdout.is_empty(), "{}", out.describe());
    }
    let names: Vec<_> =
        std::fs::read_dir(&target).expect("list").map(|entry| entry.expect("entry").file_name()).collect();
    assert_eq!(names, ["a-file"], "the directory is left as it was");

    // A file where the directory should be.
    let out = db.run(&["backup", path_arg(&target.join("a-file"))]);
    assert_one_line_error(&out, "cannot back up to");
    assert_eq!(db.run(&["get", "k"]).success().stdout, b"v\n");
}

#[test]
fn maintenance_of_a_missing_database_is_an_error_and_creates_nothing() {
    let db = TempDb::new();
    let backup = db.dir.path().join("backup");
    let commands: [&[&str]; 5] = [
        &["compact"],
        &["compact", "--json"],
        &["checkpoint"],
        &["checkpoint", "--json"],
        &["backup", path_arg(&backup)],
    ];
    for args in commands {
        let out = db.run(args);
        assert_one_line_error(&out, "no database");
        assert!(out.stdout.is_empty(), "talus {args:?}: {}", out.describe());
        assert!(!db.path.exists(), "talus {args:?} creates no database directory");
        assert!(!backup.exists(), "talus {args:?} creates no backup directory");
    }
    std::fs::create_dir(&db.path).expect("create an empty directory");
    for args in commands {
        assert_one_line_error(&db.run(args), "no database");
    }
    assert_eq!(std::fs::read_dir(&db.path).expect("list").count(), 0, "the empty directory stays empty");
    assert!(!backup.exists());
}

#[test]
fn maintenance_of_a_database_in_use_is_an_error() {
    let db = TempDb::new();
    db.run(&["put", "k", "v"]).success();
    let held = Options::new().memory_budget(1 << 20).open(&db.path).expect("open the database in the test");
    let backup = db.dir.path().join("backup");
    for args in [&["compact"][..], &["checkpoint"], &["backup", path_arg(&backup)]] {
        assert_one_line_error(&db.run(args), "in use");
    }
    assert!(!backup.exists());
    held.close().expect("close");
}

#[test]
fn stats_shows_live_dead_and_every_segment() {
    let db = TempDb::new();
    let (pairs, before) = build_with_overwrites(&db.path);
    let stats = db.stats_json();
    let (live, tombstones, dead) =
        (u64_field(&stats, "live_bytes"), u64_field(&stats, "tombstone_bytes"), u64_field(&stats, "dead_bytes"));
    assert_eq!((live, tombstones, dead), (before.live_bytes, before.tombstone_bytes, before.dead_bytes), "{stats}");
    assert!(tombstones > 0 && dead > live, "{stats}");
    let disk = u64_field(&stats, "log_disk_bytes");
    let amplification = stats["space_amplification"].as_f64().unwrap_or_else(|| panic!("a number: {stats}"));
    let expected = disk as f64 / live as f64;
    assert!((amplification - expected).abs() <= 0.005 + 1e-9, "{amplification} is {expected} to 2 decimals");

    let segments = stats["segments"].as_array().unwrap_or_else(|| panic!("segments is an array: {stats}"));
    assert_eq!(segments.len() as u64, u64_field(&stats, "n_segments"), "{stats}");
    let sum = |name: &str| segments.iter().map(|segment| u64_field(segment, name)).sum::<u64>();
    assert_eq!((sum("live_bytes"), sum("tombstone_bytes"), sum("dead_bytes")), (live, tombstones, dead));
    let firsts: Vec<u64> = segments.iter().map(|segment| u64_field(segment, "first_address")).collect();
    assert!(firsts.is_sorted() && firsts.len() >= 6, "{firsts:?}");
    for segment in segments {
        let written = u64_field(segment, "written_bytes");
        assert!(written <= 256 << 10, "{segment}");
    }
    for name in [
        "n_log_bytes_appended",
        "n_compaction_passes",
        "n_segments_compacted",
        "n_compaction_bytes_copied",
        "n_checkpoints",
    ] {
        u64_field(&stats["counters"], name);
    }
    assert!(stats["recovery"]["checkpoint_covers_until"].is_null(), "a clean open uses no checkpoint: {stats}");
    assert_eq!(stats["recovery"]["n_checkpoints_rejected"], 0, "{stats}");

    let out = db.run(&["stats"]).success();
    let table = out.stdout_text();
    for row in ["log records", "log on disk", "space amplification", "since open"] {
        assert!(table.contains(row), "the table shows {row:?}: {}", out.describe());
    }
    assert!(!table.contains("first address"), "segments only with --segments: {}", out.describe());
    let out = db.run(&["stats", "--segments"]).success();
    let table = out.stdout_text();
    let header_idx = table
        .lines()
        .position(|line| line.trim_start().starts_with("first address"))
        .unwrap_or_else(|| panic!("a segment table: {}", out.describe()));
    let rows: Vec<&str> = table.lines().skip(header_idx + 1).collect();
    assert_eq!(rows.len(), segments.len(), "one row per segment: {}", out.describe());
    for (row, first) in rows.iter().zip(&firsts) {
        assert!(row.trim_start().starts_with(&first.to_string()), "{row} starts with {first}");
        assert!(row.ends_with('%'), "{row} ends with the garbage share");
    }
    assert!(export_of(&db.path) == pairs);
}

#[test]
fn stats_of_a_log_with_nothing_live() {
    let db = TempDb::new();
    db.run(&["put", "k", "v"]).success();
    db.run(&["delete", "k"]).success();
    let stats = db.stats_json();
    assert_eq!(stats["live_bytes"], 0, "{stats}");
    assert!(u64_field(&stats, "log_disk_bytes") > 0, "{stats}");
    assert!(stats["space_amplification"].is_null(), "infinite amplification is null: {stats}");
    let out = db.run(&["stats"]).success();
    assert!(out.stdout_text().contains("with nothing live"), "{}", out.describe());
    let out = db.run(&["compact"]).success();
    assert!(one_line(&out).contains("nothing live"), "{}", out.describe());
}
