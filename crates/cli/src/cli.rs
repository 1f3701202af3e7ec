//! The command line: global options, the subcommands and their arguments, and opening the
//! database the way every command does.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use talus_engine::{Db, Options, SyncMode};

use crate::encoding;
use crate::progress;

/// The Talus key-value engine from a terminal: try it, look inside a database, check and
/// repair it, compact, checkpoint and back it up, move data in and out, measure it.
#[derive(Debug, Parser)]
#[command(name = "talus", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The database directory.
    #[arg(long, global = true, env = "TALUS_DB", default_value = "./talus-data", value_name = "DIR")]
    pub(crate) db: PathBuf,
    /// Memory for the in-memory tail of the log (e.g. 64MiB, 1GiB, 1048576).
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) memory_budget: Option<u64>,
    /// Size of each log segment file, fixed when the database is created (e.g. 64MiB).
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) segment_size: Option<u64>,
    /// When writes reach the disk: `always` (each write durable before it returns),
    /// `never` (the OS decides; synced on close) or an interval such as `100ms` or `2s`.
    #[arg(long, global = true, value_name = "MODE", value_parser = parse_sync)]
    pub(crate) sync: Option<SyncMode>,
    /// KEY and VALUE arguments are hex, and keys and values are printed as hex.
    #[arg(short = 'x', long, global = true)]
    pub(crate) hex: bool,
    /// Show what the engine reports on stderr: -v its warnings, -vv what it does (opening,
    /// recovering, closing), -vvv details.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Set KEY to VALUE (creates the database if there is none).
    Put(PutArgs),
    /// Print the value of KEY (exit code 1 if it has none).
    Get(GetArgs),
    /// Remove KEY (exit code 1 if it has no value).
    Delete(KeyArgs),
    /// Print every live pair, in no particular order.
    Scan(ScanArgs),
    /// Load pairs from a file in the export format (creates the database if there is none).
    Import(FileArgs),
    /// Write every live pair to a file, one `<hex key>\t<hex value>` line per pair.
    Export(FileArgs),
    /// Show the database's statistics.
    Stats(StatsArgs),
    /// Verify every record's checksum and that the index agrees with the log.
    Check(CheckArgs),
    /// Give back the space of overwritten and deleted records now.
    ///
    /// Copies the live records of every segment file worth it (one that is mostly
    /// garbage, or any with garbage while the log takes much more space than its live
    /// records) to the end of the log and removes the file. The segment being written is
    /// never compacted. The engine also does this in the background while a database is
    /// open; this command does it all at once and reports what it did.
    Compact(JsonArgs),
    /// Write an index checkpoint now, to bound the log replayed after a crash.
    ///
    /// Recovery after a crash loads the newest checkpoint and replays only the log written
    /// after it (a clean close needs neither). The checkpoint goes to checkpoints/ in the database directory (the newest two are
    /// kept). The engine also writes one after every GiB of log.
    Checkpoint(JsonArgs),
    /// Copy the database into BACKUP_DIR (new or empty); `--db BACKUP_DIR` opens the copy.
    ///
    /// The copy holds every write made before the command started. Segment files that are no longer written are hard-linked when BACKUP_DIR is on the
    /// same file system (the copy then takes little space of its own until compaction
    /// removes them from the database), the rest copied; a fresh checkpoint goes with them.
    Backup(BackupArgs),
    /// Measure the engine: load keys, then run a mixed workload, in a temporary database.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// The key (bytes of the argument as given, or hex with --hex).
    pub(crate) key: OsString,
}

#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// The key (bytes of the argument as given, or hex with --hex).
    pub(crate) key: OsString,
    /// The value (bytes of the argument as given, or hex with --hex).
    #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
    pub(crate) value: Option<OsString>,
    /// Read the value's exact bytes from this file (`-` for stdin).
    #[arg(long, value_name = "PATH")]
    pub(crate) value_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The key (bytes of the argument as given, or hex with --hex).
    pub(crate) key: OsString,
    /// Write the value's exact bytes, with no newline (with --hex, the key is still hex).
    #[arg(long)]
    pub(crate) raw: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Stop after this many pairs.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u64>,
    /// Print keys only.
    #[arg(long)]
    pub(crate) keys_only: bool,
    /// Write exact bytes: `KEY\tVALUE\n` (ambiguous if the data holds tabs or newlines).
    #[arg(long)]
    pub(crate) raw: bool,
}

#[derive(Debug, Args)]
pub(crate) struct FileArgs {
    /// The file (`-` for stdin or stdout).
    pub(crate) file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also list the log's segment files: bytes written, live, in tombstones and dead, and
    /// the dead share (garbage) that compaction gives back (`--json` always lists them).
    #[arg(long)]
    pub(crate) segments: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JsonArgs {
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The backup directory (created if missing; it must be empty).
    pub(crate) backup_dir: PathBuf,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Repair what can be repaired: rebuild the index from the log and cut the log at the
    /// first damaged record (everything after it is lost; the report says how much).
    #[arg(long)]
    pub(crate) repair: bool,
}

/// How a command opens the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Create the database if the directory holds none.
    Create,
    /// The database must exist.
    Existing,
}

impl Global {
    /// The engine options these flags ask for.
    pub(crate) fn options(&self, mode: OpenMode, default_sync: SyncMode) -> Options {
        let mut options =
            Options::new().sync_mode(self.sync.unwrap_or(default_sync)).create_if_missing(mode == OpenMode::Create);
        if let Some(bytes) = self.memory_budget {
            options = options.memory_budget(bytes);
        }
        if let Some(bytes) = self.segment_size {
            options = options.segment_size(bytes);
        }
        options
    }

    /// Opens the database, with a progress bar if it has to rebuild its index.
    pub(crate) fn open(&self, mode: OpenMode) -> Result<Db> {
        self.open_with(self.options(mode, SyncMode::Always))
    }

    pub(crate) fn open_with(&self, options: Options) -> Result<Db> {
        let bar = progress::LazyBar::new("recovering: rebuilding the index from the log");
        let reporter = bar.clone();
        let opened = options.on_recovery_progress(move |done, total| reporter.set(done, total)).open(&self.db);
        bar.finish();
        opened.map_err(|error| self.open_error(error))
    }

    /// The one line a failed open prints.
    pub(crate) fn open_error(&self, error: talus_engine::Error) -> anyhow::Error {
        match error {
            talus_engine::Error::NotFound { path } => anyhow::anyhow!(
                "no database in {} (create one with `talus put` or `talus import`, or pass --db DIR)",
                path.display()
            ),
            talus_engine::Error::Locked { .. } => {
                anyhow::anyhow!("the database in {} is in use by another process", self.db.display())
            }
            error => anyhow::Error::new(error).context(format!("opening the database in {}", self.db.display())),
        }
    }

    /// A KEY or VALUE argument as bytes.
    pub(crate) fn arg_bytes(&self, what: &str, arg: &OsString) -> Result<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt as _;
        let bytes = arg.as_bytes();
        match self.hex {
            true => encoding::from_hex(bytes).with_context(|| format!("{what} is not valid hex")),
            false => Ok(bytes.to_vec()),
        }
    }
}

/// Parses `1048576`, `64KiB`, `64MiB`, `1GiB`, `64K`, `64M`, `1G`, `1TiB` (binary units).
pub(crate) fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        bail!("`{text}` is not a size (try 64MiB)");
    }
    let number: u64 = digits.parse().with_context(|| format!("`{text}` is too large"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => bail!("unknown unit `{other}` (try KiB, MiB, GiB)"),
    };
    number.checked_mul(1 << shift).with_context(|| format!("`{text}` is too large"))
}

/// Parses `always`, `never`, or an interval (`100ms`, `2s`) for periodic syncs.
pub(crate) fn parse_sync(text: &str) -> Result<SyncMode> {
    let text = text.trim().to_ascii_lowercase();
    match text.as_str() {
        "always" => return Ok(SyncMode::Always),
        "never" => return Ok(SyncMode::Never),
        _ => {}
    }
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let number: u64 =
        digits.parse().map_err(|_| anyhow::anyhow!("`{text}`: expected always, never or an interval like 100ms"))?;
    let interval = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "us" => Duration::from_micros(number),
        _ => bail!("`{text}`: an interval needs a unit: us, ms or s"),
    };
    if interval.is_zero() {
        bail!("a sync interval must be more than zero");
    }
    Ok(SyncMode::Periodic(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576").expect("bytes"), 1 << 20);
        assert_eq!(parse_size("64KiB").expect("KiB"), 64 << 10);
        assert_eq!(parse_size("64M").expect("M"), 64 << 20);
        assert_eq!(parse_size("1 GiB").expect("GiB"), 1 << 30);
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999TiB").is_err());
    }

    #[test]
    fn sync_modes_parse() {
        assert_eq!(parse_sync("always").expect("always"), SyncMode::Always);
        assert_eq!(parse_sync("Never").expect("never"), SyncMode::Never);
        assert_eq!(parse_sync("100ms").expect("ms"), SyncMode::Periodic(Duration::from_millis(100)));
        assert_eq!(parse_sync("2s").expect("s"), SyncMode::Periodic(Duration::from_secs(2)));
        assert!(parse_sync("0ms").is_err());
        assert!(parse_sync("100").is_err());
        assert!(parse_sync("sometimes").is_err());
    }
}
