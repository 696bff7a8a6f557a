//! The `switchboard` binary: one subcommand per component.

mod cli;
mod cmd;
mod config;

fn main() -> std::process::ExitCode {
    cli::main()
}
