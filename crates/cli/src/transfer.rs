//! `import` and `export`: pairs in and out as text, one `<hex key>\t<hex value>` line per
//! pair (lowercase on export; either case, a trailing `\r` and empty lines accepted on
//! import). Binary keys and values round-trip exactly.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};

use anyhow::{Context as _, Result, bail};
use talus_engine::{Db, WriteBatch};

use crate::Outcome;
use crate::cli::{FileArgs, Global, OpenMode};
use crate::encoding::{parse_pair_line, to_hex};
use crate::progress;

/// Pairs per batch: one atomic write (and with `--sync always` one fsync) each.
const BATCH_PAIRS: usize = 1000;
/// Or fewer, once a batch holds this many bytes.
const BATCH_BYTES: usize = 4 << 20;

pub(crate) fn import(global: &Global, args: &FileArgs) -> Result<Outcome> {
    let (reader, len): (Box<dyn BufRead>, Option<u64>) = match args.file.as_os_str() == "-" {
        true => (Box::new(BufReader::with_capacity(1 << 20, std::io::stdin().lock())), None),
        false => {
            let file = File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
            let len = file.metadata().map(|metadata| metadata.len()).ok();
            (Box::new(BufReader::with_capacity(1 << 20, file)), len)
        }
    };
    let name = match args.file.as_os_str() == "-" {
        true => "stdin".to_owned(),
        false => args.file.display().to_string(),
    };
    let db = global.open(OpenMode::Create)?;
    let bar = match len {
        Some(len) => progress::bar("importing", len, true),
        None => progress::spinner("importing (bytes)"),
    };
    let result = import_lines(&db, reader, &name, &|n_bytes| bar.inc(n_bytes));
    bar.finish_and_clear();
    let n_pairs = result?;
    db.close()?;
    eprintln!("imported {n_pairs} pairs");
    Ok(Outcome::Done)
}

/// Imports every line; at a bad line, writes everything before it and fails.
fn import_lines(db: &Db, mut reader: Box<dyn BufRead>, name: &str, advanced: &dyn Fn(u64)) -> Result<u64> {
    let mut batch = WriteBatch::new();
    let (mut batch_pairs, mut batch_bytes) = (0usize, 0usize);
    let mut n_pairs = 0u64;
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let max_value_len = db.stats().max_value_len as usize;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).with_context(|| format!("reading {name}"))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        advanced(n as u64);
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.is_empty() || text == b"\r" {
            continue;
        }
        let (key, value) = match parse_pair_line(text) {
            Ok(pair) => pair,
            Err(reason) => {
                write_batch(db, &mut batch, &mut batch_pairs, &mut batch_bytes)?;
                bail!("{name} line {line_no}: {reason} ({})", imported_before(n_pairs));
            }
        };
        if let Some(reason) = too_large(max_value_len, &key, &value) {
            write_batch(db, &mut batch, &mut batch_pairs, &mut batch_bytes)?;
            bail!("{name} line {line_no}: {reason} ({})", imported_before(n_pairs));
        }
        batch_bytes += key.len() + value.len();
        batch_pairs += 1;
        batch.put(key, value);
        n_pairs += 1;
        if batch_pairs >= BATCH_PAIRS || batch_bytes >= BATCH_BYTES {
            write_batch(db, &mut batch, &mut batch_pairs, &mut batch_bytes)?;
        }
    }
    write_batch(db, &mut batch, &mut batch_pairs, &mut batch_bytes)?;
    Ok(n_pairs)
}

fn imported_before(n_pairs: u64) -> String {
    match n_pairs {
        1 => "the 1 pair before it was imported".to_owned(),
        n => format!("the {n} pairs before it were imported"),
    }
}

/// A pair the engine would refuse, checked before it joins a batch (so a refusal names the
/// line, and the batch holding the lines before it is still written).
fn too_large(max_value_len: usize, key: &[u8], value: &[u8]) -> Option<String> {
    if key.len() > talus_engine::MAX_KEY_LEN {
        return Some(format!("key of {} bytes exceeds the limit of {}", key.len(), talus_engine::MAX_KEY_LEN));
    }
    (value.len() > max_value_len)
        .then(|| format!("value of {} bytes exceeds the limit of {max_value_len} (see --memory-budget)", value.len()))
}

fn write_batch(db: &Db, batch: &mut WriteBatch, n_pairs: &mut usize, n_bytes: &mut usize) -> Result<()> {
    if *n_pairs > 0 {
        db.write(std::mem::take(batch))?;
        *n_pairs = 0;
        *n_bytes = 0;
    }
    Ok(())
}

pub(crate) fn export(global: &Global, args: &FileArgs) -> Result<Outcome> {
    let db = global.open(OpenMode::Existing)?;
    let to_stdout = args.file.as_os_str() == "-";
    let out: Box<dyn Write> = match to_stdout {
        true => Box::new(std::io::stdout().lock()),
        false => {
            let file = File::create(&args.file).with_context(|| format!("creating {}", args.file.display()))?;
            Box::new(file)
        }
    };
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let bar = progress::bar("exporting", db.stats().n_keys, false);
    let mut n_pairs = 0u64;
    for pair in db.iter() {
        let (key, value) = pair?;
        writeln!(out, "{}\t{}", to_hex(&key), to_hex(&value))?;
        n_pairs += 1;
        if n_pairs.is_multiple_of(1024) {
            bar.set_position(n_pairs);
        }
    }
    bar.finish_and_clear();
    let file = out.into_inner().map_err(|error| error.into_error()).context("writing the export")?;
    drop(file);
    if !to_stdout {
        // The export is complete on disk before we say so.
        File::open(&args.file)
            .and_then(|file| file.sync_all())
            .with_context(|| format!("syncing {}", args.file.display()))?;
    }
    db.close()?;
    eprintln!("exported {n_pairs} pairs");
    Ok(Outcome::Done)
}
