//! Tree blob plaintexts (FORMAT.md §9). Property: whatever decodes encodes again, and the
//! encoding decodes to an equal tree (and, the encoding being canonical, to the same bytes).
#![no_main]

use cairn::format::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data) {
        let bytes = tree.encode().expect("a decoded tree encodes");
        let again = Tree::decode(&bytes).expect("an encoded tree decodes");
        assert_eq!(again, tree);
        assert_eq!(bytes, data, "tree encoding is not canonical");
        for node in &tree.nodes {
            assert!(tree.find(&node.name).is_some());
        }
    }
});
