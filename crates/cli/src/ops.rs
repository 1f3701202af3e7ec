//! `put`, `get`, `delete` and `scan`: one key at a time, and every pair.

use std::io::{BufWriter, Read as _, Write as _};

use anyhow::{Context as _, Result};

use crate::Outcome;
use crate::cli::{GetArgs, Global, KeyArgs, OpenMode, PutArgs, ScanArgs};
use crate::encoding::{escape, to_hex};

pub(crate) fn put(global: &Global, args: &PutArgs) -> Result<Outcome> {
    let key = global.arg_bytes("KEY", &args.key)?;
    let value = match (&args.value, &args.value_file) {
        (Some(value), _) => global.arg_bytes("VALUE", value)?,
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut value = Vec::new();
            std::io::stdin().lock().read_to_end(&mut value).context("reading the value from stdin")?;
            value
        }
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("reading the value from {}", path.display()))?
        }
        (None, None) => anyhow::bail!("put needs a VALUE or --value-file"),
    };
    let db = global.open(OpenMode::Create)?;
    db.put(&key, &value)?;
    db.close()?;
    Ok(Outcome::Done)
}

pub(crate) fn get(global: &Global, args: &GetArgs) -> Result<Outcome> {
    let key = global.arg_bytes("KEY", &args.key)?;
    let db = global.open(OpenMode::Existing)?;
    let value = db.get(&key)?;
    db.close()?;
    let Some(value) = value else {
        return Ok(Outcome::Negative(Some(format!("key not found: {}", show(global, &key)))));
    };
    let mut stdout = std::io::stdout().lock();
    match args.raw {
        true => stdout.write_all(&value)?,
        false => writeln!(stdout, "{}", show(global, &value))?,
    }
    stdout.flush()?;
    Ok(Outcome::Done)
}

pub(crate) fn delete(global: &Global, args: &KeyArgs) -> Result<Outcome> {
    let key = global.arg_bytes("KEY", &args.key)?;
    let db = global.open(OpenMode::Existing)?;
    // One process holds the database: nothing can write the key between these two calls.
    let existed = db.contains_key(&key)?;
    if existed {
        db.delete(&key)?;
    }
    db.close()?;
    match existed {
        true => Ok(Outcome::Done),
        false => Ok(Outcome::Negative(Some(format!("key not found: {}", show(global, &key))))),
    }
}

pub(crate) fn scan(global: &Global, args: &ScanArgs) -> Result<Outcome> {
    let db = global.open(OpenMode::Existing)?;
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let limit = args.limit.map_or(usize::MAX, |limit| usize::try_from(limit).unwrap_or(usize::MAX));
    for pair in db.iter().take(limit) {
        let (key, value) = pair?;
        match (args.raw, args.keys_only) {
            (true, true) => {
                out.write_all(&key)?;
                out.write_all(b"\n")?;
            }
            (true, false) => {
                out.write_all(&key)?;
                out.write_all(b"\t")?;
                out.write_all(&value)?;
                out.write_all(b"\n")?;
            }
            (false, true) => writeln!(out, "{}", show(global, &key))?,
            (false, false) => writeln!(out, "{}\t{}", show(global, &key), show(global, &value))?,
        }
    }
    out.flush()?;
    drop(out);
    db.close()?;
    Ok(Outcome::Done)
}

/// Bytes as the user asked to see them: hex with `--hex`, else escaped text.
pub(crate) fn show(global: &Global, bytes: &[u8]) -> String {
    match global.hex {
        true => to_hex(bytes),
        false => escape(bytes),
    }
}
