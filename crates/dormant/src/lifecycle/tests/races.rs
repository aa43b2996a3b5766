//! Races between transitions of one container: each ends in a defined
//! state, and no request waits past the wake timeout.

use std::sync::Arc;
use std::time::Duration;

use super::harness::*;
use crate::lifecycle::LifecycleError;
use crate::proxy::waker::WakeErrorKind;

fn slow_start(h: &Harness, name: &str) {
    h.fake().script(
        name,
        Script {
            start_latency: Duration::from_secs(2),
            ..Script::default()
        },
    );
}

#[tokio::test(start_paused = true)]
async fn a_sleep_asked_during_a_wake_runs_after_it() {
    let h = Arc::new(Harness::new().await);
    h.asleep("a").await;
    slow_start(&h, "a");
    let request = h.spawn_request("a");
    h.advance(Duration::from_millis(500)).await;
    assert_eq!(h.state("a"), Starting);
    h.lifecycle().sleep("a").await.unwrap();
    request.await.unwrap().expect("the request was served");
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert!(!h.fake().running("a"));
}

#[tokio::test(start_paused = true)]
async fn a_delete_during_a_wake_wins_and_leaves_nothing() {
    let h = Arc::new(Harness::new().await);
    h.asleep("a").await;
    slow_start(&h, "a");
    let request = h.spawn_request("a");
    h.advance(Duration::from_millis(500)).await;
    h.lifecycle().delete("a").await.unwrap();
    match request.await.unwrap() {
        Ok(_) => {}
        Err(err) => assert_eq!(err.kind, WakeErrorKind::Deleted, "{err:?}"),
    }
    assert_eq!(h.assert_settled("a").await, Deleted);
    assert!(h.fake().container("a").is_none());
    assert!(h.fake().volume_names().is_empty());
    h.advance(Duration::from_secs(5)).await;
    assert!(h.fake().container("a").is_none(), "nothing starts it again");
}

#[tokio::test(start_paused = true)]
async fn an_api_wake_and_requests_at_once_share_one_start() {
    let h = Arc::new(Harness::new().await);
    h.asleep("a").await;
    slow_start(&h, "a");
    let starts = h.fake().calls(Call::Start);
    let requests: Vec<_> = (0..3).map(|_| h.spawn_request("a")).collect();
    h.lifecycle().wake("a").await.unwrap();
    for request in requests {
        request.await.unwrap().unwrap();
    }
    assert_eq!(h.fake().calls(Call::Start) - starts, 1);
}

#[tokio::test(start_paused = true)]
async fn requests_racing_the_idle_sweep_are_always_served() {
    let h = Harness::new().await;
    h.create_with(&["a"], |spec| spec.idle_timeout = Duration::ZERO)
        .await
        .unwrap();
    for _ in 0..20 {
        h.served("a").await;
        h.advance(Duration::from_millis(150)).await;
    }
    assert!(
        h.fake().calls(Call::Stop) > 0,
        "the sweep did put it to sleep"
    );
}

#[tokio::test(start_paused = true)]
async fn two_deletes_at_once_delete_once() {
    let h = Harness::new().await;
    h.running("a").await;
    let (first, second) = tokio::join!(h.lifecycle().delete("a"), h.lifecycle().delete("a"));
    let outcomes = [first, second];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(outcomes
        .iter()
        .any(|o| matches!(o, Err(LifecycleError::NotFound(_)))));
}

#[tokio::test(start_paused = true)]
async fn a_sleep_asked_during_create_waits_for_it() {
    let h = Arc::new(Harness::new().await);
    slow_start(&h, "a");
    let creating = {
        let h = h.clone();
        tokio::spawn(async move { h.create(&["a"]).await })
    };
    h.advance(Duration::from_millis(500)).await;
    let sleep = h.lifecycle().sleep("a").await;
    creating.await.unwrap().unwrap();
    if sleep.is_ok() {
        h.wait_state("a", Asleep).await;
    }
    let state = h.assert_settled("a").await;
    assert!(matches!(state, Running | Asleep), "{state}");
}

#[tokio::test(start_paused = true)]
async fn a_delete_during_a_restore_leaves_nothing() {
    let h = Arc::new(Harness::new().await);
    if h.archived("a", &[("data/x", "1")]).await.is_none() {
        return;
    }
    h.fake().delay(Call::Create, Duration::from_secs(1));
    let request = h.spawn_request("a");
    h.advance(Duration::from_millis(500)).await;
    h.lifecycle().delete("a").await.unwrap();
    let _ = request.await.unwrap();
    h.advance(Duration::from_secs(2)).await;
    assert_eq!(h.assert_settled("a").await, Deleted);
    assert!(h.fake().container("a").is_none());
    assert!(h.snapshot_files().is_empty());
}
