//! `talus`: the command-line tool of the Talus engine. Try a database from a terminal,
//! look inside one, check and repair it, compact, checkpoint and back it up, move data in
//! and out, and measure the engine.
//!
//! Exit codes: 0 success; 1 a key not found (`get`, `delete`) or problems found by
//! `check`; 2 any error, as one line on stderr.

mod bench;
mod check;
mod cli;
mod encoding;
mod maintenance;
mod ops;
mod progress;
mod stats;
mod transfer;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};

/// What a command that did not fail reports: success, or "not there" (exit 1).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// The command ran and found nothing, or found problems: exit code 1, with this message
    /// on stderr (if any).
    Negative(Option<String>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout with success; usage errors exit 2.
            let _ = error.print();
            return match error.use_stderr() {
                true => ExitCode::from(2),
                false => ExitCode::SUCCESS,
            };
        }
    };
    if cli.global.verbose > 0 {
        let level = match cli.global.verbose {
            1 => tracing_subscriber::filter::LevelFilter::WARN,
            2 => tracing_subscriber::filter::LevelFilter::INFO,
            _ => tracing_subscriber::filter::LevelFilter::DEBUG,
        };
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .init();
    }
    let result = match &cli.command {
        Command::Put(args) => ops::put(&cli.global, args),
        Command::Get(args) => ops::get(&cli.global, args),
        Command::Delete(args) => ops::delete(&cli.global, args),
        Command::Scan(args) => ops::scan(&cli.global, args),
        Command::Import(args) => transfer::import(&cli.global, args),
        Command::Export(args) => transfer::export(&cli.global, args),
        Command::Stats(args) => stats::stats(&cli.global, args),
        Command::Check(args) => check::check(&cli.global, args),
        Command::Compact(args) => maintenance::compact(&cli.global, args),
        Command::Checkpoint(args) => maintenance::checkpoint(&cli.global, args),
        Command::Backup(args) => maintenance::backup(&cli.global, args),
        Command::Bench(args) => bench::bench(&cli.global, args),
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Negative(message)) => {
            if let Some(message) = message {
                eprintln!("talus: {message}");
            }
            ExitCode::from(1)
        }
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the chain of causes, joined.
            let message = format!("{error:#}").replace('\n', " ");
            let _ = writeln!(std::io::stderr(), "talus: error: {message}");
            ExitCode::from(2)
        }
    }
}

/// `talus scan | head` closes the pipe early: not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
}
