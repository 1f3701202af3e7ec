//! Acceptance criterion 1, the bulk half: `export` then `import` into a new database gives
//! the same pairs (binary and empty keys and values, thousands of pairs, files and `-` for
//! stdin/stdout); import's tolerance (either case, `\r\n`, empty lines) and its summaries.

use talus_testkit::{SplitMix64, pattern, test_seed};

use crate::support::{Pairs, TempDb, format_pairs, hex, parse_pairs, path_arg};

/// A few thousand pairs of arbitrary bytes: the empty key, empty values, every byte value
/// (tabs and newlines included), and a few values of tens of KiB.
fn random_pairs(rng: &mut SplitMix64, seed: u64, n_pairs: u64) -> Pairs {
    let mut pairs = Pairs::new();
    pairs.insert(Vec::new(), b"the empty key".to_vec());
    pairs.insert(b"empty value".to_vec(), Vec::new());
    pairs.insert(vec![0x00], vec![0x00]);
    pairs.insert(vec![0xff, 0xfe], vec![0xff; 17]);
    pairs.insert(b"\t\n\r".to_vec(), b"tab\tnewline\ncr\r".to_vec());
    for tag in 0..n_pairs {
        let key = pattern(rng.between(1, 32), seed.wrapping_add(tag));
        let value_len = match rng.below(100) {
            0 => rng.between(10_000, 40_000),
            1..=5 => 0,
            _ => rng.between(1, 300),
        };
        pairs.insert(key, pattern(value_len, !seed ^ tag));
    }
    pairs
}

#[test]
fn export_then_import_gives_the_same_pairs() {
    let seed = test_seed("export_then_import_gives_the_same_pairs");
    let mut rng = SplitMix64::new(seed);
    let pairs = random_pairs(&mut rng, seed, 3000);
    let n_pairs = pairs.len();

    // Into the first database through stdin.
    let first = TempDb::new();
    let out = first.run_with_stdin(&["--sync", "never", "import", "-"], Some(&format_pairs(&pairs))).success();
    assert!(out.all_text().contains(&format!("imported {n_pairs} pairs")), "seed {seed}: {}", out.describe());
    assert_eq!(first.stats_json()["n_keys"], n_pairs as u64, "seed {seed}");

    // Out through stdout: only the pairs there, the summary on stderr.
    let out = first.run(&["export", "-"]).success();
    let exported = parse_pairs(&out.stdout).unwrap_or_else(|problem| panic!("seed {seed}: export -: {problem}"));
    assert!(exported == pairs, "seed {seed}: export - gives exactly the imported pairs");
    assert!(out.stderr.contains(&format!("exported {n_pairs} pairs")), "seed {seed}: {}", out.describe());
    assert!(
        !out.stderr.contains(['\r', '\u{1b}']),
        "no progress bar when stderr is not a terminal: {}",
        out.describe()
    );

    // Out to a file, into a second database (which the import creates), out again.
    let first_file = first.dir.path().join("first.tsv");
    let out = first.run(&["export", path_arg(&first_file)]).success();
    assert!(out.stdout.is_empty(), "an export to a file prints nothing on stdout: {}", out.describe());
    assert!(out.stderr.contains(&format!("exported {n_pairs} pairs")), "seed {seed}: {}", out.describe());
    let first_bytes = std::fs::read(&first_file).expect("read the export");
    assert!(parse_pairs(&first_bytes).ok().as_ref() == Some(&pairs), "seed {seed}: export FILE");

    let second = TempDb::new();
    assert!(!second.path.exists());
    let out = second.run(&["--sync", "never", "import", path_arg(&first_file)]).success();
    assert!(out.all_text().contains(&format!("imported {n_pairs} pairs")), "seed {seed}: {}", out.describe());
    let second_file = second.dir.path().join("second.tsv");
    second.run(&["export", path_arg(&second_file)]).success();
    let second_bytes = std::fs::read(&second_file).expect("read the export");
    let mut first_lines: Vec<&[u8]> = first_bytes.split(|&byte| byte == b'\n').collect();
    let mut second_lines: Vec<&[u8]> = second_bytes.split(|&byte| byte == b'\n').collect();
    first_lines.sort_unstable();
    second_lines.sort_unstable();
    assert!(first_lines == second_lines, "seed {seed}: both exports hold the same lines");
    assert_eq!(second.stats_json()["n_keys"], n_pairs as u64, "seed {seed}");

    // Spot checks through get.
    for (key, value) in pairs.iter().step_by(397) {
        assert_eq!(second.get_hex(key).as_ref(), Some(value), "seed {seed}: get {}", hex(key));
    }
    assert_eq!(second.get_hex(b"").as_deref(), Some(&b"the empty key"[..]), "seed {seed}");
    assert_eq!(second.get_hex(b"empty value").as_deref(), Some(&b""[..]), "seed {seed}");
}

#[test]
fn import_accepts_either_case_crlf_and_empty_lines() {
    let db = TempDb::new();
    let input = b"0A0b\tFF00\r\n\n6b\t\n\n\tABcd\r\nDEADBEEF\t0102\n";
    let out = db.run_with_stdin(&["import", "-"], Some(input)).success();
    assert!(out.all_text().contains("imported 4 pairs"), "{}", out.describe());
    let expected: Pairs = [
        (vec![0x0a, 0x0b], vec![0xff, 0x00]),
        (b"k".to_vec(), vec![]),
        (vec![], vec![0xab, 0xcd]),
        (vec![0xde, 0xad, 0xbe, 0xef], vec![0x01, 0x02]),
    ]
    .into_iter()
    .collect();
    let out = db.run(&["export", "-"]).success();
    let exported = parse_pairs(&out.stdout).unwrap_or_else(|problem| panic!("{problem}: {}", out.describe()));
    assert_eq!(exported, expected, "export prints lowercase hex");
    assert_eq!(db.run(&["get", "k"]).success().stdout, b"\n");
}

#[test]
fn import_into_an_existing_database_replaces_values() {
    let db = TempDb::new();
    db.run(&["put", "kept", "old"]).success();
    db.run(&["put", "replaced", "old"]).success();
    let mut file_pairs = Pairs::new();
    file_pairs.insert(b"replaced".to_vec(), b"new".to_vec());
    file_pairs.insert(b"added".to_vec(), b"new".to_vec());
    let file = db.dir.path().join("pairs.tsv");
    std::fs::write(&file, format_pairs(&file_pairs)).expect("write the import file");
    db.run(&["import", path_arg(&file)]).success();
    assert_eq!(db.run(&["get", "kept"]).success().stdout, b"old\n");
    assert_eq!(db.run(&["get", "replaced"]).success().stdout, b"new\n");
    assert_eq!(db.run(&["get", "added"]).success().stdout, b"new\n");
    assert_eq!(db.stats_json()["n_keys"], 3);
}

#[test]
fn export_of_an_empty_database_is_empty() {
    let db = TempDb::new();
    db.run(&["put", "only", "one"]).success();
    db.run(&["delete", "only"]).success();
    let out = db.run(&["export", "-"]).success();
    assert!(out.stdout.is_empty(), "{}", out.describe());
    assert!(out.stderr.contains("exported 0 pairs"), "{}", out.describe());
    let out = db.run_with_stdin(&["import", "-"], Some(b"")).success();
    assert!(out.all_text().contains("imported 0 pairs"), "{}", out.describe());
    assert!(db.run(&["scan"]).success().stdout.is_empty());
}
