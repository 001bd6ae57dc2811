//! The contract every `Backend` keeps, run against each storage (local, in-process S3, the real servers).

use cairn::backend::{self, Backend, ObjectKind};
use cairn::ErrorKind;

fn hash_name(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Exercises create, write, list, read, read_range, size, overwrite and remove on an empty location.
pub fn run(b: &dyn Backend) {
    assert!(
        !b.has_config().unwrap(),
        "{}: a new location has no config",
        b.location()
    );
    b.create().unwrap();
    assert!(b.list(ObjectKind::Pack).unwrap().is_empty());
    assert!(b.list(ObjectKind::Config).unwrap().is_empty());

    let pack: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let pack_name = hash_name(&pack);
    let small = b"snapshot bytes".to_vec();
    let small_name = hash_name(&small);
    b.write(ObjectKind::Pack, &pack_name, &pack).unwrap();
    b.write(ObjectKind::Snapshot, &small_name, &small).unwrap();
    b.write(ObjectKind::Config, "config", b"cfg").unwrap();
    b.write(ObjectKind::Key, &hash_name(b"key"), b"key")
        .unwrap();

    assert!(b.has_config().unwrap());
    assert_eq!(
        b.list(ObjectKind::Config).unwrap(),
        vec![("config".to_string(), 3)]
    );
    assert_eq!(
        b.list(ObjectKind::Pack).unwrap(),
        vec![(pack_name.clone(), pack.len() as u64)]
    );
    assert_eq!(
        b.list(ObjectKind::Snapshot).unwrap(),
        vec![(small_name.clone(), small.len() as u64)]
    );
    assert_eq!(b.list(ObjectKind::Key).unwrap().len(), 1);
    assert!(b.list(ObjectKind::Index).unwrap().is_empty());

    assert_eq!(b.read(ObjectKind::Pack, &pack_name).unwrap(), pack);
    assert_eq!(
        b.read_range(ObjectKind::Pack, &pack_name, 1_000_000, 10)
            .unwrap(),
        &pack[1_000_000..1_000_010]
    );
    assert_eq!(
        b.size(ObjectKind::Pack, &pack_name).unwrap(),
        pack.len() as u64
    );
    let past_end = b.read_range(ObjectKind::Pack, &pack_name, pack.len() as u64 - 5, 10);
    assert_eq!(
        past_end.unwrap_err().kind(),
        ErrorKind::Corrupted,
        "a short read is damage, not a backend error"
    );

    // A bounded read refuses an object larger than its bound, naming both sizes, and reads one
    // within it whole; a zero-byte object reads as empty.
    let limit = pack.len() as u64 - 1;
    let too_large = b
        .read_bounded(ObjectKind::Pack, &pack_name, limit)
        .unwrap_err();
    assert_eq!(too_large.kind(), ErrorKind::Corrupted, "{too_large}");
    assert!(
        too_large
            .to_string()
            .contains(&format!("is {} bytes, more than the {limit}", pack.len())),
        "{}: {too_large}",
        b.location()
    );
    assert_eq!(
        b.read_bounded(ObjectKind::Pack, &pack_name, pack.len() as u64)
            .unwrap(),
        pack
    );
    let mut reused = Vec::with_capacity(10);
    b.read_bounded_into(ObjectKind::Snapshot, &small_name, 100, &mut reused)
        .unwrap();
    assert_eq!(reused, small);
    let empty_name = hash_name(b"");
    b.write(ObjectKind::Index, &empty_name, b"").unwrap();
    assert!(b
        .read_bounded(ObjectKind::Index, &empty_name, 0)
        .unwrap()
        .is_empty());
    b.remove(ObjectKind::Index, &empty_name).unwrap();

    let missing = hash_name(b"never written");
    assert_eq!(
        b.read(ObjectKind::Index, &missing).unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    assert_eq!(
        b.size(ObjectKind::Index, &missing).unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    assert!(
        b.read(ObjectKind::Index, "../config").is_err(),
        "path-like names are refused"
    );

    // A rewrite (sync replacing a torn object) takes the new bytes whole.
    b.write(ObjectKind::Snapshot, &small_name, b"other")
        .unwrap();
    assert_eq!(b.read(ObjectKind::Snapshot, &small_name).unwrap(), b"other");

    // Packs in several shards: the shard-by-shard listing sync uses finds what a plain listing finds.
    let packs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
    for p in &packs {
        b.write_owned(ObjectKind::Pack, &hash_name(p), p.clone())
            .unwrap();
    }
    let all = b.list(ObjectKind::Pack).unwrap();
    assert_eq!(all.len(), 7);
    assert_eq!(
        backend::list_concurrently(b, ObjectKind::Pack, 3).unwrap(),
        all
    );
    if let Some(shards) = b.pack_shards().unwrap() {
        let mut expected: Vec<String> = all.iter().map(|(n, _)| n[..2].to_string()).collect();
        expected.dedup();
        assert_eq!(
            shards,
            expected,
            "{}: one shard per first two hex digits",
            b.location()
        );
        assert_eq!(
            b.list_pack_shard(&shards[0]).unwrap(),
            all.iter()
                .filter(|(n, _)| n.starts_with(&shards[0]))
                .cloned()
                .collect::<Vec<_>>()
        );
    }
    assert!(
        b.list_pack_shard("..").is_err(),
        "path-like shards are refused"
    );
    assert_eq!(
        b.read(ObjectKind::Pack, &hash_name(&packs[5])).unwrap(),
        packs[5]
    );

    b.remove(ObjectKind::Snapshot, &small_name).unwrap();
    b.remove(ObjectKind::Snapshot, &small_name).unwrap();
    assert!(b.list(ObjectKind::Snapshot).unwrap().is_empty());

    let err = b.create().unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidInput,
        "create on a non-empty location: {err}"
    );
}
