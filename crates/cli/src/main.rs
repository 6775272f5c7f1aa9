//! `flotilla`: one binary. `flotilla agent …` runs a node; every other verb is a client of
//! the cluster API and depends only on flotilla-proto (and flotilla-types to read specs).

mod agent;
mod args;
mod client;
mod error;
mod output;
mod verbs;

use clap::Parser;

use crate::args::{Cli, Verb};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            e.exit();
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.verb {
            Verb::Agent(args) => agent::run(*args).await,
            verb => verbs::run(&cli.global, verb).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
