//! Delete: the row goes first, then Docker's objects and the snapshot; a
//! delete cut short leaves an orphan the next start-up removes.

use super::harness::*;
use crate::lifecycle::LifecycleError;
use crate::proxy::waker::WakeErrorKind;

#[tokio::test(start_paused = true)]
async fn deleting_a_running_container_removes_everything() {
    let h = Harness::new().await;
    h.running("a").await;
    h.lifecycle().delete("a").await.unwrap();
    assert_eq!(h.assert_settled("a").await, Deleted);
    assert!(h.fake().container("a").is_none());
    assert!(h.fake().volume_names().is_empty());
    assert_eq!(h.lifecycle().capacity_usage().running, 0);
    let err = h.request("a").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::Deleted);
}

#[tokio::test(start_paused = true)]
async fn deleting_an_asleep_container_removes_it() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.lifecycle().delete("a").await.unwrap();
    assert!(h.record("a").await.is_none());
    assert!(h.fake().container("a").is_none());
}

#[tokio::test(start_paused = true)]
async fn deleting_an_archived_container_removes_its_snapshot() {
    let h = Harness::new().await;
    if h.archived("a", &[("notes.txt", "hi")]).await.is_none() {
        return;
    }
    assert_eq!(h.snapshot_files().len(), 1);
    h.lifecycle().delete("a").await.unwrap();
    assert!(h.snapshot_files().is_empty());
    assert!(h.record("a").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn deleting_an_unknown_container_is_not_found() {
    let h = Harness::new().await;
    let err = h.lifecycle().delete("nope").await.unwrap_err();
    assert!(matches!(err, LifecycleError::NotFound(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_delete_whose_removal_fails_leaves_an_orphan_that_start_up_removes() {
    let mut h = Harness::new().await;
    h.running("a").await;
    h.fake().fail_for("a", Call::Remove, 1, Fault::Unavailable);
    let err = h.lifecycle().delete("a").await.unwrap_err();
    assert!(err.to_string().contains("docker rm"), "{err}");
    assert_eq!(
        h.state("a"),
        Deleted,
        "the row is gone: it never comes back"
    );
    assert!(h.record("a").await.is_none());
    assert!(h.fake().container("a").is_some(), "left behind for now");
    h.restart().await.unwrap();
    assert!(h.fake().container("a").is_none(), "the orphan is removed");
    assert!(h.fake().volume_names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_name_can_be_used_again_after_a_delete() {
    let h = Harness::new().await;
    h.running("a").await;
    h.lifecycle().delete("a").await.unwrap();
    h.running("a").await;
    h.served("a").await;
}
