//! How often to ask whether the app inside a container answers yet.
//!
//! Each probe goes through the runtime (`Runtime::probe`: a real HTTP request
//! for Docker, a script for the fake). Probes start a few milliseconds apart
//! and back off, so a fast app is seen ready within milliseconds and a slow
//! one costs little. While it does not answer, the ports it listens on are
//! looked at now and then (`Runtime::listening_ports`): an app listening on
//! other ports but not its own fails at once, naming them, instead of at
//! `--wake-timeout`.

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
/// How often the ports the app listens on are looked at while it does not
/// answer: each look reads the container's socket tables.
const PORT_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How long the app may listen elsewhere but not on its port before the
/// wake fails: an app may open an admin port before its main one. With a
/// look every 250 ms, the wake fails within 2 s of the first look that saw it.
const WRONG_PORT_GRACE: Duration = Duration::from_millis(1_750);

/// What readiness is asked of.
pub struct Target<'a> {
    /// Where the container's port is reachable from this host.
    pub upstream: SocketAddr,
    pub path: &'a str,
    /// A configured readiness path must answer below 500.
    pub require_success: bool,
    /// The port the app should listen on inside the container.
    pub port: u16,
}

/// Probes until ready, `deadline`, `still_running()` says the container
/// stopped, or `listening()` shows the app listening on other ports than
/// `target.port` (and not on it) for `WRONG_PORT_GRACE`. Returns the last
/// thing seen when not ready.
pub async fn wait_ready<F, Fut, L, LFut>(
    runtime: &dyn Runtime,
    target: &Target<'_>,
    deadline: Instant,
    mut still_running: F,
    mut listening: L,
) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
    L: FnMut() -> LFut,
    LFut: std::future::Future<Output = Option<Vec<u16>>>,
{
    let started = Instant::now();
    let mut interval = FIRST_INTERVAL;
    let mut next_liveness_check = started + Duration::from_millis(250);
    let mut next_port_check = started + PORT_CHECK_INTERVAL;
    let mut elsewhere_since: Option<Instant> = None;
    loop {
        let probed = runtime
            .probe(target.upstream, target.path, target.require_success)
            .await;
        let last = match probed {
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
        if now >= next_port_check {
            next_port_check = now + PORT_CHECK_INTERVAL;
            match listening().await {
                Some(ports) if !ports.is_empty() && !ports.contains(&target.port) => {
                    let since = *elsewhere_since.get_or_insert(now);
                    if now - since >= WRONG_PORT_GRACE {
                        return Err(wrong_port(&ports, target.port));
                    }
                }
                _ => elsewhere_since = None,
            }
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 3 / 2).min(MAX_INTERVAL);
    }
}

/// Why a wake fails when the app listens, but not where it was told to.
fn wrong_port(ports: &[u16], configured: u16) -> String {
    let list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let fix = match ports {
        [only] => format!("set `port` to {only}"),
        _ => "set `port` to one of them".to_owned(),
    };
    format!("the app listens on {list} but not on the configured port {configured}; {fix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    /// No container of the fake answers there: every probe says "not yet".
    fn nowhere() -> Target<'static> {
        Target {
            upstream: ([127, 0, 0, 1], 1).into(),
            path: "/",
            require_success: false,
            port: 8080,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_stops_when_the_container_dies_or_time_runs_out() {
        let fake = FakeRuntime::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let died = || async { Err("exited with code 3".to_string()) };
        let result = wait_ready(&fake, &nowhere(), deadline, died, || async { None }).await;
        assert_eq!(result, Err("exited with code 3".to_string()));

        let started = Instant::now();
        let deadline = started + Duration::from_secs(2);
        let alive = || async { Ok(()) };
        let result = wait_ready(&fake, &nowhere(), deadline, alive, || async { None }).await;
        let err = result.unwrap_err();
        assert!(err.starts_with("not ready after"), "{err}");
        assert!(started.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_app_on_other_ports_fails_within_two_seconds_naming_them() {
        let fake = FakeRuntime::new();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        let alive = || async { Ok(()) };
        let elsewhere = || async { Some(vec![3000, 9090]) };
        let err = wait_ready(&fake, &nowhere(), deadline, alive, elsewhere)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "the app listens on 3000, 9090 but not on the configured port 8080; \
             set `port` to one of them"
        );
        // First seen at the first look (250 ms), failed within 2 s of it.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1_900), "{took:?}");
        assert!(took <= Duration::from_millis(2_250), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn listening_on_its_port_or_on_none_or_unknown_waits_for_the_deadline() {
        let fake = FakeRuntime::new();
        let alive = || async { Ok(()) };
        for ports in [Some(vec![8080, 9090]), Some(vec![]), None] {
            let started = Instant::now();
            let deadline = started + Duration::from_secs(10);
            let seen = ports.clone();
            let err = wait_ready(&fake, &nowhere(), deadline, alive, || {
                let seen = seen.clone();
                async move { seen }
            })
            .await
            .unwrap_err();
            assert!(err.starts_with("not ready after"), "{ports:?}: {err}");
            assert!(started.elapsed() >= Duration::from_secs(10), "{ports:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_admin_port_opened_first_is_given_time() {
        let fake = FakeRuntime::new();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        let alive = || async { Ok(()) };
        // 9090 alone for 1.5 s, then 8080 too (the probe still fails here:
        // nothing answers at `nowhere`), so the wake waits for its deadline.
        let listening = || async move {
            if started.elapsed() < Duration::from_millis(1_500) {
                Some(vec![9090])
            } else {
                Some(vec![8080, 9090])
            }
        };
        let err = wait_ready(&fake, &nowhere(), deadline, alive, listening)
            .await
            .unwrap_err();
        assert!(err.starts_with("not ready after"), "{err}");
    }

    #[test]
    fn one_port_is_named_as_the_fix() {
        assert_eq!(
            wrong_port(&[3000], 8080),
            "the app listens on 3000 but not on the configured port 8080; set `port` to 3000"
        );
    }
}
