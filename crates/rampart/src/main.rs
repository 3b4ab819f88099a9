#![forbid(unsafe_code)]

use clap::Parser;

// Every request allocates in the WAF engine and the HTTP stack; jemalloc costs fewer
// instructions per allocation than glibc's malloc (bench/README.md, `profile.sh waf`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
