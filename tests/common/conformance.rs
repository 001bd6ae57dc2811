//! The contract every `Backend` keeps, run against each storage (local, in-process S3, the real
//! servers) as named cases: every case runs even when an earlier one fails, and the failure names
//! the storage and the cases that broke.

use std::panic::{catch_unwind, AssertUnwindSafe};

use cairn::backend::{self, Backend, ObjectKind};
use cairn::ErrorKind;

fn hash_name(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// A case: what it checks, and the check. Cases after the first use names of their own and look
/// only at their own objects, so their order does not matter.
type Case = (&'static str, fn(&dyn Backend));

const CASES: &[Case] = &[
    ("a new location has no config and is created", new_location),
    ("written objects are listed with their sizes", listing),
    (
        "objects read whole and in ranges; a short range is damage",
        reads,
    ),
    (
        "bounded reads refuse larger objects and read empty ones",
        bounded_reads,
    ),
    ("a missing object is NotFound and named", missing_objects),
    ("path-like names and shards are refused", path_like_names),
    ("a rewrite takes the new bytes whole", rewrite),
    (
        "shard listings find what a plain listing finds",
        shard_listing,
    ),
    ("remove is idempotent", remove),
    ("create on a non-empty location is refused", create_again),
];

/// Runs every case on `b`, an empty location, and fails naming each case that failed.
pub fn run(b: &dyn Backend) {
    let mut failures = Vec::new();
    for (name, case) in CASES {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| case(b))) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("- {name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}: {} of {} backend cases failed:\n{}",
        b.location(),
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

fn new_location(b: &dyn Backend) {
    assert!(
        !b.has_config().unwrap(),
        "{}: a new location has no config",
        b.location()
    );
    b.create().unwrap();
    assert!(b.list(ObjectKind::Pack).unwrap().is_empty());
    assert!(b.list(ObjectKind::Config).unwrap().is_empty());
    b.write(ObjectKind::Config, "config", b"cfg").unwrap();
    assert!(b.has_config().unwrap());
    assert_eq!(
        b.list(ObjectKind::Config).unwrap(),
        vec![("config".to_string(), 3)]
    );
}

fn listing(b: &dyn Backend) {
    let small = b"snapshot bytes for the listing".to_vec();
    let small_name = hash_name(&small);
    let key_name = hash_name(b"key");
    b.write(ObjectKind::Snapshot, &small_name, &small).unwrap();
    b.write(ObjectKind::Key, &key_name, b"key").unwrap();
    assert!(b
        .list(ObjectKind::Snapshot)
        .unwrap()
        .contains(&(small_name.clone(), small.len() as u64)));
    assert!(b.list(ObjectKind::Key).unwrap().contains(&(key_name, 3)));
    assert!(
        !b.list(ObjectKind::Lease)
            .unwrap()
            .iter()
            .any(|(n, _)| *n == small_name),
        "kinds are listed apart"
    );
    b.remove(ObjectKind::Snapshot, &small_name).unwrap();
}

fn reads(b: &dyn Backend) {
    let pack: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let pack_name = hash_name(&pack);
    b.write(ObjectKind::Pack, &pack_name, &pack).unwrap();
    assert!(b
        .list(ObjectKind::Pack)
        .unwrap()
        .contains(&(pack_name.clone(), pack.len() as u64)));
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
    b.remove(ObjectKind::Pack, &pack_name).unwrap();
}

fn bounded_reads(b: &dyn Backend) {
    let pack: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let pack_name = hash_name(&pack);
    b.write(ObjectKind::Pack, &pack_name, &pack).unwrap();
    let limit = pack.len() as u64 - 1;
    let too_large = b
        .read_bounded(ObjectKind::Pack, &pack_name, limit)
        .unwrap_err();
    assert_eq!(too_large.kind(), ErrorKind::Corrupted, "{too_large}");
    assert!(
        too_large
            .to_string()
            .contains(&format!("is {} bytes, more than the {limit}", pack.len())),
        "{too_large}"
    );
    assert_eq!(
        b.read_bounded(ObjectKind::Pack, &pack_name, pack.len() as u64)
            .unwrap(),
        pack
    );
    let small = b"bounded snapshot".to_vec();
    let small_name = hash_name(&small);
    b.write(ObjectKind::Snapshot, &small_name, &small).unwrap();
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
    for (kind, name) in [
        (ObjectKind::Index, &empty_name),
        (ObjectKind::Snapshot, &small_name),
        (ObjectKind::Pack, &pack_name),
    ] {
        b.remove(kind, name).unwrap();
    }
}

fn missing_objects(b: &dyn Backend) {
    let missing = hash_name(b"never written");
    for err in [
        b.read(ObjectKind::Index, &missing).unwrap_err(),
        b.size(ObjectKind::Index, &missing).unwrap_err(),
        b.read_range(ObjectKind::Pack, &missing, 0, 4).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.is_damage());
        let object = err.object().expect("the missing object is named");
        assert_eq!(object.name, missing, "{err}");
        assert!(err.to_string().contains(&missing), "{err}");
    }
}

fn path_like_names(b: &dyn Backend) {
    assert!(
        b.read(ObjectKind::Index, "../config").is_err(),
        "path-like names are refused"
    );
    assert!(
        b.list_pack_shard("..").is_err(),
        "path-like shards are refused"
    );
}

fn rewrite(b: &dyn Backend) {
    let name = hash_name(b"first version");
    b.write(ObjectKind::Snapshot, &name, b"first version")
        .unwrap();
    b.write(ObjectKind::Snapshot, &name, b"other").unwrap();
    assert_eq!(b.read(ObjectKind::Snapshot, &name).unwrap(), b"other");
    b.remove(ObjectKind::Snapshot, &name).unwrap();
}

fn shard_listing(b: &dyn Backend) {
    let packs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
    for p in &packs {
        b.write_owned(ObjectKind::Pack, &hash_name(p), p.clone())
            .unwrap();
    }
    let all = b.list(ObjectKind::Pack).unwrap();
    for p in &packs {
        assert!(all.contains(&(hash_name(p), p.len() as u64)));
    }
    assert_eq!(
        backend::list_concurrently(b, ObjectKind::Pack, 3).unwrap(),
        all
    );
    if let Some(shards) = b.pack_shards().unwrap() {
        // A storage may keep a shard whose packs were all removed (directories on SFTP, WebDAV):
        // every pack's shard is listed, and each shard lists exactly its packs.
        for (name, _) in &all {
            assert!(
                shards.contains(&name[..2].to_string()),
                "{name}: {shards:?}"
            );
        }
        for shard in &shards {
            assert_eq!(
                b.list_pack_shard(shard).unwrap(),
                all.iter()
                    .filter(|(n, _)| n.starts_with(shard.as_str()))
                    .cloned()
                    .collect::<Vec<_>>()
            );
        }
    }
    assert_eq!(
        b.read(ObjectKind::Pack, &hash_name(&packs[5])).unwrap(),
        packs[5]
    );
    for p in &packs {
        b.remove(ObjectKind::Pack, &hash_name(p)).unwrap();
    }
}

fn remove(b: &dyn Backend) {
    let name = hash_name(b"removed twice");
    b.write(ObjectKind::Snapshot, &name, b"removed twice")
        .unwrap();
    b.remove(ObjectKind::Snapshot, &name).unwrap();
    b.remove(ObjectKind::Snapshot, &name).unwrap();
    assert!(!b
        .list(ObjectKind::Snapshot)
        .unwrap()
        .iter()
        .any(|(n, _)| *n == name));
}

fn create_again(b: &dyn Backend) {
    let err = b.create().unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidInput,
        "create on a non-empty location: {err}"
    );
}
