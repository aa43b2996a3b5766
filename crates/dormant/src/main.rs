//! `dormant`: parse the command line, then serve, run a client command, or run the demo workload.

use clap::Parser;
use dormant::cli::{run_client, Cli, Command};

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Before any thread exists: the config file becomes DORMANT_* variables.
    if let Err(e) = dormant::config::apply_config_file(&args) {
        eprintln!("dormant: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let cli = Cli::parse_from(args);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dormant: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        // What the demo image runs: the workload keeps its own exit codes (tests tell a crash
        // by them) and its own output.
        Command::DemoServe { args } => return runtime.block_on(dormant_demo::run(args)),
        command => command,
    };
    dormant::logging::init();
    let result = runtime.block_on(async {
        match command {
            Command::Serve(config) => {
                let shutdown = dormant::serve::shutdown_signal();
                let runtime = dormant::serve::docker_runtime(&config).await?;
                dormant::serve::run(*config, runtime, shutdown).await
            }
            other => run_client(other).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dormant: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
