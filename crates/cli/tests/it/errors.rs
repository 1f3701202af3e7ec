//! Acceptance criterion 1, the error half: a locked database, a missing one, malformed import
//! lines (odd-length hex, a non-hex character, no tab) and other failures each exit 2 with
//! one line on stderr that starts with `talus: ` and holds no panic or backtrace; a
//! malformed import keeps exactly the lines before the bad one.

use talus_engine::{Options, SyncMode};

use crate::support::{Pairs, TempDb, assert_one_line_error, hex, output_of, path_arg, run, talus_command};

/// Every command that reads, with the stdin it needs: they all need an existing database.
const READING_COMMANDS: [&[&str]; 8] = [
    &["get", "k"],
    &["get", "k", "--raw"],
    &["delete", "k"],
    &["scan"],
    &["export", "-"],
    &["stats"],
    &["stats", "--json"],
    &["check"],
];

#[test]
fn a_database_in_use_is_an_error() {
    let db = TempDb::new();
    db.run(&["put", "k", "v"]).success();
    let held = Options::new()
        .memory_budget(1 << 20)
        .sync_mode(SyncMode::Never)
        .open(&db.path)
        .expect("open the database in the test");
    let mut commands: Vec<&[&str]> = READING_COMMANDS.to_vec();
    commands.extend([&["put", "k", "other"][..], &["check", "--repair"], &["import", "-"]]);
    for args in commands {
        let out = db.run_with_stdin(args, Some(b"6b\t6f\n"));
        assert_one_line_error(&out, "in use");
        assert!(out.stdout.is_empty(), "talus {args:?} prints nothing on stdout: {}", out.describe());
    }
    assert_eq!(held.get(b"k").expect("get").as_deref(), Some(&b"v"[..]), "nothing was written meanwhile");
    held.close().expect("close");
    assert_eq!(db.run(&["get", "k"]).success().stdout, b"v\n", "usable once the other holder closed it");
}

#[test]
fn a_missing_database_is_an_error() {
    let db = TempDb::new();
    for args in READING_COMMANDS.iter().chain([&["check", "--repair"][..]].iter()) {
        let out = db.run(args);
        assert_one_line_error(&out, "no database");
        assert!(!db.path.exists(), "talus {args:?} creates no directory");
    }
    // A directory that exists but holds no database.
    std::fs::create_dir(&db.path).expect("create an empty directory");
    for args in READING_COMMANDS {
        let out = db.run(args);
        assert_one_line_error(&out, "no database");
    }
    // A database directory that is a file.
    let file = db.dir.path().join("a-file");
    std::fs::write(&file, b"not a database").expect("write a file");
    for args in [&["get", "k"][..], &["put", "k", "v"]] {
        let mut all_args = vec!["--db", path_arg(&file), "--memory-budget", "1MiB"];
        all_args.extend(args);
        let out = run(&all_args, None);
        assert_eq!(out.code, 2, "talus {all_args:?}: {}", out.describe());
        assert_one_line_error(&out, "talus: ");
    }
}

#[test]
fn errors_stay_one_line_when_backtraces_are_asked_for() {
    let db = TempDb::new();
    let mut command = talus_command();
    command.env("RUST_BACKTRACE", "full").env("RUST_LIB_BACKTRACE", "1");
    command.args(["--db", db.db_arg(), "get", "k"]);
    assert_one_line_error(&output_of(command, None), "no database");
}

/// The four good pairs in front of every malformed line, and three after it; an empty line
/// at line 3, so that the bad line is line 6 and four pairs precede it.
fn file_with_bad_line(bad_line: &str) -> (Pairs, Vec<u8>) {
    let before: Pairs = (0..4u8).map(|idx| (vec![b'b', idx], vec![idx; 3])).collect();
    let mut text = Vec::new();
    for (idx, (key, value)) in before.iter().enumerate() {
        if idx == 2 {
            text.push(b'\n');
        }
        text.extend_from_slice(format!("{}\t{}\n", hex(key), hex(value)).as_bytes());
    }
    text.extend_from_slice(bad_line.as_bytes());
    text.push(b'\n');
    for idx in 0..3u8 {
        text.extend_from_slice(format!("61{idx:02x}\t00\n").as_bytes());
    }
    (before, text)
}

#[test]
fn a_malformed_import_line_stops_the_import_there() {
    let bad_lines = [
        ("odd-length key", "abc\t00"),
        ("odd-length value", "00\t0a0"),
        ("non-hex key", "zz\t00"),
        ("non-hex value", "00\t0g"),
        ("no tab", "0011"),
        ("a space for a tab", "00 11"),
    ];
    for (what, bad_line) in bad_lines {
        let db = TempDb::new();
        let (before, text) = file_with_bad_line(bad_line);
        let file = db.dir.path().join("bad-input.tsv");
        std::fs::write(&file, &text).expect("write the import file");
        let out = db.run(&["import", path_arg(&file)]);
        assert_one_line_error(&out, "line 6");
        let message = out.stderr.trim();
        assert!(crate::support::has_number_after(message, "line ", 6), "{what}: {message}");
        assert!(message.contains("bad-input.tsv"), "{what}: the message names the file: {message}");
        assert!(message.contains("4 pairs"), "{what}: the message counts the pairs imported: {message}");
        assert!(db.scan_hex() == before, "{what}: exactly the lines before the bad one are imported");
    }

    // Through stdin too.
    let db = TempDb::new();
    let (before, text) = file_with_bad_line("0\t00");
    let out = db.run_with_stdin(&["import", "-"], Some(&text));
    assert_one_line_error(&out, "line 6");
    assert!(db.scan_hex() == before, "import -: exactly the lines before the bad one are imported");

    // A bad first line imports nothing (into an existing database: it is left as it was).
    let db = TempDb::new();
    db.run(&["put", "k", "v"]).success();
    let out = db.run_with_stdin(&["import", "-"], Some(b"xy\t00\n6b\t00\n"));
    assert_one_line_error(&out, "line 1");
    assert_eq!(db.run(&["get", "k"]).success().stdout, b"v\n");
    assert_eq!(db.stats_json()["n_keys"], 1);
}

#[test]
fn bad_hex_arguments_are_errors() {
    let db = TempDb::new();
    db.run(&["put", "k", "v"]).success();
    for args in [
        &["--hex", "put", "abc", "00"][..],
        &["--hex", "put", "00", "0g"],
        &["--hex", "get", "zz"],
        &["--hex", "delete", "6"],
    ] {
        let out = db.run(args);
        assert_eq!(out.code, 2, "talus {args:?}: {}", out.describe());
        assert!(!out.stderr.is_empty() && !out.stderr.contains("panicked"), "talus {args:?}: {}", out.describe());
    }
    assert_eq!(db.stats_json()["n_keys"], 1, "nothing was written");
}

#[test]
fn other_failures_are_one_line_errors() {
    let db = TempDb::new();
    db.run(&["put", "k", "v"]).success();

    // A value above the largest the memory budget allows: nothing written.
    let too_large = vec![7u8; 2 << 20];
    let out = db.run_with_stdin(&["put", "huge", "--value-file", "-"], Some(&too_large));
    assert_one_line_error(&out, "talus: ");
    assert_eq!(db.stats_json()["n_keys"], 1);

    // Files that cannot be read or written.
    let missing = db.dir.path().join("no-such-file.tsv");
    assert_one_line_error(&db.run(&["import", path_arg(&missing)]), "no-such-file.tsv");
    assert_one_line_error(&db.run(&["put", "k", "--value-file", path_arg(&missing)]), "no-such-file.tsv");
    let unwritable = db.dir.path().join("no-such-dir").join("out.tsv");
    assert_one_line_error(&db.run(&["export", path_arg(&unwritable)]), "talus: ");
    assert_eq!(db.run(&["get", "k"]).success().stdout, b"v\n", "the failures changed nothing");
}
