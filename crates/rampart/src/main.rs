#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = rampart::cli::Cli::parse();
    match rampart::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain names what failed and why (a config key, a file, a connection).
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
