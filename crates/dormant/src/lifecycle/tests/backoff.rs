//! Backoff after failed wakes: a container that keeps failing is not
//! restarted in a tight loop, and its requests get 503 with `Retry-After`.

use std::time::Duration;

use super::harness::*;
use crate::proxy::waker::WakeErrorKind;

async fn failed_once(h: &Harness) {
    h.asleep("a").await;
    h.fake().fail_for("a", Call::Start, 1, Fault::Other);
    let err = h.request("a").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::Failed);
}

#[tokio::test(start_paused = true)]
async fn a_request_during_the_backoff_is_refused_without_a_start() {
    let h = Harness::new().await;
    failed_once(&h).await;
    let starts = h.fake().calls(Call::Start);
    let err = h.request("a").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::BackingOff);
    let retry_after = err.retry_after.expect("Retry-After");
    assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
    assert_eq!(
        h.fake().calls(Call::Start),
        starts,
        "no start while backing off"
    );
    assert!(
        err.reason.contains("docker start"),
        "the earlier reason: {}",
        err.reason
    );
}

#[tokio::test(start_paused = true)]
async fn after_the_backoff_the_next_request_tries_again() {
    let h = Harness::new().await;
    failed_once(&h).await;
    h.advance(Duration::from_millis(1100)).await;
    h.served("a").await;
    assert_eq!(h.assert_settled("a").await, Running);
}

#[tokio::test(start_paused = true)]
async fn the_backoff_doubles_with_each_failure() {
    let h = Harness::new().await;
    failed_once(&h).await;
    h.fake().fail_for("a", Call::Start, 1, Fault::Other);
    h.advance(Duration::from_millis(1100)).await;
    let err = h.request("a").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::Failed);
    let retry_after = err.retry_after.unwrap();
    assert!(
        retry_after > Duration::from_secs(1) && retry_after <= Duration::from_secs(2),
        "{retry_after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_successful_wake_resets_the_backoff() {
    let h = Harness::new().await;
    failed_once(&h).await;
    h.advance(Duration::from_millis(1100)).await;
    h.served("a").await;
    h.lifecycle().sleep("a").await.unwrap();
    h.fake().fail_for("a", Call::Start, 1, Fault::Other);
    let err = h.request("a").await.unwrap_err();
    assert!(err.retry_after.unwrap() <= Duration::from_secs(1));
}
