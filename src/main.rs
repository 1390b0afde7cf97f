//! `fluxrig`: the fluxrig-edge command line. Parse, run, print an error once, exit.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use fluxrig::cli::{self, Parsed};
use fluxrig::commands;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (program, rest) = match args.split_first() {
        Some((p, rest)) => (p.rsplit('/').next().unwrap_or("fluxrig"), rest),
        None => ("fluxrig", &[][..]),
    };
    let top = match cli::parse(program, rest, std::env::var(cli::DATA_DIR_ENV).ok()) {
        Parsed::Run(top) => top,
        Parsed::Print { text, code: 0 } => {
            commands::say_line(format_args!("{text}"));
            return ExitCode::SUCCESS;
        }
        Parsed::Print { text, code } => {
            eprintln!("{text}");
            return ExitCode::from(code);
        }
    };
    match commands::run(top) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fluxrig: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
