//! Acceptance criterion 2: `talus check` passes a sound database (exit 0) and names a
//! flipped bit by segment file and record offset (exit 1); `talus check --repair` cuts the
//! log there, says what it dropped, and leaves a database that checks clean and still holds
//! every write before the damage. Damage that stops the open (after a crash) is reported the
//! same way.
//!
//! The databases are built through the library, one record per write with a unique value,
//! so that the test finds the damaged record's bytes in the segment files by itself.

use std::path::Path;

use talus_engine::{Options, SyncMode};
use talus_testkit::{SplitMix64, test_seed};

use crate::support::{
    Pairs, TempDb, assert_key_not_found, assert_one_line_error, format_pairs, has_number_after, numbers_after,
};

const N_RECORDS: u64 = 2400;
/// The damaged record: in the middle, with whole segments of records after it.
const TARGET: u64 = 1200;
const VALUE_LEN: usize = 500;
/// docs/format.md: the segment header, the entry header in front of every record, and the
/// record header in front of the key.
const SEGMENT_HEADER_LEN: u64 = 4096;
const ENTRY_HEADER_LEN: u64 = 8;
const RECORD_HEADER_LEN: u64 = 24;

fn key(idx: u64) -> Vec<u8> {
    format!("key-{idx:06}").into_bytes()
}

/// `value-000042-value-000042-…`: recognisable, and found nowhere else in the log.
fn value(idx: u64) -> Vec<u8> {
    let mut value = format!("value-{idx:06}-").repeat(VALUE_LEN / 13 + 1).into_bytes();
    value.truncate(VALUE_LEN);
    value
}

/// Bytes an entry of one record takes in a segment file.
fn entry_len(key_len: usize, value_len: usize) -> u64 {
    ENTRY_HEADER_LEN + (RECORD_HEADER_LEN + key_len as u64 + value_len as u64).next_multiple_of(8)
}

/// Writes [`N_RECORDS`] records into a new database at `path` with small segments, then
/// closes it cleanly or, with `crash`, syncs it and stops as a crash would (the next open
/// rebuilds the index from the log). Returns where the log ends.
fn build_database(path: &Path, crash: bool) -> u64 {
    let db = Options::new()
        .memory_budget(1 << 20)
        .segment_size(256 << 10)
        .sync_mode(SyncMode::Never)
        .open(path)
        .expect("create the database");
    for idx in 0..N_RECORDS {
        db.put(key(idx), value(idx)).expect("put");
    }
    let log_end = db.stats().log_tail;
    assert!(db.stats().n_segments >= 4, "the log spans several segments: {:?}", db.stats());
    if crash {
        db.sync().expect("sync");
        db.simulate_crash();
    } else {
        db.close().expect("close");
    }
    log_end
}

/// Where a flipped bit went.
#[derive(Debug)]
struct Damage {
    /// The segment file, relative to the database directory (`log/<16 hex digits>.seg`).
    file: String,
    /// The byte offset of the damaged record's entry in that file.
    record_offset: u64,
    /// The logical log address of that entry.
    address: u64,
}

/// Finds the value of record `idx` in the segment files and flips bit `bit` in its middle.
fn flip_bit_in_value(db_path: &Path, idx: u64, bit: u32) -> Damage {
    let log_dir = db_path.join("log");
    let mut names: Vec<String> = std::fs::read_dir(&log_dir)
        .expect("list the segment files")
        .map(|entry| entry.expect("a directory entry").file_name().into_string().expect("a UTF-8 name"))
        .filter(|name| name.ends_with(".seg"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "several segment files: {names:?}");
    let needle = value(idx);
    let mut found = Vec::new();
    for name in &names {
        let stem = name.strip_suffix(".seg").expect("a .seg name");
        assert!(
            stem.len() == 16 && stem.bytes().all(|byte| byte.is_ascii_hexdigit()),
            "segment files are named by 16 hex digits: {name}"
        );
        let bytes = std::fs::read(log_dir.join(name)).expect("read a segment file");
        for (pos, window) in bytes.windows(needle.len()).enumerate() {
            if window == &needle[..] {
                found.push((name.clone(), pos as u64));
            }
        }
    }
    assert_eq!(found.len(), 1, "the value of record {idx} is in the log exactly once: {found:?}");
    let (name, value_pos) = found.pop().expect("one");
    let path = log_dir.join(&name);
    let mut bytes = std::fs::read(&path).expect("read the segment file");
    bytes[value_pos as usize + VALUE_LEN / 2] ^= 1 << bit;
    std::fs::write(&path, &bytes).expect("write the segment file");

    let record_offset = value_pos - key(idx).len() as u64 - RECORD_HEADER_LEN - ENTRY_HEADER_LEN;
    let first_address = u64::from_str_radix(name.strip_suffix(".seg").expect("a .seg name"), 16).expect("hex");
    Damage { file: format!("log/{name}"), record_offset, address: first_address + record_offset - SEGMENT_HEADER_LEN }
}

/// The lines of `text` that start with `prefix`.
fn lines_starting_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().map(str::trim_start).filter(|line| line.starts_with(prefix)).collect()
}

/// Reads back the records before the damage (a sample) and finds the ones from it on gone.
#[track_caller]
fn assert_only_writes_before_the_damage(db: &TempDb, what: &str) {
    for idx in [0, 1, TARGET / 2, TARGET - 2, TARGET - 1] {
        let out = db.run(&["get", "--raw", std::str::from_utf8(&key(idx)).expect("ASCII")]);
        assert_eq!(out.code, 0, "{what}: key {idx} was written before the damage: {}", out.describe());
        assert!(out.stdout == value(idx), "{what}: key {idx} reads back its value");
    }
    for idx in [TARGET, TARGET + 1, N_RECORDS - 1] {
        assert_key_not_found(&db.run(&["get", std::str::from_utf8(&key(idx)).expect("ASCII")]));
    }
    assert_eq!(db.stats_json()["n_keys"], TARGET, "{what}");
}

#[test]
fn check_passes_a_sound_database() {
    let db = TempDb::new();
    let pairs: Pairs = (0..600u64).map(|idx| (key(idx), value(idx))).collect();
    db.run_with_stdin(&["--sync", "never", "import", "-"], Some(&format_pairs(&pairs))).success();
    for idx in 0..50 {
        db.run(&["delete", std::str::from_utf8(&key(idx)).expect("ASCII")]).success();
    }
    db.run(&["put", "after", "the deletes"]).success();
    assert!(db.stats_json()["n_segments"].as_u64().is_some_and(|n| n >= 2));
    let out = db.run(&["check"]).success();
    assert!(!out.stdout.is_empty(), "check prints a summary: {}", out.describe());
    assert!(lines_starting_with(&out.all_text(), "problem:").is_empty(), "{}", out.describe());
    let out = db.run(&["check", "--repair"]).success();
    assert!(out.all_text().contains("repaired: nothing had to be cut"), "{}", out.describe());
    db.run(&["check"]).success();
    assert_eq!(db.stats_json()["n_keys"], 551);
}

#[test]
fn check_passes_a_crashed_but_sound_database() {
    let db = TempDb::new();
    build_database(&db.path, true);
    let out = db.run(&["check"]).success();
    assert!(lines_starting_with(&out.all_text(), "problem:").is_empty(), "{}", out.describe());
    assert_eq!(db.stats_json()["n_keys"], N_RECORDS);
}

#[test]
fn check_names_a_flipped_bit_and_repair_cuts_the_log_there() {
    let seed = test_seed("check_names_a_flipped_bit_and_repair_cuts_the_log_there");
    let bit = SplitMix64::new(seed).below(8) as u32;
    let db = TempDb::new();
    let log_end = build_database(&db.path, false);
    let damage = flip_bit_in_value(&db.path, TARGET, bit);
    let what = format!("seed {seed}: bit {bit} of record {TARGET}: {damage:?}");
    assert!(damage.address + entry_len(key(TARGET).len(), VALUE_LEN) < log_end, "{what}: records follow it");

    let out = db.run(&["check"]);
    assert_eq!(out.code, 1, "{what}: check finds the damage: {}", out.describe());
    let text = out.all_text();
    let problems = lines_starting_with(&text, "problem:");
    assert!(
        problems
            .iter()
            .any(|line| line.contains(&damage.file) && has_number_after(line, "offset ", damage.record_offset)),
        "{what}: a problem line names {} and offset {}: {}",
        damage.file,
        damage.record_offset,
        out.describe()
    );
    assert!(text.contains("talus check --repair"), "{what}: check hints at the repair: {}", out.describe());
    assert!(!text.contains("panicked"), "{}", out.describe());

    // Reading the damaged record is an error; its neighbours read fine.
    let out = db.run(&["get", std::str::from_utf8(&key(TARGET)).expect("ASCII")]);
    assert_one_line_error(&out, "talus: ");
    let out = db.run(&["get", "--raw", std::str::from_utf8(&key(TARGET + 1)).expect("ASCII")]);
    assert!(out.success().stdout == value(TARGET + 1), "{what}");

    let out = db.run(&["check", "--repair"]);
    assert_eq!(out.code, 0, "{what}: the repaired database checks clean: {}", out.describe());
    let text = out.all_text();
    let repaired = lines_starting_with(&text, "repaired:");
    assert_eq!(repaired.len(), 1, "{what}: one `repaired:` line: {}", out.describe());
    let n_bytes_dropped = log_end - damage.address;
    let n_records_dropped = N_RECORDS - 1 - TARGET;
    let line = repaired[0];
    assert!(line.contains(&damage.file), "{what}: the repair names the file: {line}");
    assert!(has_number_after(line, "offset ", damage.record_offset), "{what}: the repair names the offset: {line}");
    assert!(
        line.contains(&format!("dropped {n_bytes_dropped} bytes holding {n_records_dropped} intact records")),
        "{what}: the repair says what it dropped ({n_bytes_dropped} bytes, {n_records_dropped} records): {line}"
    );

    let out = db.run(&["check"]);
    assert_eq!(out.code, 0, "{what}: sound after the repair: {}", out.describe());
    assert_only_writes_before_the_damage(&db, &what);

    // The repaired database takes writes, and a second repair has nothing to cut.
    db.run(&["put", "after", "repair"]).success();
    let out = db.run(&["check", "--repair"]).success();
    assert!(out.all_text().contains("repaired: nothing had to be cut"), "{what}: {}", out.describe());
    assert_eq!(db.run(&["get", "after"]).success().stdout, b"repair\n");
}

#[test]
fn check_reports_damage_that_stops_the_open() {
    let seed = test_seed("check_reports_damage_that_stops_the_open");
    let bit = SplitMix64::new(seed).below(8) as u32;
    let db = TempDb::new();
    let log_end = build_database(&db.path, true);
    let damage = flip_bit_in_value(&db.path, TARGET, bit);
    let what = format!("seed {seed}: bit {bit} of record {TARGET} after a crash: {damage:?}");
    let record_end = damage.record_offset + entry_len(key(TARGET).len(), VALUE_LEN);

    let out = db.run(&["check"]);
    assert_eq!(out.code, 1, "{what}: check finds the damage: {}", out.describe());
    let text = out.all_text();
    let problems = lines_starting_with(&text, "problem:");
    assert!(
        problems.iter().any(|line| line.contains(&damage.file)
            && numbers_after(line, "offset ").iter().any(|offset| (damage.record_offset..record_end).contains(offset))),
        "{what}: a problem line names {} and an offset in the record: {}",
        damage.file,
        out.describe()
    );
    assert!(text.contains("talus check --repair"), "{what}: check hints at the repair: {}", out.describe());
    assert!(!text.contains("panicked"), "{}", out.describe());

    let out = db.run(&["check", "--repair"]);
    assert_eq!(out.code, 0, "{what}: {}", out.describe());
    let text = out.all_text();
    let repaired = lines_starting_with(&text, "repaired:");
    assert_eq!(repaired.len(), 1, "{what}: one `repaired:` line: {}", out.describe());
    let line = repaired[0];
    assert!(line.contains(&damage.file), "{what}: {line}");
    assert!(has_number_after(line, "offset ", damage.record_offset), "{what}: {line}");
    assert!(has_number_after(line, "dropped ", log_end - damage.address), "{what}: {line}");

    db.run(&["check"]).success();
    assert_only_writes_before_the_damage(&db, &what);
}

#[test]
fn check_and_repair_a_database_built_by_import() {
    let seed = test_seed("check_and_repair_a_database_built_by_import");
    let bit = SplitMix64::new(seed).below(8) as u32;
    let db = TempDb::new();
    let pairs: Pairs = (0..N_RECORDS).map(|idx| (key(idx), value(idx))).collect();
    db.run_with_stdin(&["--sync", "never", "import", "-"], Some(&format_pairs(&pairs))).success();
    let damage = flip_bit_in_value(&db.path, TARGET, bit);
    let what = format!("seed {seed}: bit {bit} of record {TARGET} of an import: {damage:?}");

    let out = db.run(&["check"]);
    assert_eq!(out.code, 1, "{what}: check finds the damage: {}", out.describe());
    let text = out.all_text();
    assert!(
        lines_starting_with(&text, "problem:")
            .iter()
            .any(|line| line.contains(&damage.file) && has_number_after(line, "offset ", damage.record_offset)),
        "{what}: a problem line names {} and offset {}: {}",
        damage.file,
        damage.record_offset,
        out.describe()
    );

    let out = db.run(&["check", "--repair"]);
    assert_eq!(out.code, 0, "{what}: {}", out.describe());
    let text = out.all_text();
    let repaired = lines_starting_with(&text, "repaired:");
    assert_eq!(repaired.len(), 1, "{what}: one `repaired:` line: {}", out.describe());
    assert!(repaired[0].contains(&damage.file) && repaired[0].contains("dropped "), "{what}: {}", repaired[0]);
    db.run(&["check"]).success();

    // Import may write in batches, and the repair drops the damaged record's whole batch:
    // what is left is the first K pairs of the file, K at most the damaged record's index.
    let out = db.run(&["scan", "--keys-only"]).success();
    let mut kept: Vec<String> = out.stdout_text().lines().map(str::to_owned).collect();
    kept.sort();
    let n_kept = kept.len() as u64;
    assert!(n_kept <= TARGET, "{what}: {n_kept} keys kept");
    let expected: Vec<String> = (0..n_kept).map(|idx| String::from_utf8(key(idx)).expect("ASCII")).collect();
    assert!(kept == expected, "{what}: the repaired database holds a prefix of the import ({n_kept} pairs)");
    for idx in [0, n_kept.saturating_sub(1)].into_iter().filter(|&idx| idx < n_kept) {
        let out = db.run(&["get", "--raw", std::str::from_utf8(&key(idx)).expect("ASCII")]);
        assert!(out.success().stdout == value(idx), "{what}: key {idx}");
    }
}
