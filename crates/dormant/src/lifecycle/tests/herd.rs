//! The herd: however many requests arrive for a sleeping container, Docker
//! sees one start, and every request gets the same answer.

use std::sync::Arc;
use std::time::Duration;

use super::harness::*;
use crate::proxy::waker::WakeErrorKind;

const HERD: usize = 1000;

#[tokio::test(start_paused = true)]
async fn a_thousand_waiters_cause_exactly_one_start() {
    let h = Arc::new(Harness::new().await);
    h.asleep("a").await;
    h.fake().script(
        "a",
        Script {
            start_latency: Duration::from_millis(500),
            ready: Readiness::After(Duration::from_millis(500)),
            ..Script::default()
        },
    );
    let starts = h.fake().calls(Call::Start);
    let waiters: Vec<_> = (0..HERD).map(|_| h.spawn_request("a")).collect();
    let mut upstreams = std::collections::HashSet::new();
    for waiter in waiters {
        upstreams.insert(waiter.await.unwrap().expect("served"));
    }
    assert_eq!(h.fake().calls(Call::Start) - starts, 1);
    assert_eq!(upstreams.len(), 1, "everyone is sent to the same upstream");
    assert_eq!(h.record("a").await.unwrap().wakes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_waiters_on_an_archived_container_cause_one_restore() {
    let h = Arc::new(Harness::new().await);
    if h.archived("a", &[("data/x", "1")]).await.is_none() {
        return;
    }
    let creates = h.fake().calls(Call::Create);
    let waiters: Vec<_> = (0..HERD).map(|_| h.spawn_request("a")).collect();
    for waiter in waiters {
        waiter.await.unwrap().expect("served");
    }
    assert_eq!(h.fake().calls(Call::Create) - creates, 1);
    assert_eq!(h.read_file("a", "data/x").as_deref(), Some("1"));
}

#[tokio::test(start_paused = true)]
async fn a_thousand_waiters_on_a_failing_start_all_get_the_failure_from_one_start() {
    let h = Arc::new(Harness::new().await);
    h.asleep("a").await;
    h.fake().delay(Call::Start, Duration::from_millis(200));
    h.fake().fail_for("a", Call::Start, 1, Fault::Other);
    let starts = h.fake().calls(Call::Start);
    let waiters: Vec<_> = (0..HERD).map(|_| h.spawn_request("a")).collect();
    for waiter in waiters {
        let err = waiter.await.unwrap().unwrap_err();
        assert!(
            matches!(err.kind, WakeErrorKind::Failed | WakeErrorKind::BackingOff),
            "{err:?}"
        );
    }
    assert_eq!(h.fake().calls(Call::Start) - starts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_wake_never_holds_up_another_container() {
    let h = Arc::new(Harness::new().await);
    h.asleep("slow").await;
    h.asleep("quick").await;
    h.fake().script(
        "slow",
        Script {
            start_latency: Duration::from_secs(8),
            ..Script::default()
        },
    );
    let slow = h.spawn_request("slow");
    h.advance(Duration::from_millis(10)).await;
    let started = tokio::time::Instant::now();
    h.served("quick").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    slow.await.unwrap().expect("served");
}
