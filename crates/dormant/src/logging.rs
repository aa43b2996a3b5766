//! Log set-up: human-readable lines on stderr, filtered by `DORMANT_LOG`.

use tracing_subscriber::EnvFilter;

/// Logs at `info` unless `DORMANT_LOG` (or `RUST_LOG`) says otherwise, e.g.
/// `DORMANT_LOG=dormant=debug`.
pub fn init() {
    let filter = std::env::var("DORMANT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
