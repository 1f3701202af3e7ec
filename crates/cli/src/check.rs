//! `check`: reads the whole log back and checks it against the index
//! (`Db::verify`); `--repair` reopens with the engine's repair first.

use anyhow::Result;
use talus_engine::{Db, SyncMode, VerifyReport};

use crate::Outcome;
use crate::cli::{CheckArgs, Global, OpenMode};
use crate::progress;

pub(crate) fn check(global: &Global, args: &CheckArgs) -> Result<Outcome> {
    let options = global.options(OpenMode::Existing, SyncMode::Always).repair(args.repair);
    let db = match global.open_with(options) {
        Ok(db) => db,
        Err(error) => {
            // Damage that stops the open (a crash left the log to be replayed, and the
            // replay found it) is a finding of the check, not a failure of the tool.
            if let Some(talus_engine::Error::Corruption { file, offset, reason }) = error.downcast_ref() {
                println!("problem: {file} at offset {offset}: {reason}");
                return Ok(Outcome::Negative(Some(
                    "the database is damaged and does not open; `talus check --repair` cuts the log at the damage"
                        .to_owned(),
                )));
            }
            return Err(error);
        }
    };
    if args.repair {
        print_repair(&db);
    }
    let mut db = db;
    let log_bytes = db.stats().log_bytes;
    let bar = progress::bar("checking the log", log_bytes, true);
    let report = db.verify_with_progress(|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let report = report?;
    print_report(&report);
    db.close()?;
    match report.is_ok() {
        true => Ok(Outcome::Done),
        false => Ok(Outcome::Negative(Some(format!(
            "{} problem(s) found; `talus check --repair` rebuilds the index and cuts the log at the first damage",
            report.n_problems
        )))),
    }
}

fn print_repair(db: &Db) {
    let recovery = db.stats().recovery;
    match &recovery.repair {
        Some(repair) => println!(
            "repaired: cut the log at {} offset {} ({}); dropped {} bytes holding {} intact records",
            repair.file, repair.offset, repair.reason, repair.n_bytes_dropped, repair.n_records_dropped
        ),
        None if recovery.n_torn_bytes > 0 => println!(
            "repaired: nothing had to be cut but a torn tail of {} bytes (writes that were not yet durable when the \
             last run stopped); index rebuilt from {} records",
            recovery.n_torn_bytes, recovery.n_records_replayed
        ),
        None => println!("repaired: nothing had to be cut; index rebuilt from {} records", recovery.n_records_replayed),
    }
}

fn print_report(report: &VerifyReport) {
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    if report.n_problems > report.problems.len() as u64 {
        println!("... and {} more problems", report.n_problems - report.problems.len() as u64);
    }
    println!(
        "checked {} bytes of log: {} records ({} live, {} superseded or deleted, {} deletes), {} index entries: {}",
        report.n_bytes_scanned,
        report.n_records,
        report.n_live_records,
        report.n_superseded_records,
        report.n_delete_records,
        report.n_index_entries,
        match report.is_ok() {
            true => "ok".to_owned(),
            false => format!("{} problems", report.n_problems),
        }
    );
}
