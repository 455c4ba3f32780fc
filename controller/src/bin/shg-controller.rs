//! `shg-controller`: parses the command line and runs the commands of `shg_controller::cli`
//! (the daemon itself is `shg_controller::runtime`).

use shg_controller::cli::{parse_args, run, USAGE};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shg-controller: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let out = run(&cmd, &|p| std::fs::read_to_string(p));
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    ExitCode::from(u8::try_from(out.code).unwrap_or(1))
}
