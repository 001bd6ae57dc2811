//! The `cairn` binary: parses arguments, runs the command, maps errors to documented exit codes. Nothing else.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
