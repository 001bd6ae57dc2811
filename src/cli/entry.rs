//! How one snapshot entry is shown: `ls -l` style lines and JSON objects, shared by ls and find.

use cairn::browse::escape::escape;
use cairn::format::tree::{Node, NodeKind, Timestamp};

/// The entry type as a word.
pub fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::CharDevice => "chardev",
        NodeKind::BlockDevice => "blockdev",
        NodeKind::Socket => "socket",
    }
}

/// `drwxr-sr-x` style mode.
pub fn mode_string(node: &Node) -> String {
    let kind = match node.kind {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
    };
    let m = node.mode;
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let special =
        |exec: u32, special: u32, set: char, unset: char| match (m & exec != 0, m & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// A time in the local zone, to the second.
pub fn local(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.secs, t.nanos)
        .map(|d| {
            d.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| t.secs.to_string())
}

/// RFC 3339 UTC with nanoseconds.
pub fn rfc3339(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.secs, t.nanos)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| t.secs.to_string())
}

fn owner(name: &[u8], id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        escape(name)
    }
}

/// `mode owner/group size mtime path [-> target]`.
pub fn long_line(path: &[u8], node: &Node) -> String {
    let mut line = format!(
        "{} {:>8}/{:<8} {:>12} {} {}",
        mode_string(node),
        owner(&node.user, node.uid),
        owner(&node.group, node.gid),
        node.size,
        local(node.mtime),
        escape(path)
    );
    if node.kind == NodeKind::Symlink {
        line.push_str(" -> ");
        line.push_str(&escape(&node.target));
    }
    line
}

/// The JSON object for an entry.
pub fn json(path: &[u8], node: &Node) -> serde_json::Value {
    let mut v = serde_json::json!({
        "path": escape(path),
        "name": escape(&node.name),
        "type": kind_name(node.kind),
        "mode": format!("{:04o}", node.mode),
        "uid": node.uid,
        "gid": node.gid,
        "user": escape(&node.user),
        "group": escape(&node.group),
        "size": node.size,
        "mtime": rfc3339(node.mtime),
    });
    if node.kind == NodeKind::Symlink {
        v["target"] = escape(&node.target).into();
    }
    v
}
