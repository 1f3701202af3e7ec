//! Acceptance criteria 4, 5 and 8 (second half): real processes killed with SIGKILL.
//!
//! The test binary runs itself as a child ([`child_entry_point`]), which opens a database,
//! writes single puts, deletes and batches from a plan that parent and child both derive
//! from `(seed, round)`, and reports every acknowledged operation. The parent kills it at a
//! random moment, reopens the directory (recovery must succeed) and checks that the database
//! holds exactly the state after some prefix of the plan's operations:
//!
//! - with [`SyncMode::Always`] a prefix that contains every acknowledged operation (and maybe
//!   the one in flight), so every acknowledged write and delete is there;
//! - with [`SyncMode::Never`] any prefix (a SIGKILL loses what was only in memory), so every
//!   key holds a value that was written to it or none.
//!
//! Either way each value read back must be one the plan wrote to that key (values describe
//! themselves), and a batch is visible whole or not at all (a partial batch matches no
//! prefix). Then the next child writes more into the same directory. `TALUS_CRASH_KILLS`
//! sets the number of kills with `Always` (default 50); `Never` gets half as many.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use talus_engine::{Db, Error, Options, SyncMode, WriteBatch};
use talus_testkit::{SplitMix64, fill_pattern, test_seed};

const CHILD_ROLE_ENV: &str = "TALUS_ENGINE_CRASH_CHILD";
const CHILD_DIR_ENV: &str = "TALUS_ENGINE_CRASH_DIR";
const CHILD_MODE_ENV: &str = "TALUS_ENGINE_CRASH_MODE";
const CHILD_SEED_ENV: &str = "TALUS_ENGINE_CRASH_SEED";
const CHILD_ROUND_ENV: &str = "TALUS_ENGINE_CRASH_ROUND";
const KILLS_ENV: &str = "TALUS_CRASH_KILLS";
const DEFAULT_KILLS: usize = 50;
const MARK: &str = "@talus-child@ ";

/// Keys `slot-…` that single operations and batches overwrite and delete again and again.
const N_SLOTS: u64 = 256;
/// A child stops writing after this many operations and waits to be killed.
const MAX_OPS_PER_ROUND: u32 = 1_000;
/// How long the parent waits for a child's report before it gives up.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// How a crash loop's children write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Always,
    Never,
    /// [`SyncMode::Always`], with compaction and checkpoints running all the time: the
    /// background thread compacts any segment with 5% garbage and checkpoints every 64 KiB
    /// of log, and another thread of the child calls `compact` and `checkpoint` in a loop.
    Compacting,
}

impl Mode {
    fn sync_mode(self) -> SyncMode {
        match self {
            Mode::Always | Mode::Compacting => SyncMode::Always,
            Mode::Never => SyncMode::Never,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Always => "always",
            Mode::Never => "never",
            Mode::Compacting => "compacting",
        }
    }

    fn parse(name: &str) -> Mode {
        match name {
            "always" => Mode::Always,
            "never" => Mode::Never,
            "compacting" => Mode::Compacting,
            other => panic!("child: unknown mode {other:?}"),
        }
    }
}

/// Small memory and segments, so that eviction and segment rollover happen all the time.
fn options(mode: Mode) -> Options {
    let options = Options::new().memory_budget(1 << 20).segment_size(256 << 10).sync_mode(mode.sync_mode());
    match mode {
        Mode::Compacting => {
            options.compaction_garbage_ratio(0.05).compaction_space_amplification(1.1).checkpoint_every_bytes(64 << 10)
        }
        Mode::Always | Mode::Never => options,
    }
}

// ---------------------------------------------------------------------------------------
// The plan: operations derived from (seed, round), values that describe themselves.

/// Which write produced a value: member `member` of operation `op` of round `round`, `len`
/// bytes long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ValueId {
    round: u32,
    op: u32,
    member: u16,
    len: u32,
}

const VALUE_HEADER_LEN: usize = 14;

/// The value `id` names for `key`: its id, then a pattern that depends on key and id.
fn value_bytes(key: &[u8], id: ValueId) -> Vec<u8> {
    let mut bytes = vec![0u8; id.len as usize];
    bytes[0..4].copy_from_slice(&id.round.to_le_bytes());
    bytes[4..8].copy_from_slice(&id.op.to_le_bytes());
    bytes[8..10].copy_from_slice(&id.member.to_le_bytes());
    bytes[10..14].copy_from_slice(&id.len.to_le_bytes());
    let tag = key.iter().fold(u64::from(id.round) << 32 | u64::from(id.op), |tag, &byte| {
        SplitMix64::new(tag ^ u64::from(byte)).next_u64()
    });
    fill_pattern(&mut bytes[VALUE_HEADER_LEN..], tag ^ u64::from(id.member));
    bytes
}

/// The id of a value read back for `key`, if it is a value some plan wrote to that key.
fn parse_value(key: &[u8], bytes: &[u8]) -> Option<ValueId> {
    if bytes.len() < VALUE_HEADER_LEN {
        return None;
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let id = ValueId { round: word(0), op: word(4), member: u16::from_le_bytes([bytes[8], bytes[9]]), len: word(10) };
    (id.len as usize == bytes.len() && value_bytes(key, id) == bytes).then_some(id)
}

#[derive(Clone, Debug)]
enum Change {
    Put { key: Vec<u8>, id: ValueId },
    Delete { key: Vec<u8> },
}

impl Change {
    fn key(&self) -> &[u8] {
        match self {
            Change::Put { key, .. } | Change::Delete { key } => key,
        }
    }
}

/// One call of the child: a put, a delete or a batch.
#[derive(Clone, Debug)]
struct Op {
    batch: bool,
    changes: Vec<Change>,
}

/// Every key's value, by id.
type State = HashMap<Vec<u8>, ValueId>;

fn apply(state: &mut State, op: &Op) {
    for change in &op.changes {
        match change {
            Change::Put { key, id } => state.insert(key.clone(), *id),
            Change::Delete { key } => state.remove(key),
        };
    }
}

/// The operations of one round, the same in parent and child.
struct Plan {
    rng: SplitMix64,
    round: u32,
    next_op: u32,
}

impl Plan {
    fn new(seed: u64, round: u32) -> Plan {
        let rng = SplitMix64::new(seed ^ (u64::from(round) + 1).wrapping_mul(0xA24B_AED4_963E_E407));
        Plan { rng, round, next_op: 0 }
    }

    /// Slot keys vary in length; a few are 1000 bytes long.
    fn slot_key(&mut self) -> Vec<u8> {
        let slot = self.rng.below(N_SLOTS);
        let pad = if slot.is_multiple_of(50) { 1000 } else { (slot % 9) as usize };
        let mut key = format!("slot-{slot:04}").into_bytes();
        key.resize(key.len() + pad, b'.');
        key
    }

    /// Mostly small values, a fifth of a few KiB, one in a hundred of 64 KiB or more.
    fn value_len(&mut self) -> u32 {
        let len = match self.rng.below(100) {
            0 => self.rng.between(64 << 10, 128 << 10),
            1..=20 => self.rng.between(1 << 10, 8 << 10),
            _ => self.rng.between(VALUE_HEADER_LEN, 400),
        };
        len as u32
    }

    fn put(&mut self, key: Vec<u8>, member: u16) -> Change {
        let id = ValueId { round: self.round, op: self.next_op, member, len: self.value_len() };
        Change::Put { key, id }
    }

    fn next_op(&mut self) -> Op {
        let op = match self.rng.below(100) {
            0..=49 => {
                let key = self.slot_key();
                Op { batch: false, changes: vec![self.put(key, 0)] }
            }
            50..=64 => Op { batch: false, changes: vec![Change::Delete { key: self.slot_key() }] },
            _ => {
                // Fresh keys (never written before) and slot keys, a slot key maybe twice.
                let n_members = self.rng.between(2, 8);
                let changes = (0..n_members as u16)
                    .map(|member| match self.rng.below(100) {
                        0..=44 => {
                            let key = format!("batch-{}-{}-{member}", self.round, self.next_op).into_bytes();
                            self.put(key, member)
                        }
                        45..=84 => {
                            let key = self.slot_key();
                            self.put(key, member)
                        }
                        _ => Change::Delete { key: self.slot_key() },
                    })
                    .collect();
                Op { batch: true, changes }
            }
        };
        self.next_op += 1;
        op
    }

    fn ops(seed: u64, round: u32, n_ops: u32) -> Vec<Op> {
        let mut plan = Plan::new(seed, round);
        (0..n_ops).map(|_| plan.next_op()).collect()
    }
}

// ---------------------------------------------------------------------------------------
// The child.

/// Runs in a child process: what it does depends on `TALUS_ENGINE_CRASH_CHILD`.
#[test]
#[ignore = "entry point for the crash tests' child processes"]
fn child_entry_point() {
    let Ok(role) = std::env::var(CHILD_ROLE_ENV) else { return };
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("child: {name} is not set"));
    let dir = env(CHILD_DIR_ENV);
    let mode = Mode::parse(&env(CHILD_MODE_ENV));
    match role.as_str() {
        "write" => {
            let seed: u64 = env(CHILD_SEED_ENV).parse().expect("child: seed");
            let round: u32 = env(CHILD_ROUND_ENV).parse().expect("child: round");
            child_write(Path::new(&dir), mode, seed, round);
        }
        "hold" => {
            let db = options(mode).open(&dir).expect("child: open");
            db.put(b"holder", b"the child wrote this").expect("child: put");
            report("ready");
            wait_to_be_killed(db);
        }
        "probe" => match options(mode).open(&dir) {
            Ok(db) => {
                db.close().expect("child: close");
                report("opened");
            }
            Err(Error::Locked { .. }) => report("locked"),
            Err(error) => report(&format!("failed {error}")),
        },
        other => panic!("child: unknown role {other:?}"),
    }
}

/// Writes the round's plan, reporting each operation once it returned `Ok`.
fn child_write(dir: &Path, mode: Mode, seed: u64, round: u32) {
    let db = std::sync::Arc::new(options(mode).open(dir).expect("child: open after a kill"));
    if mode == Mode::Compacting {
        let db = std::sync::Arc::clone(&db);
        std::thread::spawn(move || {
            for idx in 0u64.. {
                let result = match idx % 4 {
                    0 => db.checkpoint().map(drop),
                    _ => db.compact().map(drop),
                };
                if let Err(error) = result {
                    report(&format!("failed {error}"));
                    panic!("child: maintenance failed: {error}");
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        });
    }
    report("ready");
    let mut plan = Plan::new(seed, round);
    for op_idx in 0..MAX_OPS_PER_ROUND {
        let op = plan.next_op();
        let result = if op.batch {
            let mut batch = WriteBatch::new();
            for change in &op.changes {
                match change {
                    Change::Put { key, id } => batch.put(key, value_bytes(key, *id)),
                    Change::Delete { key } => batch.delete(key),
                };
            }
            db.write(batch)
        } else {
            match &op.changes[0] {
                Change::Put { key, id } => db.put(key, value_bytes(key, *id)),
                Change::Delete { key } => db.delete(key),
            }
        };
        if let Err(error) = result {
            report(&format!("failed {error}"));
            panic!("child: operation {op_idx} failed: {error}");
        }
        report(&format!("ack {op_idx}"));
    }
    report("done");
    std::thread::sleep(5 * REPORT_TIMEOUT);
    std::process::exit(1)
}

/// Holds the database until the parent kills this process; gives up after a while, so that a
/// child whose parent died does not stay forever.
fn wait_to_be_killed(db: Db) -> ! {
    std::thread::sleep(5 * REPORT_TIMEOUT);
    drop(db);
    std::process::exit(1)
}

/// One protocol line, flushed at once (the parent reads it while the child runs).
fn report(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{MARK}{line}").and_then(|()| stdout.flush()).expect("child: report");
}

// ---------------------------------------------------------------------------------------
// The parent's side of a child.

struct Child {
    process: std::process::Child,
    /// Protocol lines as they arrive.
    events: Receiver<String>,
    /// Every protocol line, once the child's stdout closes.
    reader: Option<JoinHandle<Vec<String>>>,
}

/// A child is never left running, even when the test fails half-way.
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Child {
    fn spawn(role: &str, dir: &Path, mode: Mode, seed: u64, round: u32) -> Child {
        let mut process = Command::new(std::env::current_exe().expect("test binary"))
            .args(["crash::child_entry_point", "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ROLE_ENV, role)
            .env(CHILD_DIR_ENV, dir)
            .env(CHILD_MODE_ENV, mode.name())
            .env(CHILD_SEED_ENV, seed.to_string())
            .env(CHILD_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = process.stdout.take().expect("child stdout");
        let (sender, events) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut lines = Vec::new();
            let mut line = String::new();
            // A line cut short by the kill has no newline: it is ignored.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if let Some(at) = line.find(MARK)
                    && line.ends_with('\n')
                {
                    let message = line[at + MARK.len()..].trim_end().to_owned();
                    let _ = sender.send(message.clone());
                    lines.push(message);
                }
                line.clear();
            }
            lines
        });
        Child { process, events, reader: Some(reader) }
    }

    /// Waits for the next protocol line.
    fn next_event(&self, deadline: Instant) -> Option<String> {
        match self.events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => panic!("the child reported nothing for {REPORT_TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    fn expect_event(&self, expected: &str) {
        let line = self.next_event(Instant::now() + REPORT_TIMEOUT);
        assert_eq!(line.as_deref(), Some(expected), "the child's report");
    }

    /// Kills the child with SIGKILL; returns every protocol line it wrote. Panics if it
    /// died of something else first.
    fn kill(mut self) -> Vec<String> {
        self.process.kill().expect("SIGKILL");
        let status = self.process.wait().expect("wait for the child");
        let lines = self.reader.take().expect("joined once").join().expect("the reader thread");
        assert_eq!(status.signal(), Some(9), "the child died before the kill ({status}); its reports: {lines:?}");
        lines
    }

    /// Waits for a child that exits by itself; returns its protocol lines.
    fn finish(mut self) -> Vec<String> {
        let status = self.process.wait().expect("wait for the child");
        let lines = self.reader.take().expect("joined once").join().expect("the reader thread");
        assert!(status.success(), "the child failed ({status}); its reports: {lines:?}");
        lines
    }
}

// ---------------------------------------------------------------------------------------
// The crash loop.

/// When the parent kills a round's child.
#[derive(Debug)]
enum KillAt {
    /// During open, before it reported ready.
    SoonAfterSpawn { delay_us: u64 },
    /// A while after it reported ready.
    AfterReady { delay_us: u64 },
    /// After it reported this many acknowledgements, and a little more.
    AfterAcks { n_acks: u32, delay_us: u64 },
}

fn kill_at(rng: &mut SplitMix64) -> KillAt {
    match rng.below(10) {
        0 => KillAt::SoonAfterSpawn { delay_us: rng.below(20_000) },
        1..=3 => KillAt::AfterReady { delay_us: rng.below(20_000) },
        _ => KillAt::AfterAcks { n_acks: rng.below(300) as u32, delay_us: rng.below(2_000) },
    }
}

/// Runs one child to its kill; returns its protocol lines.
fn run_child(dir: &Path, mode: Mode, seed: u64, round: u32, when: &KillAt) -> Vec<String> {
    let child = Child::spawn("write", dir, mode, seed, round);
    let deadline = Instant::now() + REPORT_TIMEOUT;
    match *when {
        KillAt::SoonAfterSpawn { delay_us } => std::thread::sleep(Duration::from_micros(delay_us)),
        KillAt::AfterReady { delay_us } => {
            child.expect_event("ready");
            std::thread::sleep(Duration::from_micros(delay_us));
        }
        KillAt::AfterAcks { n_acks, delay_us } => {
            child.expect_event("ready");
            if n_acks > 0 {
                let target = format!("ack {}", n_acks - 1);
                while let Some(line) = child.next_event(deadline) {
                    if line == target || line == "done" {
                        break;
                    }
                    assert!(line.starts_with("ack "), "the child reported {line:?}");
                }
            }
            std::thread::sleep(Duration::from_micros(delay_us));
        }
    }
    child.kill()
}

/// The number of operations the child acknowledged, checking they came in order.
fn count_acks(lines: &[String], context: &str) -> u32 {
    let mut n_acks = 0u32;
    for line in lines {
        match line.strip_prefix("ack ") {
            Some(idx) => {
                assert_eq!(idx.parse::<u32>().ok(), Some(n_acks), "{context}: acknowledgements out of order");
                n_acks += 1;
            }
            None => assert!(line == "ready" || line == "done", "{context}: the child reported {line:?}"),
        }
    }
    n_acks
}

/// Everything the database holds, read with `iter` and confirmed with `get`; every value
/// must be one that was written to its key.
fn read_state(db: &Db, more_keys: impl IntoIterator<Item = Vec<u8>>, context: &str) -> State {
    let mut state = State::new();
    for pair in db.iter() {
        let (key, value) = pair.unwrap_or_else(|error| panic!("{context}: iter failed: {error}"));
        let Some(id) = parse_value(&key, &value) else {
            panic!(
                "{context}: key {} holds {} bytes that were never written to it (starting {:?})",
                show_key(&key),
                value.len(),
                &value[..value.len().min(32)]
            );
        };
        assert!(state.insert(key.clone(), id).is_none(), "{context}: iter yields {} twice", show_key(&key));
    }
    let keys: HashSet<Vec<u8>> = state.keys().cloned().chain(more_keys).collect();
    for key in keys {
        let value = db.get(&key).unwrap_or_else(|error| panic!("{context}: get failed: {error}"));
        let id = value.map(|value| {
            parse_value(&key, &value)
                .unwrap_or_else(|| panic!("{context}: get of {} returns a value never written to it", show_key(&key)))
        });
        assert_eq!(id, state.get(&key).copied(), "{context}: get and iter disagree on {}", show_key(&key));
    }
    assert_eq!(db.stats().n_keys, state.len() as u64, "{context}: n_keys");
    state
}

fn show_key(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(&key[..key.len().min(24)]).into_owned();
    if key.len() > 24 { format!("{text:?}… ({} bytes)", key.len()) } else { format!("{text:?}") }
}

fn show_value(id: Option<&ValueId>) -> String {
    match id {
        None => "nothing".to_owned(),
        Some(id) => format!("the value of round {} op {} member {} ({} bytes)", id.round, id.op, id.member, id.len),
    }
}

/// The prefix `ops[..p]` (with `p >= lowest`) after which `start` becomes `recovered`: the
/// first such `p`, or a description of the closest one.
fn matching_prefix(start: &State, ops: &[Op], recovered: &State, lowest: usize) -> Result<usize, String> {
    let differs = |model: &State, key: &[u8]| model.get(key) != recovered.get(key);
    let mut model = start.clone();
    let all_keys: HashSet<&Vec<u8>> = start.keys().chain(recovered.keys()).collect();
    let mut n_differences = all_keys.iter().filter(|key| differs(&model, key)).count();
    let mut closest = (usize::MAX, 0);
    for p in 0..=ops.len() {
        if p > 0 {
            let op = &ops[p - 1];
            let keys: BTreeSet<&[u8]> = op.changes.iter().map(Change::key).collect();
            n_differences -= keys.iter().filter(|key| differs(&model, key)).count();
            apply(&mut model, op);
            n_differences += keys.iter().filter(|key| differs(&model, key)).count();
        }
        if p >= lowest {
            if n_differences == 0 {
                return Ok(p);
            }
            closest = closest.min((n_differences, p));
        }
    }
    let (n_differences, p) = closest;
    let mut model = start.clone();
    ops[..p].iter().for_each(|op| apply(&mut model, op));
    let mut keys: Vec<&Vec<u8>> = model.keys().chain(recovered.keys()).filter(|key| differs(&model, key)).collect();
    keys.sort();
    keys.dedup();
    let mut message = format!(
        "no prefix of {} operations (at least {lowest}) gives the recovered state; the closest, {p} operations, \
         differs in {n_differences} key(s):",
        ops.len()
    );
    for key in keys.iter().take(12) {
        let touched: Vec<String> = ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.changes.iter().any(|change| change.key() == key.as_slice()))
            .map(|(idx, op)| format!("{idx}{}", if op.batch { " (batch)" } else { "" }))
            .collect();
        message += &format!(
            "\n  {}: found {}, expected {}; written by this round's ops {touched:?}",
            show_key(key),
            show_value(recovered.get(key.as_slice())),
            show_value(model.get(key.as_slice())),
        );
    }
    Err(message)
}

/// Kills `n_kills` children writing with `sync_mode` into one directory, checking the
/// state after each kill.
fn crash_loop(test_name: &str, mode: Mode, n_kills: usize) {
    let seed = test_seed(test_name);
    let mut rng = SplitMix64::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state = State::new();
    let (mut n_acked_total, mut n_lost_total, mut n_in_flight_applied) = (0u64, 0u64, 0u64);
    let mut n_resumed = 0;
    for round in 0..n_kills as u32 {
        let context = format!("{test_name}, seed {seed}, round {round}");
        let when = kill_at(&mut rng);
        let lines = run_child(dir.path(), mode, seed, round, &when);
        let n_acks = count_acks(&lines, &context);
        let context = format!("{context} (killed {when:?}, {n_acks} operations acknowledged)");
        // The operation after the last acknowledged one may have been under way.
        let n_attempted = (n_acks + 1).min(MAX_OPS_PER_ROUND);
        let ops = Plan::ops(seed, round, n_attempted);

        let mut db = options(mode)
            .open(dir.path())
            .unwrap_or_else(|error| panic!("{context}: open after SIGKILL failed: {error}"));
        let more_keys = ops.iter().flat_map(|op| op.changes.iter().map(|change| change.key().to_vec()));
        let recovered = read_state(&db, more_keys.chain(state.keys().cloned()).collect::<Vec<_>>(), &context);
        let lowest = match mode.sync_mode() {
            SyncMode::Always => n_acks as usize,
            _ => 0,
        };
        let p = matching_prefix(&state, &ops, &recovered, lowest).unwrap_or_else(|why| panic!("{context}: {why}"));
        n_acked_total += u64::from(n_acks);
        n_lost_total += u64::from(n_acks).saturating_sub(p as u64);
        n_in_flight_applied += u64::from(p as u32 > n_acks);
        state = recovered;
        if db.stats().recovery.resumed {
            // Taken up as the killed process left it: the index and the log must agree
            // both ways, every record's checksum included.
            n_resumed += 1;
            let report = db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
            assert!(report.is_ok(), "{context}: a resumed database: {:?}", report.problems);
        }

        // Leave the database closed cleanly or, now and then, as if this process crashed too
        // (so that the next child recovers, and may be killed while it does).
        match rng.below(6) {
            0 => db.simulate_crash(),
            _ => db.close().unwrap_or_else(|error| panic!("{context}: close failed: {error}")),
        }
    }

    let db = options(mode).open(dir.path()).expect("final open");
    assert_eq!(read_state(&db, Vec::new(), "final open"), state, "seed {seed}: final state");
    db.close().expect("close");
    let mut db = options(mode).open(dir.path()).expect("clean open");
    assert!(db.stats().recovery.clean, "seed {seed}: the last close was clean");
    assert_eq!(read_state(&db, Vec::new(), "clean open"), state, "seed {seed}: state after a clean close");
    let report = db.verify().expect("verify");
    assert!(report.is_ok(), "seed {seed}: {:?}", report.problems);
    let stats = db.stats();
    eprintln!(
        "{test_name}: {n_kills} kills ({n_resumed} reopens took the killed process up as it was, the rest \
         rebuilt the index), {n_acked_total} operations acknowledged, {n_lost_total} of them lost, \
         {n_in_flight_applied} operations in flight recovered, {} keys at the end; the log begins at {} \
         and ends at {} in {} segments",
        state.len(),
        stats.log_begin,
        stats.log_tail,
        stats.n_segments,
    );
}

fn n_kills() -> usize {
    match std::env::var(KILLS_ENV) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{KILLS_ENV}={text:?} is not a number")),
        Err(_) => DEFAULT_KILLS,
    }
}

#[test]
fn sync_always_keeps_every_acknowledged_write_across_sigkills() {
    crash_loop("sync_always_keeps_every_acknowledged_write_across_sigkills", Mode::Always, n_kills());
}

#[test]
fn sync_never_recovers_a_prefix_of_the_writes_across_sigkills() {
    crash_loop("sync_never_recovers_a_prefix_of_the_writes_across_sigkills", Mode::Never, n_kills().div_ceil(2));
}

/// Issue 8's third criterion: kills land while compaction copies and removes segments and
/// checkpoints are written; no acknowledged write is lost and no deleted key comes back.
#[test]
fn compaction_and_checkpoints_running_lose_no_write_and_resurrect_no_delete_across_sigkills() {
    crash_loop(
        "compaction_and_checkpoints_running_lose_no_write_and_resurrect_no_delete_across_sigkills",
        Mode::Compacting,
        n_kills(),
    );
}

// ---------------------------------------------------------------------------------------
// The lock across processes.

#[test]
fn a_database_held_by_another_process_is_locked_until_that_process_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let holder = Child::spawn("hold", dir.path(), Mode::Always, 0, 0);
    holder.expect_event("ready");
    for options in [options(Mode::Always), options(Mode::Never).repair(true)] {
        match options.open(dir.path()) {
            Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
            other => panic!("open while another process holds the database: {other:?}"),
        }
    }
    holder.kill();

    let db = options(Mode::Always).open(dir.path()).expect("open after the holder was killed");
    assert_eq!(db.get(b"holder").expect("get").as_deref(), Some(&b"the child wrote this"[..]));
    assert!(!db.stats().recovery.clean, "the holder never closed the database");
    let probe = Child::spawn("probe", dir.path(), Mode::Always, 0, 0);
    assert_eq!(probe.finish(), ["locked"], "a child opening the database this process holds");
    db.close().expect("close");
    let probe = Child::spawn("probe", dir.path(), Mode::Always, 0, 0);
    assert_eq!(probe.finish(), ["opened"], "a child opening the database after this process closed it");
}

/// Small memory and segments, no fsync per write: for the tests of a killed process's
/// unsynced tail.
fn unsynced_options() -> Options {
    Options::new().memory_budget(1 << 20).segment_size(1 << 20).sync_mode(SyncMode::Never)
}

/// Writes until the background log writer has written every record to the segment files
/// without syncing the last ones (what a killed process can leave), then kills the
/// database; returns its stats just before, and the number of `key-…` keys written.
fn leave_an_unsynced_tail(dir: &Path) -> (talus_engine::Stats, u32) {
    let db = unsynced_options().open(dir).expect("create");
    db.put(b"first", [1u8; 100]).expect("put");
    db.sync().expect("sync");
    // (The background log writer writes when a step of the ring is published.)
    let mut n_keys = 0u32;
    let left_unsynced = loop {
        assert!(n_keys < 10_000, "the background log writer never caught up with the writes");
        db.put(format!("key-{n_keys}"), [7u8; 1000]).expect("put");
        n_keys += 1;
        let deadline = Instant::now() + Duration::from_millis(50);
        let stats = loop {
            let stats = db.stats();
            if stats.log_written_until == stats.log_tail || Instant::now() >= deadline {
                break stats;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if stats.log_written_until == stats.log_tail && stats.log_synced_until < stats.log_tail {
            break stats;
        }
    };
    db.simulate_kill();
    (left_unsynced, n_keys)
}

/// A killed process's log may end in bytes it wrote to its last segment and never synced.
/// Taking it up leaves them as they were, known to be unsynced: the open waits for no
/// fsync, `log_synced_until` is where the killed process had synced to, and the next
/// commit syncs them (as the killed process's next commit would have).
#[test]
fn taking_up_a_killed_process_leaves_its_unsynced_tail_to_the_next_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (left_unsynced, n_keys) = leave_an_unsynced_tail(dir.path());
    for round in 0..2 {
        let db = unsynced_options().open(dir.path()).expect("reopen after the kill");
        let stats = db.stats();
        assert!(stats.recovery.resumed, "round {round}: {:?}", stats.recovery);
        assert_eq!(stats.log_tail, left_unsynced.log_tail, "round {round}");
        assert_eq!(
            stats.log_synced_until, left_unsynced.log_synced_until,
            "round {round}: durable as far as the killed process made it, no further"
        );
        assert_eq!(db.get(format!("key-{}", n_keys - 1)).expect("get").as_deref(), Some(&[7u8; 1000][..]));
        // A second kill before any commit leaves the same as the first.
        db.simulate_kill();
    }

    let db = unsynced_options().open(dir.path()).expect("reopen");
    assert!(db.stats().recovery.resumed);
    db.sync().expect("sync");
    let stats = db.stats();
    assert_eq!(stats.log_synced_until, stats.log_tail, "the commit synced what the killed process left");
    assert_eq!(stats.counters.n_syncs, 1, "{:?}", stats.counters);
    // A commit with nothing new leaves nothing to sync.
    db.sync().expect("sync");
    assert_eq!(db.stats().counters.n_syncs, 1);
    db.close().expect("close");
}

/// Writes that reach the next segment first sync the one taken up, as the killed process
/// would have before it wrote there.
#[test]
fn taking_up_an_unsynced_tail_syncs_it_before_the_next_segment_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (left_unsynced, _) = leave_an_unsynced_tail(dir.path());
    let db = unsynced_options().open(dir.path()).expect("reopen after the kill");
    let stats = db.stats();
    assert!(stats.recovery.resumed && stats.log_synced_until == left_unsynced.log_synced_until, "{stats:?}");
    let boundary = left_unsynced.log_tail.next_multiple_of(stats.segment_size);
    for more in 0.. {
        assert!(more < 100_000, "the log never reached the next segment's file");
        if db.stats().log_written_until > boundary {
            break;
        }
        db.put(format!("more-{more}"), [9u8; 1000]).expect("put");
    }
    let stats = db.stats();
    assert!(stats.log_synced_until >= boundary, "synced until {}, boundary {boundary}", stats.log_synced_until);
    assert_eq!(stats.counters.n_syncs, 0, "no commit: the segment's roll-over synced it");
    db.close().expect("close");
}
