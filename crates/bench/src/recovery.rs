//! `recovery`: the time to reopen after a clean close and after SIGKILL. A child loads
//! each of `--recovery-keys` pairs (buffered, then synced) and reports ready; the parent kills it with
//! SIGKILL, then another child times the open (and reads one key). That child closes
//! cleanly, and a third times the open again.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use talus_workload::key_of;

use crate::engines::{self, Settings};
use crate::run::RESULT_MARK;

/// Marks the loading child's "ready" line.
const READY: &str = "@talus-bench-ready@";

/// In the child: loads the keys into `dir`, syncs, says so, and waits to be killed.
pub fn load_and_wait(
    engine_name: &str,
    n_keys: u64,
    key_size: usize,
    value_size: usize,
    cache_bytes: u64,
    dir: &Path,
) -> Result<()> {
    let engine = engines::open(engine_name, dir, Settings { durable: false, cache_bytes })?;
    let mut batch = Vec::with_capacity(1_000);
    for idx in 0..n_keys {
        let mut key = Vec::new();
        key_of(idx, key_size, &mut key);
        batch.push((key, vec![(idx % 251) as u8; value_size]));
        if batch.len() == 1_000 || idx + 1 == n_keys {
            engine.put_many(&batch)?;
            batch.clear();
        }
    }
    engine.sync()?;
    println!("{READY}");
    std::thread::sleep(std::time::Duration::from_secs(3600));
    bail!("the parent never killed this process")
}

/// In the child: times opening the engine in `dir` and reading one key; closes cleanly.
pub fn time_open(engine_name: &str, key_size: usize, cache_bytes: u64, dir: &Path) -> Result<Value> {
    let started = Instant::now();
    let engine = engines::open(engine_name, dir, Settings { durable: false, cache_bytes })?;
    let mut key = Vec::new();
    key_of(0, key_size, &mut key);
    let found = engine.get(&key, &mut |_| {})?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(found, "{engine_name}: the first key is gone after the reopen");
    drop(engine);
    Ok(json!({ "open_secs": secs }))
}

/// In the parent: the whole protocol for one engine; `args` are this process's arguments.
pub fn run(engine_name: &str, n_keys: u64, args: &[String], dir: &Path) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let child = |role: &str| {
        let mut command = Command::new(&exe);
        command
            .args(&args[1..])
            .args(["--child", &format!("{engine_name}:recovery:{role}:{n_keys}"), "--in-dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command
    };
    let mut loader = child("load").spawn().context("start the loading child")?;
    let stdout = loader.stdout.take().context("the loader's stdout")?;
    let ready = BufReader::new(stdout).lines().any(|line| line.is_ok_and(|line| line == READY));
    loader.kill().context("kill the loader")?;
    loader.wait()?;
    if !ready {
        bail!("the loading child did not get ready");
    }
    let time = |what: &str| -> Result<f64> {
        let output = child("open").output().with_context(|| format!("start the {what} open"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("the {what} open failed ({}): {stdout}", output.status);
        }
        let line = stdout.lines().find_map(|line| line.strip_prefix(RESULT_MARK)).context("no result")?;
        let result: Value = serde_json::from_str(line)?;
        result["open_secs"].as_f64().context("no open time")
    };
    let crash = time("after SIGKILL")?;
    let clean = time("after a clean close")?;
    Ok(json!({
        "kind": "recovery",
        "engine": engine_name,
        "keys": n_keys,
        "open_after_sigkill_secs": crash,
        "open_after_clean_close_secs": clean,
    }))
}
