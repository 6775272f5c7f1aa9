//! `flotilla`: one binary. `flotilla agent …` runs a node; every other verb is a client of
//! the cluster API and depends only on flotilla-proto (and flotilla-types to read specs).

mod agent;
mod args;
mod client;
mod error;
mod output;
mod verbs;

use clap::Parser;

use crate::args::{AgentCli, Cli, Verb};
use crate::error::CliError;

/// What to run: a node, or a client verb.
enum Run {
    Agent(Box<args::AgentArgs>),
    Client(Cli),
}

/// `flotilla agent …` goes to its own parser (only agent flags); everything else to [`Cli`].
/// clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
fn parse() -> Run {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "agent") {
        let agent = AgentCli::try_parse_from(&argv[1..]).unwrap_or_else(|e| e.exit());
        return Run::Agent(Box::new(agent.args));
    }
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| e.exit());
    if let Verb::Agent(_) = cli.verb {
        // Client flags came before `agent`.
        let e = CliError::Usage(
            "--addr, -o, -q and --timeout are client flags; `flotilla agent` takes none of them (see \
             `flotilla agent --help`)"
                .into(),
        );
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
    Run::Client(cli)
}

fn main() {
    let run = parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        match run {
            Run::Agent(args) => agent::run(*args).await,
            Run::Client(cli) => {
                exit_quietly_on_a_closed_pipe();
                verbs::run(&cli.global, cli.verb).await
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
