//! `fluxrig`: the fluxrig-edge command line. Parse, run, print an error once, exit.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use argh::FromArgs;
use fluxrig::{cli, commands, error};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (program, rest) = match args.split_first() {
        Some((p, rest)) => (p.rsplit('/').next().unwrap_or("fluxrig"), rest),
        None => ("fluxrig", &[][..]),
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let top = match cli::Top::from_args(&[program], &rest) {
        Ok(top) => top,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprintln!("{}", early.output);
                    ExitCode::from(error::EXIT_USAGE)
                }
            };
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
