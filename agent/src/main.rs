use std::process::ExitCode;

use catalyst_bootstrap::{Cli, Exit, WipingAllocator};
use clap::Parser;

#[global_allocator]
static ALLOCATOR: WipingAllocator = WipingAllocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    catalyst_bootstrap::init_logging(cli.verbose);
    match catalyst_bootstrap::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let kind = Exit::of(&err);
            tracing::error!(exit_code = kind.code(), "{err:#}");
            ExitCode::from(kind.code())
        }
    }
}
