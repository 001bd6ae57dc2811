//! `cairn cat SNAP:PATH`: one file's content on stdout, streamed blob by blob.

use anyhow::Result;

use cairn::browse::content::write_content;
use cairn::format::tree::NodeKind;
use cairn::Error;

use super::stdout::Output;
use super::{locate, selection, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn cat latest:/db.sql | psql mydb
  cairn cat latest:/etc/nginx/nginx.conf | head
  cairn cat --at \"2026-01-23 14:30\" latest:/etc/passwd > passwd.old
  cairn -v cat 1a2b3c4d:/srv/big.img > big.img      # -v: bytes read from the repository
Memory stays bounded by the largest chunk (8 MiB by default, 16 MiB at most) whatever the file size.";

#[derive(clap::Args, Debug)]
pub struct CatArgs {
    /// `latest` or a snapshot id prefix, then `:` and the file's path.
    #[arg(value_name = "SNAP:PATH")]
    pub target: String,
    #[command(flatten)]
    pub filter: selection::FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &CatArgs) -> Result<i32> {
    let (opened, at) = locate::open_path(global, &args.target, &args.filter)?;
    let node = match &at.node {
        Some(node) if node.kind == NodeKind::File => node,
        _ => {
            return Err(Error::invalid_input(format!(
                "{} is not a regular file; use `cairn ls` for directories",
                at.display()
            ))
            .into())
        }
    };
    let mut out = Output::new();
    let result = write_content(&opened.repo, node, &mut out)
        .map(|_| super::exit::OK)
        .map_err(|e| anyhow::Error::from(e).context(format!("cat {}", at.display())));
    let result = out.finish(result);
    locate::report_reads(global, &opened.counter);
    result
}
