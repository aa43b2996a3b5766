//! Start-up: reconcile brings Docker and the store together, one mismatch
//! at a time, and every container ends with a route a request can use.

use std::time::Duration;

use super::harness::*;
use crate::domain::SnapshotRecord;
use crate::proxy::waker::WakeErrorKind;

/// Records a snapshot file for `name` as an archive would have, without
/// needing root: the bytes are never read by the cases that use it.
async fn recorded_snapshot(h: &Harness, name: &str) -> String {
    let file = format!("{name}-1.snap.zst");
    std::fs::write(h.snapshot_dir().join(&file), b"snapshot").unwrap();
    let snapshot = SnapshotRecord {
        file: file.clone(),
        bytes: 8,
        files: 1,
        sha256: "00".into(),
        created_at: 1,
    };
    h.store_snapshot(name, snapshot).await;
    file
}

#[tokio::test(start_paused = true)]
async fn running_containers_keep_serving_across_a_restart_without_a_start() {
    let mut h = Harness::new().await;
    h.running("a").await;
    let upstream = h.served("a").await;
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Running);
    assert_eq!(h.served("a").await, upstream);
    assert_eq!(h.fake().calls(Call::Start), 1);
}

#[tokio::test(start_paused = true)]
async fn a_container_stopped_while_dormant_was_down_is_asleep() {
    let mut h = Harness::new().await;
    h.running("a").await;
    h.fake().stop_quietly("a");
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert!(h.reason("a").unwrap().contains("stopped outside dormant"));
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn a_container_removed_while_dormant_was_down_is_asleep_and_made_again() {
    let mut h = Harness::new().await;
    h.running("a").await;
    h.fake().remove_outside("a");
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Asleep);
    h.served("a").await;
    assert_eq!(h.fake().calls_for("a", Call::Create), 2);
}

#[tokio::test(start_paused = true)]
async fn a_container_started_outside_dormant_is_served() {
    let mut h = Harness::new().await;
    h.asleep("a").await;
    h.fake().start_outside("a");
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Running);
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn orphans_of_this_node_are_removed_and_other_nodes_are_left_alone() {
    let mut h = Harness::new().await;
    h.running("a").await;
    h.fake()
        .add_orphan("dormant-ghost", Harness::labels("ghost"));
    let mut foreign = Harness::labels("other");
    foreign.insert(crate::domain::LABEL_NODE.into(), "another-node".into());
    h.fake().add_orphan("dormant-other", foreign);
    h.restart().await.unwrap();
    assert!(h.fake().container("ghost").is_none());
    assert!(!h
        .fake()
        .volume_names()
        .contains(&"dormant-ghost-v0".to_owned()));
    assert!(h.fake().container("other").is_some());
    assert!(h
        .fake()
        .volume_names()
        .contains(&"dormant-other-v0".to_owned()));
    assert_eq!(h.state("a"), Running);
}

#[tokio::test(start_paused = true)]
async fn a_creation_cut_short_is_undone() {
    let mut h = Harness::new().await;
    h.running("half").await;
    h.store_state("half", Creating).await;
    h.restart().await.unwrap();
    assert!(h.record("half").await.is_none());
    assert_eq!(h.state("half"), Deleted);
    assert!(h.fake().container("half").is_none());
    assert!(h.fake().volume_names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_archive_cut_short_after_its_snapshot_was_recorded_is_finished() {
    let mut h = Harness::new().await;
    h.asleep("a").await;
    let file = recorded_snapshot(&h, "a").await;
    h.store_state("a", Archiving).await;
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Archived);
    assert!(h.fake().container("a").is_none());
    assert_eq!(h.snapshot_files(), [file]);
}

#[tokio::test(start_paused = true)]
async fn an_archive_cut_short_before_its_snapshot_was_recorded_is_undone() {
    let mut h = Harness::new().await;
    h.asleep("a").await;
    // A partly written file of the interrupted archive.
    std::fs::write(h.snapshot_dir().join("a-9.snap.zst.tmp-0123"), b"part").unwrap();
    h.store_state("a", Archiving).await;
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert!(h.fake().container("a").is_some());
    assert!(h.snapshot_files().is_empty(), "{:?}", h.snapshot_files());
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn a_restore_cut_short_is_archived_again_from_its_snapshot() {
    let mut h = Harness::new().await;
    h.asleep("a").await;
    let file = recorded_snapshot(&h, "a").await;
    h.store_state("a", Restoring).await;
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Archived);
    assert!(
        h.fake().container("a").is_none(),
        "the half-filled container goes"
    );
    assert_eq!(h.snapshot_files(), [file]);
}

#[tokio::test(start_paused = true)]
async fn a_wake_cut_short_is_finished() {
    let mut h = Harness::new().await;
    h.asleep("a").await;
    h.store_state("a", Starting).await;
    h.restart().await.unwrap();
    h.wait_state("a", Running).await;
    assert_eq!(h.assert_settled("a").await, Running);
    assert!(h.fake().running("a"));
}

/// Whether `name`'s restore flush has ended (or none was started).
fn no_flush_in_flight(h: &Harness, name: &str) -> bool {
    let route = h.lifecycle().table().get(name).expect("a route");
    route.flush_in_flight().is_none()
}

#[tokio::test(start_paused = true)]
async fn a_restore_whose_flush_was_cut_short_is_flushed_then_its_snapshot_dropped() {
    let mut h = Harness::new().await;
    h.running("a").await;
    h.write_file("a", "home/u/notes.txt", "restored");
    h.write_file("a", "data/db", "rows");
    // A snapshot beside a Docker id: what a crash between a restore and
    // the end of its flush leaves.
    recorded_snapshot(&h, "a").await;
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Running);
    h.eventually("the snapshot is dropped after the flush", || {
        h.snapshot_files().is_empty()
    })
    .await;
    assert!(h.record("a").await.unwrap().snapshot.is_none());
    assert_eq!(
        h.read_file("a", "home/u/notes.txt").as_deref(),
        Some("restored")
    );
    assert_eq!(h.read_file("a", "data/db").as_deref(), Some("rows"));
}

#[tokio::test(start_paused = true)]
async fn a_flush_that_fails_at_start_up_keeps_the_snapshot() {
    let mut h = Harness::new().await;
    h.running("a").await;
    // Deeper than the flush walks: it fails, and the snapshot must stay.
    let upper = h.fake().container("a").unwrap().upper_dir;
    let mut at = std::fs::File::open(&upper).unwrap();
    for _ in 0..520 {
        use rustix::fs::{mkdirat, openat, Mode, OFlags};
        mkdirat(&at, "d", Mode::from_raw_mode(0o755)).unwrap();
        let next = openat(&at, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        at = std::fs::File::from(next);
    }
    let file = recorded_snapshot(&h, "a").await;
    h.restart().await.unwrap();
    h.eventually("the flush ends", || no_flush_in_flight(&h, "a"))
        .await;
    h.advance(Duration::from_secs(1)).await;
    assert_eq!(h.snapshot_files(), std::slice::from_ref(&file));
    let kept = h.record("a").await.unwrap().snapshot.map(|s| s.file);
    assert_eq!(kept, Some(file));
    assert_eq!(h.assert_settled("a").await, Running);
}

#[tokio::test(start_paused = true)]
async fn a_restored_container_gone_from_docker_keeps_its_snapshot() {
    let mut h = Harness::new().await;
    h.running("a").await;
    let file = recorded_snapshot(&h, "a").await;
    h.fake().remove_outside("a");
    h.restart().await.unwrap();
    h.advance(Duration::from_secs(1)).await;
    assert_eq!(h.snapshot_files(), [file], "the only copy left");
    assert!(h.record("a").await.unwrap().snapshot.is_some());
}

#[tokio::test(start_paused = true)]
async fn an_archived_container_whose_snapshot_is_missing_fails_with_a_reason() {
    let mut h = Harness::new().await;
    h.asleep("a").await;
    let file = recorded_snapshot(&h, "a").await;
    h.store_state("a", Archiving).await;
    h.restart().await.unwrap();
    std::fs::remove_file(h.snapshot_dir().join(file)).unwrap();
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Failed);
    assert!(h.reason("a").unwrap().contains("missing"));
    let err = h.request("a").await.unwrap_err();
    assert!(err.reason.contains("missing"), "{}", err.reason);
}

#[tokio::test(start_paused = true)]
async fn a_failed_container_keeps_its_reason_and_the_next_request_retries_at_once() {
    let mut h = Harness::new().await;
    h.asleep("a").await;
    h.fake().fail_for("a", Call::Start, 1, Fault::Other);
    let _ = h.request("a").await.unwrap_err();
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Failed);
    assert!(h.reason("a").unwrap().contains("docker start"));
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn docker_failures_at_start_up_leave_containers_asleep_not_lost() {
    let mut h = Harness::new().await;
    h.running("a").await;
    h.fake().fail_for("a", Call::Inspect, 1, Fault::Unavailable);
    h.fake().fail(Call::ListLabelled, 1, Fault::Unavailable);
    h.fake()
        .fail(Call::ListLabelledVolumes, 1, Fault::Unavailable);
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("a").await, Asleep);
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn a_conflict_while_settling_does_not_abort_start_up() {
    let mut h = Harness::new().await;
    h.running("b").await;
    h.asleep("a").await;
    recorded_snapshot(&h, "a").await;
    h.store_state("a", Archiving).await;
    h.fake().fail_for("a", Call::Remove, 1, Fault::Conflict);
    h.restart().await.expect("start-up goes on");
    let state = h.assert_settled("a").await;
    assert!(matches!(state, Asleep | Archived | Failed), "{state}");
    assert_eq!(h.state("b"), Running, "other containers get their routes");
    h.served("b").await;
}

#[tokio::test(start_paused = true)]
async fn a_request_for_an_unknown_name_after_a_restart_is_refused() {
    let mut h = Harness::new().await;
    h.restart().await.unwrap();
    let err = h.request("nope").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::Deleted);
    h.advance(Duration::from_millis(1)).await;
}
