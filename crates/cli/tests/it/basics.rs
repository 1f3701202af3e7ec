//! Acceptance criterion 1, the single-key half: `put`, `get`, `delete` and `scan` round trips
//! with text and arbitrary bytes (`--hex`, `--value-file`, `--raw`), the escaped default
//! output, exit code 1 for a missing key; and the rest of the surface: `stats`, the global
//! options (`--db`, `TALUS_DB`, sizes, `--sync`), `--help` and clap's usage errors.

use std::collections::BTreeSet;

use talus_testkit::{SplitMix64, pattern, test_seed};

use crate::support::{Pairs, TempDb, assert_key_not_found, hex, output_of, path_arg, run, talus_command, unhex};

const SUBCOMMANDS: [&str; 12] =
    ["put", "get", "delete", "scan", "export", "import", "stats", "check", "compact", "checkpoint", "backup", "bench"];

#[test]
fn put_get_delete_round_trip() {
    let db = TempDb::new();
    let out = db.run(&["put", "apple", "red"]).success();
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "put prints nothing: {}", out.describe());
    assert!(db.path.is_dir(), "put creates the database directory");
    assert_eq!(db.run(&["get", "apple"]).success().stdout, b"red\n");

    db.run(&["put", "apple", "green"]).success();
    db.run(&["put", "banana", "yellow"]).success();
    assert_eq!(db.run(&["get", "apple"]).success().stdout, b"green\n", "a second put replaces the value");

    let out = db.run(&["delete", "apple"]).success();
    assert!(out.stdout.is_empty(), "delete prints nothing: {}", out.describe());
    let out = db.run(&["get", "apple"]);
    assert_key_not_found(&out);
    assert!(out.stdout.is_empty(), "nothing on stdout for a missing key: {}", out.describe());
    assert_eq!(out.stderr.trim(), "talus: key not found: apple");
    let out = db.run(&["delete", "apple"]);
    assert_key_not_found(&out);
    assert_eq!(out.stderr.trim(), "talus: key not found: apple");
    assert_key_not_found(&db.run(&["get", "cherry"]));
    assert_eq!(db.run(&["get", "banana"]).success().stdout, b"yellow\n", "the other key is untouched");
}

#[test]
fn binary_keys_and_values_round_trip_through_hex() {
    let seed = test_seed("binary_keys_and_values_round_trip_through_hex");
    let mut rng = SplitMix64::new(seed);
    let db = TempDb::new();
    let mut model = Pairs::new();
    let mut keys: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0xff],
        vec![0x00, 0xff, 0x00],
        b"\t".to_vec(),
        b"\n".to_vec(),
        b"a\tb\nc\r\\".to_vec(),
        "ключ".as_bytes().to_vec(),
    ];
    for tag in 0..12 {
        keys.push(pattern(rng.between(1, 40), seed ^ tag));
    }
    let mut values: Vec<Vec<u8>> = vec![vec![], vec![0x00], vec![0xff; 3], b"\t\n\r".to_vec()];
    for tag in 0..keys.len() as u64 {
        values.push(pattern(rng.between(0, 600), !seed ^ tag));
    }
    // The first put creates the database: a delete before it would find none.
    db.put_hex(&keys[1], &values[1]);
    model.insert(keys[1].clone(), values[1].clone());
    for _ in 0..40 {
        let key = &keys[rng.below(keys.len() as u64) as usize];
        if rng.below(5) == 0 {
            let out = db.run(&["--hex", "delete", &hex(key)]);
            match model.remove(key) {
                Some(_) => assert_eq!(out.code, 0, "seed {seed}: delete {}: {}", hex(key), out.describe()),
                None => assert_key_not_found(&out),
            }
        } else {
            let value = &values[rng.below(values.len() as u64) as usize];
            db.put_hex(key, value);
            model.insert(key.clone(), value.clone());
        }
    }
    for key in &keys {
        assert_eq!(db.get_hex(key), model.get(key).cloned(), "seed {seed}: get --hex {}", hex(key));
    }
    assert!(db.scan_hex() == model, "seed {seed}: scan --hex shows exactly the pairs put and not deleted");
    let stats = db.stats_json();
    assert_eq!(stats["n_keys"], model.len() as u64, "seed {seed}: {stats}");
}

#[test]
fn value_file_and_get_raw_carry_exact_bytes() {
    let db = TempDb::new();
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(256 * 4 + 7).collect();
    let out = db.run_with_stdin(&["put", "blob", "--value-file", "-"], Some(&every_byte)).success();
    assert!(out.stdout.is_empty(), "put prints nothing: {}", out.describe());
    assert_eq!(db.run(&["get", "blob", "--raw"]).success().stdout, every_byte, "get --raw: exact bytes, no newline");
    let expected_hex = format!("{}\n", hex(&every_byte));
    assert_eq!(db.run(&["--hex", "get", &hex(b"blob")]).success().stdout_text(), expected_hex);

    // A value file on disk, and an empty one.
    let file = db.dir.path().join("value.bin");
    let file_value = pattern(10_000, 7);
    std::fs::write(&file, &file_value).expect("write the value file");
    db.run(&["put", "from-file", "--value-file", path_arg(&file)]).success();
    assert_eq!(db.run(&["get", "--raw", "from-file"]).success().stdout, file_value);
    let empty_file = db.dir.path().join("empty.bin");
    std::fs::write(&empty_file, b"").expect("write the empty file");
    db.run(&["put", "nothing", "--value-file", path_arg(&empty_file)]).success();
    assert_eq!(db.run(&["get", "nothing", "--raw"]).success().stdout, b"");
    assert_eq!(db.run(&["get", "nothing"]).success().stdout, b"\n", "an empty value prints as an empty line");

    // Stdin carries text with line ends unchanged too.
    let text = b"line one\r\nline two\n\n";
    db.run_with_stdin(&["put", "text", "--value-file", "-"], Some(text)).success();
    assert_eq!(db.run(&["get", "text", "--raw"]).success().stdout, text);
}

#[test]
fn get_and_scan_escape_their_default_output() {
    let db = TempDb::new();
    db.run(&["put", "greeting", "héllo wörld ✓"]).success();
    db.run(&["put", "tabbed", "a\tb\nc\\d\re"]).success();
    db.run(&["put", "k\tey", "v"]).success();
    // A control character and bytes that are not UTF-8, through --hex.
    db.put_hex(b"binary", b"x\x01y\xff\xfez\x00");

    assert_eq!(db.run(&["get", "greeting"]).success().stdout_text(), "héllo wörld ✓\n", "UTF-8 is kept");
    assert_eq!(db.run(&["get", "tabbed"]).success().stdout_text(), "a\\tb\\nc\\\\d\\re\n");
    let binary = db.run(&["get", "binary"]).success().stdout_text();
    assert_eq!(binary.to_ascii_lowercase(), "x\\x01y\\xff\\xfez\\x00\n", "other bytes as \\xNN");
    let out = db.run(&["get", "k\tey"]).success();
    assert_eq!(out.stdout, b"v\n");

    let out = db.run(&["scan"]).success();
    let text = out.stdout_text();
    assert!(text.ends_with('\n'), "{}", out.describe());
    let lines: BTreeSet<String> = text.lines().map(str::to_ascii_lowercase).collect();
    let expected: BTreeSet<String> =
        ["greeting\théllo wörld ✓", "tabbed\ta\\tb\\nc\\\\d\\re", "k\\tey\tv", "binary\tx\\x01y\\xff\\xfez\\x00"]
            .into_iter()
            .map(str::to_owned)
            .collect();
    assert_eq!(lines, expected, "scan: one escaped `KEY<tab>VALUE` line per pair");
    assert_eq!(text.lines().count(), 4, "{}", out.describe());

    let out = db.run(&["get", "missing\tkey"]);
    assert_key_not_found(&out);
    assert_eq!(out.stderr.trim(), "talus: key not found: missing\\tkey", "the key is escaped in the message");
}

#[test]
fn scan_limit_keys_only_and_raw() {
    let db = TempDb::new();
    let mut model = Pairs::new();
    for idx in 0..12u8 {
        let key = format!("key-{idx:02}").into_bytes();
        // Bytes that are neither tabs nor newlines, so that raw lines split cleanly.
        let value: Vec<u8> = vec![0x00, 0xff, 0x80, b'a' + idx, 0x7f];
        db.put_hex(&key, &value);
        model.insert(key, value);
    }

    let out = db.run(&["--hex", "scan", "--limit", "5"]).success();
    let limited = crate::support::parse_pairs(&out.stdout).unwrap_or_else(|problem| panic!("{problem}"));
    assert_eq!(limited.len(), 5, "--limit 5: {}", out.describe());
    for (key, value) in &limited {
        assert_eq!(model.get(key), Some(value), "--limit prints real pairs");
    }
    let out = db.run(&["scan", "--limit", "0"]).success();
    assert!(out.stdout.is_empty(), "--limit 0 prints nothing: {}", out.describe());
    let out = db.run(&["scan", "--limit", "100"]).success();
    assert_eq!(out.stdout_text().lines().count(), 12, "a limit above the count prints everything");

    let out = db.run(&["scan", "--keys-only"]).success();
    let keys: BTreeSet<Vec<u8>> = out.stdout_text().lines().map(|line| line.as_bytes().to_vec()).collect();
    assert_eq!(keys, model.keys().cloned().collect(), "--keys-only: one key per line");
    assert_eq!(out.stdout_text().lines().count(), 12);
    let out = db.run(&["--hex", "scan", "--keys-only"]).success();
    let hex_keys: BTreeSet<Vec<u8>> = out.stdout_text().lines().map(|line| unhex(line).expect("hex keys")).collect();
    assert_eq!(hex_keys, keys, "--hex --keys-only: one hex key per line");

    let out = db.run(&["scan", "--raw"]).success();
    assert!(out.stdout.ends_with(b"\n"), "{}", out.describe());
    let mut raw = Pairs::new();
    for line in out.stdout[..out.stdout.len() - 1].split(|&byte| byte == b'\n') {
        let tab = line.iter().position(|&byte| byte == b'\t').expect("a tab in every raw line");
        raw.insert(line[..tab].to_vec(), line[tab + 1..].to_vec());
    }
    assert!(raw == model, "scan --raw: exact bytes: {}", out.describe());
}

#[test]
fn stats_reports_what_was_put() {
    let db = TempDb::new();
    for idx in 0..25 {
        db.run(&["put", &format!("key {idx}"), &format!("value {idx}")]).success();
    }
    for idx in 0..5 {
        db.run(&["delete", &format!("key {idx}")]).success();
    }
    let stats = db.stats_json();
    assert_eq!(stats["n_keys"], 20, "{stats}");
    assert_eq!(stats["memory_budget_bytes"], 1u64 << 20, "{stats}");
    assert!(stats["log_bytes"].as_u64().is_some_and(|bytes| bytes > 0), "{stats}");
    assert!(stats["n_segments"].as_u64().is_some_and(|n| n >= 1), "{stats}");
    assert!(stats["index_mapped_bytes"].as_u64().is_some(), "{stats}");
    assert_eq!(stats["recovery"]["clean"], true, "every command closes the database cleanly: {stats}");

    let out = db.run(&["stats"]).success();
    let table = out.stdout_text();
    assert!(table.lines().count() >= 3, "stats prints a table: {}", out.describe());
    assert!(table.contains("20"), "the table shows the 20 keys: {}", out.describe());
}

#[test]
fn segment_size_applies_when_the_database_is_created() {
    let db = TempDb::new();
    for idx in 0..8 {
        let value = pattern(100_000, idx);
        db.run_with_stdin(&["put", &format!("big {idx}"), "--value-file", "-"], Some(&value)).success();
    }
    let stats = db.stats_json();
    assert!(stats["n_segments"].as_u64().is_some_and(|n| n >= 3), "800 KB of log in 256 KiB segments: {stats}");
    // Later opens with another --segment-size keep the database's own.
    let out =
        run(["--db", db.db_arg(), "--memory-budget", "1MiB", "--segment-size", "1GiB", "get", "big 3", "--raw"], None);
    assert_eq!(out.success().stdout, pattern(100_000, 3));
}

#[test]
fn sizes_parse_in_every_documented_form() {
    let db = TempDb::new();
    db.run(&["put", "k", "v"]).success();
    for budget in ["2097152", "2MiB", "2048KiB"] {
        let out = run(["--db", db.db_arg(), "--memory-budget", budget, "stats", "--json"], None).success();
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats --json");
        assert_eq!(stats["memory_budget_bytes"], 2u64 << 20, "--memory-budget {budget}: {stats}");
    }
    for budget in ["4M", "16MiB"] {
        let out = run(["--db", db.db_arg(), "--memory-budget", budget, "get", "k"], None);
        assert_eq!(out.success().stdout, b"v\n", "--memory-budget {budget}");
    }
}

#[test]
fn global_options_go_before_or_after_the_subcommand() {
    let db = TempDb::new();
    let out = run(["put", "k", "v", "--db", db.db_arg(), "--memory-budget", "1MiB", "--sync", "never"], None);
    out.success();
    let out = run(["get", "--db", db.db_arg(), "k", "--memory-budget", "1MiB"], None);
    assert_eq!(out.success().stdout, b"v\n");
    let out = run(["-x", "get", "6b", "--db", db.db_arg()], None);
    assert_eq!(out.success().stdout, b"76\n");
    let out = run(["get", "6b", "--hex", "--db", db.db_arg()], None);
    assert_eq!(out.success().stdout, b"76\n");
}

#[test]
fn the_database_comes_from_talus_db_or_defaults_to_talus_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from_env = dir.path().join("from-env");
    let mut command = talus_command();
    command.env("TALUS_DB", &from_env).args(["--memory-budget", "1MiB", "put", "k", "env"]);
    output_of(command, None).success();
    assert!(from_env.is_dir(), "TALUS_DB names the database");
    let out = run(["--db", path_arg(&from_env), "get", "k"], None);
    assert_eq!(out.success().stdout, b"env\n");

    let mut command = talus_command();
    command.current_dir(dir.path()).args(["--memory-budget", "1MiB", "put", "k", "default"]);
    output_of(command, None).success();
    assert!(dir.path().join("talus-data").is_dir(), "the default database is ./talus-data");
    let mut command = talus_command();
    command.current_dir(dir.path()).args(["get", "k"]);
    assert_eq!(output_of(command, None).success().stdout, b"default\n");

    // --db wins over TALUS_DB.
    let mut command = talus_command();
    command.env("TALUS_DB", &from_env).args(["--db", path_arg(&dir.path().join("talus-data")), "get", "k"]);
    assert_eq!(output_of(command, None).success().stdout, b"default\n");
}

#[test]
fn every_sync_mode_writes_durably_by_exit() {
    let db = TempDb::new();
    for (idx, mode) in ["always", "never", "100ms", "2s"].into_iter().enumerate() {
        let key = format!("key {idx}");
        db.run(&["--sync", mode, "put", &key, mode]).success();
        let out = db.run(&["get", &key]).success();
        assert_eq!(out.stdout_text(), format!("{mode}\n"), "--sync {mode}");
    }
    assert_eq!(db.stats_json()["n_keys"], 4);
}

#[test]
fn every_subcommand_has_help() {
    for args in [vec!["--help"], vec!["help"], vec!["-h"]] {
        let out = run(&args, None).success();
        let text = out.stdout_text();
        for subcommand in SUBCOMMANDS {
            assert!(text.contains(subcommand), "talus {args:?} lists {subcommand}: {}", out.describe());
        }
    }
    for subcommand in SUBCOMMANDS {
        let out = run([subcommand, "--help"], None).success();
        assert!(out.stdout_text().contains("Usage"), "talus {subcommand} --help: {}", out.describe());
        run(["help", subcommand], None).success();
    }
}

#[test]
fn usage_errors_exit_2() {
    let db = TempDb::new();
    db.run(&["put", "k", "v"]).success();
    let db_arg = db.db_arg();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["frobnicate"],
        vec!["--db", db_arg, "get"],
        vec!["--db", db_arg, "get", "k", "extra"],
        vec!["--db", db_arg, "put", "k"],
        vec!["--db", db_arg, "get", "k", "--no-such-flag"],
        vec!["--db", db_arg, "--memory-budget", "banana", "get", "k"],
        vec!["--db", db_arg, "--memory-budget", "12XB", "get", "k"],
        vec!["--db", db_arg, "--sync", "sometimes", "get", "k"],
        vec!["--db", db_arg, "scan", "--limit", "many"],
        vec!["--db", db_arg, "scan", "--limit", "-1"],
        vec!["--db", db_arg, "bench", "--workload", "z"],
        vec!["--db", db_arg, "bench", "--keys", "lots"],
        vec!["--db", db_arg, "bench", "--distribution", "normal"],
    ];
    for args in cases {
        let out = run(&args, None);
        assert_eq!(out.code, 2, "talus {args:?}: {}", out.describe());
        assert!(!out.stderr.is_empty(), "talus {args:?} says why: {}", out.describe());
        assert!(!out.stderr.contains("panicked"), "talus {args:?}: {}", out.describe());
    }
    // Nothing above touched the database.
    assert_eq!(db.run(&["get", "k"]).success().stdout, b"v\n");
}
