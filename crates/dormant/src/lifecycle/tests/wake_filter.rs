//! The proxy's wake filter against the real lifecycle: a request counts
//! against the wake limits only when it would start a wake, so the many
//! requests of one page while its container wakes cost one token, and a
//! container backing off after a failed wake costs none.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::Request;

use super::harness::*;
use crate::metrics::Metrics;
use crate::proxy::forwarded::TrustedProxies;
use crate::proxy::rate_limit::Rate;
use crate::proxy::wake_filter::{WakeFilter, WakeFilterConfig};
use crate::proxy::ProxyError;

/// One wake per client a minute, no burst beyond it.
fn strict_filter() -> WakeFilter {
    let config = WakeFilterConfig {
        no_wake_agents: "default".parse().unwrap(),
        activity_ignores_agents: true,
        wake_rate: Rate::per_minute(1),
        wake_burst: 1,
        unknown_host_rate: Rate::OFF,
        unknown_host_burst: 1,
        max_wake_rate: Rate::OFF,
        trusted_proxies: TrustedProxies::default(),
    };
    WakeFilter::new(config, &Metrics::new())
}

fn get(path: &str) -> Parts {
    Request::get(path).body(()).unwrap().into_parts().0
}

/// What the proxy asks before it wakes `name` for a request from one client.
fn may_wake(h: &Harness, filter: &WakeFilter, name: &str) -> Result<(), ProxyError> {
    let route = h.lifecycle().table().get(name).unwrap();
    let parts = get("/");
    let visitor = filter.visitor(&parts.method, "/", &parts.headers);
    let answer = filter.before_wake(
        &route,
        &route.status(),
        visitor,
        &parts,
        "192.0.2.1:5000".parse().unwrap(),
        false,
    )?;
    assert!(
        answer.is_none(),
        "a person's request was answered by dormant"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn requests_that_join_a_wake_under_way_are_not_charged() {
    let h = Arc::new(Harness::new().await);
    h.asleep("a").await;
    h.asleep("b").await;
    h.fake().script(
        "a",
        Script {
            start_latency: Duration::from_millis(500),
            ..Script::default()
        },
    );
    let filter = strict_filter();
    may_wake(&h, &filter, "a").expect("the first wake is allowed");
    let waking = h.spawn_request("a");
    tokio::task::yield_now().await;
    for _ in 0..50 {
        may_wake(&h, &filter, "a").expect("joining the wake under way is free");
    }
    waking.await.unwrap().expect("served");
    // Running now: never limited.
    may_wake(&h, &filter, "a").expect("a running container is never limited");
    // Starting another wake is over the rate.
    let refused = may_wake(&h, &filter, "b").unwrap_err();
    assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn a_container_backing_off_costs_no_token() {
    let h = Arc::new(Harness::new().await);
    h.asleep("a").await;
    h.asleep("b").await;
    h.fake().fail_for("a", Call::Start, 1, Fault::Other);
    let filter = strict_filter();
    may_wake(&h, &filter, "a").expect("the first wake is allowed");
    h.request("a").await.expect_err("the start fails");
    assert_eq!(h.state("a"), Failed);
    // The backoff refuses these at once; they start nothing.
    for _ in 0..5 {
        may_wake(&h, &filter, "a").expect("a request refused by the backoff is free");
    }
    assert!(
        may_wake(&h, &filter, "b").is_err(),
        "the one token was spent"
    );
}

#[tokio::test(start_paused = true)]
async fn a_bot_is_answered_only_when_it_would_start_a_wake() {
    let h = Arc::new(Harness::new().await);
    h.asleep("a").await;
    let filter = strict_filter();
    let route = h.lifecycle().table().get("a").unwrap();
    let mut parts = get("/");
    parts
        .headers
        .insert(http::header::USER_AGENT, "UptimeRobot/2.0".parse().unwrap());
    let peer = "192.0.2.1:5000".parse().unwrap();
    let visitor = filter.visitor(&parts.method, "/", &parts.headers);
    assert!(!visitor.counts_as_activity());
    let answer = filter
        .before_wake(&route, &route.status(), visitor, &parts, peer, false)
        .unwrap()
        .expect("dormant answers the monitor");
    assert_eq!(answer.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.state("a"), Asleep);
    h.served("a").await;
    let running = filter
        .before_wake(&route, &route.status(), visitor, &parts, peer, false)
        .unwrap();
    assert!(running.is_none(), "a running container serves the monitor");
}
