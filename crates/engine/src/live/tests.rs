//! The live state's layout against docs/format.md ("Engine live state"), and what makes it
//! resumable.

use super::*;

const DATA: usize = talus_datapool::HEADER_LEN;
const SEGMENT: u64 = 1 << 20;
const BOOT: u128 = 0x1122_3344_5566_7788_99aa_bbcc_ddee_ff00;

fn word_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[DATA + offset..DATA + offset + 8].try_into().expect("8 bytes"))
}

fn usage(first_address: u64) -> SegmentUsage {
    SegmentUsage { first_address, written_bytes: 900, live_bytes: 500, tombstone_bytes: 100 }
}

#[test]
fn the_words_sit_where_docs_format_md_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (live, snapshot) = LiveState::open(dir.path(), 1024, SEGMENT).expect("create");
    assert!(snapshot.is_none(), "a new file is not valid");
    live.start(Some(BOOT), 77, (1000, 1000), 5, &[usage(0), usage(3 * SEGMENT)]);
    live.published(2000, 9);
    live.written(1500);
    live.synced(1200);
    live.stripe_busy(3, true);
    let bytes = std::fs::read(dir.path().join(LIVE_PATH)).expect("read");
    let data_len = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
    assert_eq!(data_len, 196_800, "the pool header's data length");
    assert_eq!(word_at(&bytes, 0), 1, "valid");
    assert_eq!(u128::from(word_at(&bytes, 8)) | (u128::from(word_at(&bytes, 16)) << 64), BOOT);
    assert_eq!((word_at(&bytes, 24), word_at(&bytes, 32), word_at(&bytes, 64)), (2000, 9, 1500));
    assert_eq!(word_at(&bytes, 72), 1200, "synced_until");
    assert_eq!([128, 136, 144, 152, 160].map(|offset| word_at(&bytes, offset)), [0, N_SLOTS as u64, 1024, SEGMENT, 77]);
    assert_eq!(word_at(&bytes, 192 + 64 * 3), 1, "stripe 3 busy");
    assert_eq!(word_at(&bytes, 192 + 64 * 2), 0);
    let slot = |k: usize| [0, 8, 16, 24].map(|field| word_at(&bytes, 65_728 + 32 * k + field));
    assert_eq!(slot(0), [1, 900, 500, 100]);
    assert_eq!(slot(3), [3 * SEGMENT + 1, 900, 500, 100]);
    assert_eq!(slot(1), [0; 4]);
}

fn reopened(dir: &Path) -> Option<LiveSnapshot> {
    LiveState::open(dir, 1024, SEGMENT).expect("reopen").1
}

#[test]
fn only_a_quiet_state_of_this_boot_and_database_is_resumable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let resumable = |snapshot: Option<LiveSnapshot>| {
        snapshot.expect("valid").resumable(Some(BOOT), 77, SEGMENT, 1024).map(|r| (r.log_end, r.next_seq, r.usage))
    };
    let run = |prepare: &dyn Fn(&LiveState)| {
        let (live, _) = LiveState::open(dir.path(), 1024, SEGMENT).expect("open");
        live.start(Some(BOOT), 77, (1000, 1000), 5, &[usage(0)]);
        prepare(&live);
        drop(live); // as a kill leaves it
        reopened(dir.path())
    };
    let quiet = run(&|live| {
        live.published(2000, 9);
        live.written(2000);
    });
    assert_eq!(resumable(quiet), Ok((2000, 9, vec![usage(0)])));
    // Opening it again cleared `valid`: nothing to take up twice.
    assert!(reopened(dir.path()).is_none());

    let busy = run(&|live| live.stripe_busy(1023, true));
    assert!(resumable(busy).is_err(), "a writer was half-way through");
    let unsynced = run(&|live| {
        live.published(2000, 9);
        live.written(2000);
        live.synced(1496);
    });
    assert_eq!(unsynced.expect("valid").resumable(Some(BOOT), 77, SEGMENT, 1024).map(|r| r.synced_until), Ok(1496));
    let synced_past_the_end = run(&|live| live.synced(1008));
    assert!(resumable(synced_past_the_end).is_err(), "synced beyond what was written");
    let in_memory = run(&|live| live.published(2000, 9));
    assert!(resumable(in_memory).is_err(), "records only in memory");
    let invalidated = run(&|live| live.invalidate());
    assert!(invalidated.is_none(), "a close was under way");
    let shared_slot = run(&|live| live.claim_slot(N_SLOTS as u64 * SEGMENT));
    assert!(resumable(shared_slot).is_err(), "two segments wanted one slot");
    let released = run(&|live| live.release_slot(0));
    assert_eq!(resumable(released), Ok((1000, 5, vec![])));

    let quiet = || run(&|_| {});
    assert!(quiet().expect("valid").resumable(Some(BOOT + 1), 77, SEGMENT, 1024).is_err(), "another boot");
    assert!(quiet().expect("valid").resumable(None, 77, SEGMENT, 1024).is_err(), "no boot id");
    assert!(quiet().expect("valid").resumable(Some(BOOT), 78, SEGMENT, 1024).is_err(), "another database");
    assert!(quiet().expect("valid").resumable(Some(BOOT), 77, 2 * SEGMENT, 1024).is_err(), "another segment size");
}

/// `start` gives each segment the slot of its number modulo `N_SLOTS`: a second segment
/// for a slot already taken overflows (no take-up), and a slot `start` does not fill is
/// cleared of what an earlier run left there.
#[test]
fn start_fills_each_slot_once_and_clears_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (live, _) = LiveState::open(dir.path(), 1024, SEGMENT).expect("create");
    live.start(Some(BOOT), 77, (1000, 1000), 5, &[usage(0), usage(5 * SEGMENT), usage(9 * SEGMENT)]);
    drop(live);
    let snapshot = reopened(dir.path()).expect("valid");
    assert!(!snapshot.overflow);
    let mut firsts: Vec<u64> = snapshot.usage.iter().map(|segment| segment.first_address).collect();
    firsts.sort_unstable();
    assert_eq!(firsts, [0, 5 * SEGMENT, 9 * SEGMENT]);

    // Started again (after a reopen) with other segments: slot 5 keeps its segment, slot 9
    // is cleared, and segment N_SLOTS + 5 has no slot of its own.
    let (live, _) = LiveState::open(dir.path(), 1024, SEGMENT).expect("reopen");
    let wrapped = (N_SLOTS as u64 + 5) * SEGMENT;
    live.start(Some(BOOT), 77, (1000, 1000), 5, &[usage(5 * SEGMENT), usage(wrapped), usage(7 * SEGMENT)]);
    drop(live);
    let snapshot = reopened(dir.path()).expect("valid");
    assert!(snapshot.overflow, "two segments for slot 5");
    let mut firsts: Vec<u64> = snapshot.usage.iter().map(|segment| segment.first_address).collect();
    firsts.sort_unstable();
    assert_eq!(firsts, [5 * SEGMENT, 7 * SEGMENT], "slot 5 keeps the first, slot 9 is cleared");
}
