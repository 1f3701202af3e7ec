//! Helpers the CLI's test files share: running the `talus` binary (arguments, stdin, exit
//! code, stdout, stderr), a temporary database with small segments, hex and the line format
//! of `talus export`, and the check that an error is one clean line.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A database's contents, or the pairs of an export file.
pub type Pairs = BTreeMap<Vec<u8>, Vec<u8>>;

/// The global options of every [`TempDb`] run: a small memory budget and segments, so that
/// a few hundred KiB of log spans several segment files.
pub const SMALL_DB_OPTIONS: [&str; 4] = ["--memory-budget", "1MiB", "--segment-size", "256KiB"];

/// What one run of the binary did.
#[derive(Debug)]
pub struct Output {
    /// The exit code (-1 if a signal ended it).
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    /// Stdout as text (failing the test if it is not UTF-8).
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).unwrap_or_else(|_| panic!("stdout is not UTF-8: {self:?}"))
    }

    /// Stdout and stderr together, as text (lossily).
    pub fn all_text(&self) -> String {
        format!("{}\n{}", String::from_utf8_lossy(&self.stdout), self.stderr)
    }

    /// Fails the test unless the run exited 0.
    #[track_caller]
    pub fn success(self) -> Output {
        assert_eq!(self.code, 0, "expected success: {}", self.describe());
        self
    }

    /// The run, readable in a failure message.
    pub fn describe(&self) -> String {
        format!(
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }
}

/// A command for the `talus` binary with an environment that cannot leak into the test: no
/// `TALUS_DB`, no backtraces asked for, no log filter.
pub fn talus_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_talus"));
    for name in ["TALUS_DB", "RUST_BACKTRACE", "RUST_LIB_BACKTRACE", "RUST_LOG"] {
        command.env_remove(name);
    }
    command
}

/// Runs `command`, feeding it `stdin` (or nothing: stdin is closed), and collects what it did.
pub fn output_of(mut command: Command, stdin: Option<&[u8]>) -> Output {
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn talus");
    // Written from a thread: a large input and a large output would otherwise deadlock.
    let writer = stdin.map(|bytes| {
        let bytes = bytes.to_vec();
        let mut pipe = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            // The tool may stop reading early (a malformed import line); a broken pipe is fine.
            let _ = pipe.write_all(&bytes);
        })
    });
    let output = child.wait_with_output().expect("wait for talus");
    if let Some(writer) = writer {
        writer.join().expect("stdin writer");
    }
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `talus ARGS` with `stdin`.
pub fn run<I, S>(args: I, stdin: Option<&[u8]>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = talus_command();
    command.args(args);
    output_of(command, stdin)
}

/// A temporary directory of its own holding (once a command creates it) the database
/// `<dir>/db`.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> TempDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        TempDb { dir, path }
    }

    /// The database directory as an argument.
    pub fn db_arg(&self) -> &str {
        path_arg(&self.path)
    }

    /// `talus --db <db> --memory-budget 1MiB --segment-size 256KiB ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    /// As [`run`](Self::run), with `stdin`.
    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut all_args = vec!["--db", self.db_arg()];
        all_args.extend(SMALL_DB_OPTIONS);
        all_args.extend(args);
        run(all_args, stdin)
    }

    /// `talus --hex put KEY VALUE`, which must succeed and print nothing.
    #[track_caller]
    pub fn put_hex(&self, key: &[u8], value: &[u8]) {
        let out = self.run(&["--hex", "put", &hex(key), &hex(value)]).success();
        assert!(out.stdout.is_empty(), "put prints nothing: {}", out.describe());
    }

    /// `talus --hex get KEY`: the value, or `None` for exit code 1 (not found).
    #[track_caller]
    pub fn get_hex(&self, key: &[u8]) -> Option<Vec<u8>> {
        let out = self.run(&["--hex", "get", &hex(key)]);
        match out.code {
            0 => {
                let text = out.stdout_text();
                let line =
                    text.strip_suffix('\n').unwrap_or_else(|| panic!("get ends in a newline: {}", out.describe()));
                Some(unhex(line).unwrap_or_else(|| panic!("get --hex prints hex: {}", out.describe())))
            }
            1 => {
                assert_key_not_found(&out);
                None
            }
            _ => panic!("get {}: {}", hex(key), out.describe()),
        }
    }

    /// Every pair, through `talus --hex scan` (checking each line's form and that no key
    /// appears twice).
    #[track_caller]
    pub fn scan_hex(&self) -> Pairs {
        let out = self.run(&["--hex", "scan"]).success();
        parse_pairs(&out.stdout).unwrap_or_else(|problem| panic!("scan --hex: {problem}: {}", out.describe()))
    }

    /// `talus stats --json`, parsed.
    #[track_caller]
    pub fn stats_json(&self) -> serde_json::Value {
        let out = self.run(&["stats", "--json"]).success();
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|error| panic!("stats --json is JSON ({error}): {}", out.describe()));
        assert!(stats.is_object(), "stats --json prints an object: {}", out.describe());
        stats
    }
}

/// A path as a command-line argument (temporary directories have UTF-8 names).
pub fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Hex of either case back to bytes; `None` for odd lengths and other characters.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| {
            let digits = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(digits, 16).ok()
        })
        .collect()
}

/// The export line format (`<hex key>\t<hex value>\n`), as `talus export` writes it.
pub fn format_pairs(pairs: &Pairs) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in pairs {
        out.extend_from_slice(format!("{}\t{}\n", hex(key), hex(value)).as_bytes());
    }
    out
}

/// Parses lines of `<hex key>\t<hex value>\n` as export and `scan --hex` print them:
/// lowercase hex, every line ended, every key once.
pub fn parse_pairs(bytes: &[u8]) -> Result<Pairs, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line has no newline".to_owned());
    }
    let mut pairs = Pairs::new();
    for (line_idx, line) in text.lines().enumerate() {
        let n = line_idx + 1;
        let (key, value) = line.split_once('\t').ok_or_else(|| format!("line {n} {line:?} has no tab"))?;
        let lowercase_hex = |field: &str| field.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        if !lowercase_hex(key) || !lowercase_hex(value) {
            return Err(format!("line {n} {line:?} is not lowercase hex"));
        }
        let key = unhex(key).ok_or_else(|| format!("line {n}: bad key hex"))?;
        let value = unhex(value).ok_or_else(|| format!("line {n}: bad value hex"))?;
        if pairs.insert(key, value).is_some() {
            return Err(format!("line {n} {line:?}: a key printed twice"));
        }
    }
    Ok(pairs)
}

/// Fails the test unless `out` is an error: exit code 2, one line on stderr starting with
/// `talus: `, no panic or backtrace, and `needle` in the message.
#[track_caller]
pub fn assert_one_line_error(out: &Output, needle: &str) {
    assert_eq!(out.code, 2, "expected exit code 2 ({needle}): {}", out.describe());
    assert_one_line_message(out);
    assert!(out.stderr.contains(needle), "the message names {needle:?}: {}", out.describe());
}

/// Fails the test unless `out` is a `key not found` (exit code 1, one clean line).
#[track_caller]
pub fn assert_key_not_found(out: &Output) {
    assert_eq!(out.code, 1, "expected exit code 1 (not found): {}", out.describe());
    assert_one_line_message(out);
    // (`trim` would take the space after the colon when the key is empty.)
    assert!(out.stderr.starts_with("talus: key not found: "), "{}", out.describe());
}

#[track_caller]
fn assert_one_line_message(out: &Output) {
    let message = out.stderr.trim();
    assert!(message.starts_with("talus: "), "the message starts with `talus: `: {}", out.describe());
    assert!(!message.contains('\n'), "the message is one line: {}", out.describe());
    assert!(!message.contains("panicked"), "no panic: {}", out.describe());
    assert!(!message.to_lowercase().contains("backtrace"), "no backtrace: {}", out.describe());
}

/// Whether `text` holds `prefix` followed by exactly the number `n` (not a longer number).
pub fn has_number_after(text: &str, prefix: &str, n: u64) -> bool {
    let wanted = format!("{prefix}{n}");
    text.match_indices(&wanted).any(|(idx, _)| {
        let rest = &text[idx + wanted.len()..];
        !rest.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// The numbers in `text` that follow `prefix`.
pub fn numbers_after(text: &str, prefix: &str) -> Vec<u64> {
    text.match_indices(prefix)
        .filter_map(|(idx, _)| {
            let rest = &text[idx + prefix.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}
