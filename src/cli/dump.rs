//! `cairn dump SNAP[:PATH] --format tar`: a subtree as an archive on stdout.

use anyhow::Result;

use cairn::browse::TreeLoader;
use cairn::dump::dump_tar;

use super::stdout::Output;
use super::{locate, selection, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn dump latest:/srv/www --format tar | ssh web2 tar -x -C /srv/www
  cairn dump latest:/etc --format tar | tar -t
  cairn dump --at \"2026-01-23\" latest --format tar > snapshot.tar
Members are relative to PATH (`./` carries PATH's own metadata); without a path, the snapshot's
absolute paths without the leading `/`. The archive is POSIX pax: long names, nanosecond mtimes,
large files, owners, hardlinks, symlinks, devices and xattrs (SCHILY.xattr) are kept; extract with
`tar --xattrs --xattrs-include='*' -xpf -` or `bsdtar -xpf -`. Sparse files are written in full.";

/// Archive formats `dump` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// POSIX pax (ustar with extended headers).
    Tar,
}

#[derive(clap::Args, Debug)]
pub struct DumpArgs {
    /// `latest` or a snapshot id prefix, optionally followed by `:PATH`.
    #[arg(value_name = "SNAP[:PATH]")]
    pub target: String,
    /// Archive format.
    #[arg(long, value_enum, default_value = "tar")]
    pub format: Format,
    #[command(flatten)]
    pub filter: selection::FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &DumpArgs) -> Result<i32> {
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        // Binary archive bytes on a terminal help nobody and can leave it in a broken state.
        return Err(cairn::Error::invalid_input(
            "refusing to write a tar archive to a terminal: redirect it (> snapshot.tar) or pipe it (| tar -t)",
        )
        .into());
    }
    let (opened, at) = locate::open_path(global, &args.target, &args.filter)?;
    let loader = TreeLoader::cached(&opened.repo);
    let mut out = Output::new();
    let result = match args.format {
        Format::Tar => dump_tar(&loader, &at, &mut out),
    };
    let result = result
        .map(|stats| {
            if !global.quiet {
                for skipped in &stats.skipped {
                    errln!("warning: {skipped}");
                }
            }
            if global.verbose > 0 && !global.quiet {
                errln!(
                    "dumped {} of snapshot {}: {} entries, {}",
                    at.display(),
                    opened.id.short(),
                    stats.entries,
                    super::output::bytes(stats.bytes)
                );
            }
            super::exit::OK
        })
        .map_err(|e| anyhow::Error::from(e).context(format!("dump {}", at.display())));
    let result = out.finish(result);
    locate::report_reads(global, &opened.counter);
    result
}
