//! `cairn init`: create a repository.

use anyhow::Result;

use cairn::format::config::Config;

use super::{context, output, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Target size of pack files in MiB (1 to 1024).
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    pub pack_size: u32,
    /// zstd level of file contents and trees (-7 to 22; default 2). Higher stores less and
    /// backs up slower; reading back is about as fast at any level.
    #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
    pub compression: Option<i32>,
    /// zstd level of standard input and dump commands (-7 to 22; default 1).
    #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
    pub stream_compression: Option<i32>,
    /// S3 Object Lock for every object the repository writes (FORMAT.md §17).
    #[command(flatten)]
    pub lock: super::retention::LockArgs,
}

pub fn run(global: &GlobalArgs, args: &InitArgs) -> Result<i32> {
    let mut config = Config::generate()?;
    if !(1..=1024).contains(&args.pack_size) {
        return Err(cairn::Error::invalid_input(format!(
            "--pack-size {} is out of range: give 1 to 1024 (MiB)",
            args.pack_size
        ))
        .into());
    }
    config.pack_size = args.pack_size << 20;
    for (flag, level) in [
        ("--compression", args.compression),
        ("--stream-compression", args.stream_compression),
    ] {
        if level.is_some_and(|l| !(-7..=22).contains(&l)) {
            return Err(cairn::Error::invalid_input(format!(
                "{flag} {} is out of range: give a zstd level from -7 to 22",
                level.unwrap_or_default()
            ))
            .into());
        }
    }
    if let Some(level) = args.compression {
        config.zstd_level = level;
    }
    if let Some(level) = args.stream_compression {
        config.stream_zstd_level = Some(level);
    }
    let repo = context::init_repository(global, config, args.lock.settings()?)?;
    let location = repo.backend().location();
    if global.json {
        output::print_json(&serde_json::json!({
            "repository": location,
            "id": repo.config().repo_id,
            "lock": args.lock.settings()?.map(|s| serde_json::json!({
                "mode": s.mode,
                "period_seconds": s.period_seconds,
                "margin_seconds": s.margin_seconds,
            })),
        }))?;
    } else if !global.quiet {
        errln!(
            "created cairn repository {} at {}",
            &repo.config().repo_id[..8],
            location
        );
        errln!("{}", context::PASSWORD_WARNING);
    }
    Ok(super::exit::OK)
}
