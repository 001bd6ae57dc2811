//! placeholder
#[derive(clap::Args, Debug)]
pub struct DumpArgs {}
pub const EXAMPLES: &str = "";
pub fn run(_: &super::GlobalArgs, _: &DumpArgs) -> anyhow::Result<i32> {
    Ok(0)
}
