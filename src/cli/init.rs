//! `cairn init`: create a repository.

use anyhow::Result;

use super::{context, output, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct InitArgs {}

pub fn run(global: &GlobalArgs, _args: &InitArgs) -> Result<i32> {
    let (path, _) = context::repo_location(global);
    let repo = context::init_repository(global, path.clone())?;
    if global.json {
        output::print_json(&serde_json::json!({
            "repository": path.display().to_string(),
            "id": repo.config().repo_id,
        }))?;
    } else if !global.quiet {
        eprintln!(
            "created cairn repository {} at {}",
            &repo.config().repo_id[..8],
            path.display()
        );
        eprintln!("keep the password safe: without it nobody can recover the data");
    }
    Ok(super::exit::OK)
}
