//! Project automation, run as `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//!
//! - `ci`: everything CI checks, in the order that fails fastest: formatting, the layering
//!   check, clippy, tests (nextest when installed, else `cargo test`, plus doc tests), the
//!   loom model checks, docs, and bench compilation.
//! - `layering`: only the check that dependencies between Talus crates point down the stack.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Each Talus package and its level in the stack. A package may depend only on packages of a
/// strictly lower level; siblings on one level stay independent. ARCHITECTURE.md draws this.
const LAYERS: &[(&str, u32)] = &[
    ("talus-testkit", 0),  // test support: a dev-dependency only
    ("talus-workload", 0), // benchmark workloads: no engine, no I/O
    ("talus-datapool", 1),
    ("talus-ringbuf", 2),
    ("talus-bucketmap", 2),
    ("talus-engine", 3),
    ("talus-cli", 4),
    ("talus-bench", 4),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("layering") => layering(),
        _ => {
            eprintln!("usage: cargo xtask <ci|layering>");
            std::process::exit(2);
        }
    }
}

fn ci() -> Result<()> {
    let started = Instant::now();
    run("format", cargo(&["fmt", "--all", "--", "--check"]))?;
    step("layering", layering)?;
    run("clippy", cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    if has_nextest() {
        run("tests (nextest)", cargo(&["nextest", "run", "--workspace", "--locked", "--profile", "ci"]))?;
        run("doc tests", cargo(&["test", "--workspace", "--locked", "--doc"]))?;
    } else {
        run("tests (cargo test)", cargo(&["test", "--workspace", "--locked"]))?;
    }
    // loom model checks of the ring's lock-free protocols, in a target dir of their own
    // (the cfg changes every crate's build).
    let mut loom = cargo(&["test", "-p", "talus-ringbuf", "--lib", "--release", "--locked"]);
    loom.env("RUSTFLAGS", "--cfg loom").env("CARGO_TARGET_DIR", "target/loom").env("LOOM_MAX_PREEMPTIONS", "3");
    run("loom", loom)?;
    let mut doc = cargo(&["doc", "--workspace", "--no-deps", "--locked"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    run("docs", doc)?;
    run("bench build", cargo(&["bench", "--workspace", "--locked", "--no-run"]))?;
    // Every engine adapter and workload of talus-bench, tiny (RocksDB is a feature, off).
    let smoke = ["run", "-p", "talus-bench", "--locked", "--", "--smoke", "--out", "target/talus-bench-smoke"];
    run("talus-bench smoke", cargo(&smoke))?;
    eprintln!("xtask: ci passed in {:.0?}", started.elapsed());
    Ok(())
}

fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.args(args);
    command
}

fn has_nextest() -> bool {
    cargo(&["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn run(name: &str, mut command: Command) -> Result<()> {
    step(name, || {
        let status = command.status().with_context(|| format!("could not start {command:?}"))?;
        if !status.success() {
            bail!("{command:?} failed with {status}");
        }
        Ok(())
    })
}

fn step(name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("xtask: == {name}");
    let started = Instant::now();
    body().with_context(|| format!("step `{name}` failed"))?;
    eprintln!("xtask: == {name} ok ({:.1?})", started.elapsed());
    Ok(())
}

fn layer_of(package: &str) -> Option<u32> {
    LAYERS.iter().find(|(name, _)| *name == package).map(|&(_, layer)| layer)
}

/// Checks that every dependency (normal, build and dev) between Talus packages points down.
fn layering() -> Result<()> {
    let members = workspace_members()?;
    let mut violations = Vec::new();
    for member in members.iter().filter(|m| m.starts_with("talus-")) {
        let Some(layer) = layer_of(member) else {
            bail!("package {member} is missing from xtask's LAYERS table; add it at its level");
        };
        for dependency in direct_dependencies(member)?.iter().filter(|d| d.starts_with("talus-")) {
            let Some(dependency_layer) = layer_of(dependency) else {
                bail!("{member} depends on {dependency}, which is missing from xtask's LAYERS table");
            };
            if dependency_layer >= layer {
                violations.push(format!("{member} (level {layer}) depends on {dependency} (level {dependency_layer})"));
            }
        }
    }
    if !violations.is_empty() {
        bail!("dependencies must point down the stack:\n  {}", violations.join("\n  "));
    }
    eprintln!("xtask: layering ok ({} packages)", members.len());
    Ok(())
}

fn output_of(mut command: Command) -> Result<String> {
    let output = command.output().with_context(|| format!("could not start {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The names of the workspace's packages (first word of each `cargo tree` root line).
fn workspace_members() -> Result<Vec<String>> {
    let text = output_of(cargo(&["tree", "--workspace", "--depth", "0", "--prefix", "none", "--offline"]))
        .or_else(|_| output_of(cargo(&["tree", "--workspace", "--depth", "0", "--prefix", "none"])))?;
    let mut members: Vec<String> =
        text.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect();
    members.sort();
    members.dedup();
    Ok(members)
}

/// The direct dependencies of `package`, of every kind.
fn direct_dependencies(package: &str) -> Result<Vec<String>> {
    let text =
        output_of(cargo(&["tree", "-p", package, "--depth", "1", "--prefix", "none", "-e", "normal,build,dev"]))?;
    Ok(text
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with('['))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}
