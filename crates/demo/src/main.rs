//! dormant-demo: the demo workload as its own small binary (`dormant demo-serve` runs the same).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    dormant_demo::run(std::env::args().skip(1).collect()).await
}
