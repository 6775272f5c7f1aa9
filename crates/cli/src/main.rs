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
            verb => {
                exit_quietly_on_a_closed_pipe();
                verbs::run(&cli.global, verb).await
            }
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

/// A client whose reader went away (`flotilla get tasks -w | head -1`) stops quietly with
/// exit 0, as Unix tools do. Rust ignores SIGPIPE, so the write that finds the pipe closed
/// fails with EPIPE inside `print!` (or clap's completion writer), which panics: this hook
/// turns exactly that panic into a quiet exit and leaves every other panic as it was.
fn exit_quietly_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
