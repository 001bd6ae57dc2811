//! placeholder
#[derive(clap::Args, Debug)]
pub struct DiffArgs {}
pub const EXAMPLES: &str = "";
pub fn run(_: &super::GlobalArgs, _: &DiffArgs) -> anyhow::Result<i32> {
    Ok(0)
}
