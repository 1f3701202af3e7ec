use super::*;
use crate::storage::MemStorage;

fn write_sample(storage: &Arc<dyn Storage>) -> (String, Vec<(u64, u64)>, Vec<SegmentUsage>) {
    let entries: Vec<(u64, u64)> = (0..100_000u64).map(|idx| (idx.wrapping_mul(0x9E37_79B9), idx * 64)).collect();
    let usage = vec![SegmentUsage { first_address: 0, written_bytes: 900, live_bytes: 800, tombstone_bytes: 50 }];
    let mut writer = CheckpointWriter::create(Arc::clone(storage)).expect("create");
    for &(hash, address) in &entries {
        writer.push_entry(hash, address).expect("push");
    }
    let (path, _) = writer.finish(7, 100, 200, 9, &usage).expect("finish");
    (path, entries, usage)
}

fn load_all(storage: &Arc<dyn Storage>, path: &str) -> Result<(Vec<(u64, u64)>, LoadedCheckpoint)> {
    let file = storage.open(path, false).expect("open");
    let header = read_header(file.as_ref(), path)?;
    let mut seen = Vec::new();
    let loaded = load(file.as_ref(), path, header, &mut |hash, address| {
        seen.push((hash, address));
        Ok(())
    })?;
    Ok((seen, loaded))
}

#[test]
fn a_checkpoint_round_trips() {
    let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
    let (path, entries, usage) = write_sample(&storage);
    assert_eq!(path, "checkpoints/00000000000000c8.ckpt");
    assert_eq!(parse_checkpoint_name("00000000000000c8.ckpt"), Some(200));
    let (seen, loaded) = load_all(&storage, &path).expect("load");
    assert_eq!(seen, entries);
    assert_eq!(loaded.usage, usage);
    let header = loaded.header;
    assert_eq!((header.db_id, header.replay_from, header.covers_until, header.next_seq), (7, 100, 200, 9));
}

#[test]
fn every_damaged_byte_and_every_cut_is_an_error() {
    let storage = MemStorage::new();
    let shared: Arc<dyn Storage> = Arc::new(storage.clone());
    let (path, _, _) = write_sample(&shared);
    let good = storage.file_contents(&path).expect("written");
    // A sample of positions across header, entries, usage and trailer.
    let positions: Vec<usize> =
        (0..80).chain((80..good.len()).step_by(4099)).chain(good.len() - 48..good.len()).collect();
    for at in positions {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        storage.set_file_contents(&path, &bad);
        assert!(load_all(&shared, &path).is_err(), "flipped byte {at}");
    }
    for len in [0, 10, 63, 64, 1000, good.len() - 9, good.len() - 1] {
        storage.set_file_contents(&path, &good[..len]);
        assert!(load_all(&shared, &path).is_err(), "cut to {len}");
    }
}

#[test]
fn checkpoint_offsets_match_the_format_document() {
    let storage = MemStorage::new();
    let shared: Arc<dyn Storage> = Arc::new(storage.clone());
    let (path, _, _) = write_sample(&shared);
    let bytes = storage.file_contents(&path).expect("written");
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
    assert_eq!(&bytes[0..8], b"TALUSCKP");
    assert_eq!((u32_at(8), u32_at(12)), (1, 64));
    assert_eq!([u64_at(16), u64_at(24), u64_at(32), u64_at(40), u64_at(48)], [7, 100, 200, 9, 100_000]);
    assert_eq!(u32_at(56), 1);
    assert_eq!(u32_at(60), crc32c::crc32c(&bytes[..60]));
    assert_eq!([u64_at(64 + 16), u64_at(64 + 24)], [0x9E37_79B9, 64]);
    let usage_at = 64 + 16 * 100_000;
    assert_eq!([u64_at(usage_at), u64_at(usage_at + 8), u64_at(usage_at + 16)], [0, 900, 800]);
    assert_eq!(u32_at(usage_at + 32), crc32c::crc32c(&bytes[64..usage_at + 32]));
    assert_eq!(bytes.len(), usage_at + 32 + 8);
}
