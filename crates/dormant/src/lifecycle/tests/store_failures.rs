//! The store failing at each step: every transition still ends in a defined
//! state, no route is stranded, and a request gets an answer.

use std::time::Duration;

use super::harness::*;
use crate::lifecycle::LifecycleError;
use crate::proxy::waker::WakeErrorKind;

async fn faulty_store() -> Harness {
    Harness::with(Options {
        store_faults: true,
        ..Options::default()
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_create_the_store_refuses_leaves_nothing_in_docker() {
    let h = faulty_store().await;
    h.fail_store(StoreFault::Insert);
    let err = h.create(&["a"]).await.unwrap_err();
    assert!(matches!(err, LifecycleError::Store(_)), "{err}");
    assert_eq!(h.fake().calls(Call::Create), 0);
    h.heal_store();
    h.running("a").await;
}

#[tokio::test(start_paused = true)]
async fn a_wake_whose_state_cannot_be_written_fails_and_answers() {
    let h = faulty_store().await;
    h.asleep("a").await;
    h.fail_store(StoreFault::SetState(Starting));
    let err = h.request("a").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::Failed);
    assert!(err.reason.contains("store"), "{}", err.reason);
    assert_eq!(h.state("a"), Failed);
    h.heal_store();
    h.advance(Duration::from_secs(2)).await;
    h.served("a").await;
    assert_eq!(h.assert_settled("a").await, Running);
}

#[tokio::test(start_paused = true)]
async fn a_wake_whose_running_state_cannot_be_written_still_serves() {
    let mut h = faulty_store().await;
    h.asleep("a").await;
    h.fail_store(StoreFault::SetState(Running));
    h.served("a").await;
    assert_eq!(h.state("a"), Running);
    h.heal_store();
    // The store still says `starting`: the next start-up finishes the wake.
    h.restart().await.unwrap();
    h.wait_state("a", Running).await;
    assert_eq!(h.assert_settled("a").await, Running);
}

#[tokio::test(start_paused = true)]
async fn a_wake_whose_count_cannot_be_written_still_serves() {
    let h = faulty_store().await;
    h.asleep("a").await;
    h.fail_store(StoreFault::RecordWake);
    h.served("a").await;
    assert_eq!(h.assert_settled("a").await, Running);
}

#[tokio::test(start_paused = true)]
async fn a_sleep_whose_asleep_state_cannot_be_written_leaves_a_defined_state() {
    let h = faulty_store().await;
    h.running("a").await;
    h.fail_store(StoreFault::SetState(Asleep));
    let _ = h.lifecycle().sleep("a").await;
    let state = h.state("a");
    assert!(matches!(state, Running | Asleep), "left {state}");
    h.heal_store();
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn with_the_store_gone_a_running_container_keeps_serving_and_sleep_changes_nothing() {
    let h = faulty_store().await;
    h.running("a").await;
    h.fail_store(StoreFault::Everything);
    h.served("a").await;
    let err = h.lifecycle().sleep("a").await.unwrap_err();
    assert!(matches!(err, LifecycleError::Store(_)), "{err}");
    assert_eq!(h.state("a"), Running);
    assert!(h.fake().running("a"));
    h.served("a").await;
    h.heal_store();
    h.lifecycle().sleep("a").await.unwrap();
    assert_eq!(h.assert_settled("a").await, Asleep);
}

#[tokio::test(start_paused = true)]
async fn a_delete_the_store_refuses_keeps_the_container_whole() {
    let h = faulty_store().await;
    h.running("a").await;
    h.fail_store(StoreFault::Delete);
    let err = h.lifecycle().delete("a").await.unwrap_err();
    assert!(matches!(err, LifecycleError::Store(_)), "{err}");
    assert_eq!(h.assert_settled("a").await, Running);
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn start_up_with_the_store_gone_fails_loudly() {
    let mut h = faulty_store().await;
    h.running("a").await;
    h.fail_store(StoreFault::Everything);
    let err = h.restart().await.unwrap_err();
    assert!(matches!(err, LifecycleError::Store(_)), "{err}");
    h.heal_store();
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Running);
}

#[tokio::test(start_paused = true)]
async fn a_recreated_container_whose_id_cannot_be_recorded_wakes_later() {
    let h = faulty_store().await;
    h.asleep("a").await;
    h.fake().remove_outside("a");
    h.fail_store(StoreFault::SetDockerId);
    let err = h.request("a").await.unwrap_err();
    assert!(err.reason.contains("store"), "{}", err.reason);
    h.heal_store();
    h.advance(Duration::from_secs(2)).await;
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn an_archive_whose_snapshot_cannot_be_recorded_stays_asleep() {
    let h = faulty_store().await;
    if !h.can_archive() {
        return;
    }
    h.asleep("a").await;
    h.fail_store(StoreFault::SetSnapshot { forget: false });
    let err = h.lifecycle().archive("a").await.unwrap_err();
    assert!(matches!(err, LifecycleError::Store(_)), "{err}");
    h.heal_store();
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert!(h.fake().container("a").is_some(), "nothing is removed");
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn a_restore_whose_snapshot_cannot_be_forgotten_still_serves() {
    let h = faulty_store().await;
    if h.archived("a", &[("data/x", "1")]).await.is_none() {
        return;
    }
    h.fail_store(StoreFault::SetSnapshot { forget: true });
    h.served("a").await;
    assert_eq!(h.read_file("a", "data/x").as_deref(), Some("1"));
    // The flush ends, then forgetting the snapshot fails.
    h.eventually("the restore's flush ends", || {
        let route = h.lifecycle().table().get("a").expect("a route");
        route.flush_in_flight().is_none()
    })
    .await;
    h.advance(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        h.snapshot_files().len(),
        1,
        "kept while the store still names it"
    );
}
