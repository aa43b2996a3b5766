//! How often to ask whether the app inside a container answers yet.
//!
//! Each probe goes through the runtime (`Runtime::probe`: a real HTTP request
//! for Docker, a script for the fake). Probes start a few milliseconds apart
//! and back off, so a fast app is seen ready within milliseconds and a slow
//! one costs little.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::runtime::{ProbeOutcome, Runtime};

/// First pause between probes; grows by half each time up to
/// `MAX_INTERVAL`. A probe is one local connection, so probing often is
/// cheap, and the interval bounds how late a ready app is noticed: the cap
/// keeps that under 50 ms even for an app that takes seconds to start.
const FIRST_INTERVAL: Duration = Duration::from_millis(2);
const MAX_INTERVAL: Duration = Duration::from_millis(50);

/// Probes until ready, `deadline`, or `still_running()` says the container
/// stopped. Returns the last thing seen when not ready.
pub async fn wait_ready<F, Fut>(
    runtime: &dyn Runtime,
    upstream: SocketAddr,
    path: &str,
    require_success: bool,
    deadline: Instant,
    mut still_running: F,
) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut interval = FIRST_INTERVAL;
    let mut next_liveness_check = started + Duration::from_millis(250);
    loop {
        let last = match runtime.probe(upstream, path, require_success).await {
            ProbeOutcome::Ready => return Ok(started.elapsed()),
            ProbeOutcome::NotYet(why) => why,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "not ready after {:?}; last probe: {last}",
                started.elapsed()
            ));
        }
        if now >= next_liveness_check {
            still_running().await?;
            next_liveness_check = now + Duration::from_millis(500);
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 3 / 2).min(MAX_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    #[tokio::test(start_paused = true)]
    async fn waiting_stops_when_the_container_dies_or_time_runs_out() {
        let fake = FakeRuntime::new();
        // No container of the fake answers there: every probe says "not yet".
        let nowhere: SocketAddr = ([127, 0, 0, 1], 1).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        let result = wait_ready(&fake, nowhere, "/", false, deadline, || async {
            Err("exited with code 3".to_string())
        })
        .await;
        assert_eq!(result, Err("exited with code 3".to_string()));

        let started = Instant::now();
        let deadline = started + Duration::from_secs(2);
        let result = wait_ready(&fake, nowhere, "/", false, deadline, || async { Ok(()) }).await;
        let err = result.unwrap_err();
        assert!(err.starts_with("not ready after"), "{err}");
        assert!(started.elapsed() >= Duration::from_secs(2));
    }
}
