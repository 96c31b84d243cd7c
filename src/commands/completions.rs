//! `lifewatch completions SHELL`: shell completion scripts (clap_complete).

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::Cli;

/// The `Examples:` section of `lifewatch completions --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch completions bash > ~/.local/share/bash-completion/completions/lifewatch
  lifewatch completions zsh > ~/.zfunc/_lifewatch
  lifewatch completions fish > ~/.config/fish/completions/lifewatch.fish";

/// `lifewatch completions` arguments.
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// `lifewatch completions`: the script on standard output.
pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    // Generated into memory first: clap_complete panics when its writer
    // fails, and standard output may be a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "lifewatch", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
