//! dormant-demo: a tiny HTTP workload used by dormant's tests and walk-through.
//!
//! A library so that `dormant` itself can run it (`dormant demo-serve`): the demo image is then
//! the `dormant` executable and the shared objects it loads, with no separate build. The
//! `dormant-demo` binary is a thin wrapper over [`run`].

mod args;
mod connect;
mod files;
mod json;
mod routes;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// How long in-flight requests may run after SIGTERM/SIGINT before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Runs the demo with its flags (without the program name) until SIGTERM or SIGINT; returns the
/// process's exit code: 0 after a clean stop, 1 when it cannot serve, 2 for bad flags, 3 when
/// told to crash. Call it inside a tokio runtime.
pub async fn run(args: Vec<String>) -> ExitCode {
    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let args = match args::parse(args, std::env::var("PORT").ok()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dormant-demo: {e}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        print!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    if args.exit_immediately {
        eprintln!("dormant-demo: exiting at once with code 3 (--exit-immediately)");
        return ExitCode::from(3);
    }
    if let Some(path) = args.exit_if_exists.as_ref().filter(|p| p.exists()) {
        eprintln!(
            "dormant-demo: exiting at once with code 3 ({} exists)",
            path.display()
        );
        return ExitCode::from(3);
    }

    let mut stopping = match watch_signals() {
        Ok(stopping) => stopping,
        Err(e) => {
            eprintln!("dormant-demo: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !args.startup_delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(args.startup_delay) => {}
            _ = stopping.wait_for(|s| *s) => return ExitCode::SUCCESS,
        }
    }

    let addr = SocketAddr::from(([0, 0, 0, 0], args.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dormant-demo: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
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
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Flips the returned flag on SIGTERM or SIGINT; exits the process `SHUTDOWN_GRACE` later
/// whatever is still running (long streams and WebSockets must not delay `docker stop`).
fn watch_signals() -> std::io::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        std::process::exit(0);
    });
    Ok(rx)
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
