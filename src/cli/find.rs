//! placeholder
#[derive(clap::Args, Debug)]
pub struct FindArgs {}
pub const EXAMPLES: &str = "";
pub fn run(_: &super::GlobalArgs, _: &FindArgs) -> anyhow::Result<i32> {
    Ok(0)
}
