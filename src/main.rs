#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    stellar_peer_injector::cmd::main_with(stellar_peer_injector::cli::Cli::parse())
}
