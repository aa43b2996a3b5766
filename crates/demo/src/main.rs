//! dormant-demo: a tiny static HTTP workload used by dormant's tests and walk-through.

mod args;
mod connect;
mod files;
mod json;
mod routes;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// How long in-flight requests may run after SIGTERM/SIGINT before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() {
    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let args = match args::parse(std::env::args().skip(1), std::env::var("PORT").ok()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dormant-demo: {e}");
            std::process::exit(2);
        }
    };
    if args.help {
        print!("{}", args::USAGE);
        return;
    }
    if args.exit_immediately {
        eprintln!("dormant-demo: exiting at once with code 3 (--exit-immediately)");
        std::process::exit(3);
    }
    if let Some(path) = args.exit_if_exists.as_ref().filter(|p| p.exists()) {
        eprintln!(
            "dormant-demo: exiting at once with code 3 ({} exists)",
            path.display()
        );
        std::process::exit(3);
    }

    let mut stopping = watch_signals();
    if !args.startup_delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(args.startup_delay) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }

    let addr = SocketAddr::from(([0, 0, 0, 0], args.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dormant-demo: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("dormant-demo listening on {addr}");

    let app = routes::router(routes::AppState {
        hostname: hostname(),
        started_ms,
    });
    let shutdown = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("dormant-demo: server error: {e}");
        std::process::exit(1);
    }
}

/// Flips the returned flag on SIGTERM or SIGINT; exits the process `SHUTDOWN_GRACE` later
/// whatever is still running (long streams and WebSockets must not delay `docker stop`).
fn watch_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        std::process::exit(0);
    });
    rx
}

/// The container's hostname: /etc/hostname (Docker writes it), else $HOSTNAME, else "unknown".
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}
