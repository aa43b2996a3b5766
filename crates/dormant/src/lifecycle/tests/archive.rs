//! Archive: an asleep container becomes one snapshot file and its Docker
//! container and volumes go; durable before destructive, and an error at
//! any step leaves it asleep (or archived) with its route open.
//! Needs root (it reads and writes containers' layers); skipped otherwise.

use std::sync::Arc;
use std::time::Duration;

use super::harness::*;
use crate::lifecycle::LifecycleError;

#[tokio::test(start_paused = true)]
async fn archiving_keeps_one_snapshot_and_removes_the_docker_objects() {
    let h = Harness::new().await;
    if h.archived("a", &[("etc/app.conf", "x=1"), ("data/db", "rows")])
        .await
        .is_none()
    {
        return;
    }
    assert_eq!(h.assert_settled("a").await, Archived);
    assert!(h.fake().container("a").is_none());
    assert!(h.fake().volume_names().is_empty());
    let record = h.record("a").await.unwrap();
    let snapshot = record.snapshot.expect("the snapshot is recorded");
    assert_eq!(h.snapshot_files(), [snapshot.file]);
    assert!(record.docker_id.is_none());
}

#[tokio::test(start_paused = true)]
async fn archiving_a_running_container_puts_it_to_sleep_first() {
    let h = Harness::new().await;
    if !h.can_archive() {
        return;
    }
    h.running("a").await;
    h.lifecycle().archive("a").await.unwrap();
    assert_eq!(h.assert_settled("a").await, Archived);
    assert_eq!(h.fake().calls(Call::Stop), 1);
}

#[tokio::test(start_paused = true)]
async fn a_container_asleep_for_its_archive_after_is_archived_by_the_sweep() {
    let h = Harness::new().await;
    if !h.can_archive() {
        return;
    }
    h.create_with(&["a"], |spec| spec.archive_after = Some(Duration::ZERO))
        .await
        .unwrap();
    h.lifecycle().sleep("a").await.unwrap();
    h.wait_state("a", Archived).await;
    assert_eq!(h.assert_settled("a").await, Archived);
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_the_snapshot_leaves_it_asleep() {
    let h = Harness::new().await;
    if !h.can_archive() {
        return;
    }
    h.asleep("a").await;
    for (call, fault) in [
        (Call::Inspect, Fault::Unavailable),
        (Call::VolumeDir, Fault::Other),
    ] {
        h.fake().fail_for("a", call, 1, fault);
        let err = h.lifecycle().archive("a").await.unwrap_err();
        assert!(
            matches!(err, LifecycleError::Runtime { .. }),
            "{call:?}: {err}"
        );
        assert_eq!(h.assert_settled("a").await, Asleep, "{call:?}");
        assert!(h.snapshot_files().is_empty());
    }
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_that_cannot_be_written_leaves_it_asleep() {
    let h = Harness::new().await;
    if !h.can_archive() {
        return;
    }
    h.asleep("a").await;
    // Its writable layer vanished from under Docker: nothing to read.
    let upper = h.fake().container("a").unwrap().upper_dir;
    std::fs::remove_dir_all(&upper).unwrap();
    let err = h.lifecycle().archive("a").await.unwrap_err();
    assert!(matches!(err, LifecycleError::Snapshot { .. }), "{err}");
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert!(h.snapshot_files().is_empty(), "no partial file stays");
    assert!(h.fake().container("a").is_some());
}

#[tokio::test(start_paused = true)]
async fn a_removal_failure_after_the_snapshot_leaves_a_defined_state() {
    let h = Harness::new().await;
    if !h.can_archive() {
        return;
    }
    h.asleep("a").await;
    h.write_file("a", "data/db", "rows");
    h.fake().fail_for("a", Call::Remove, 1, Fault::Conflict);
    let err = h.lifecycle().archive("a").await.unwrap_err();
    assert!(err.to_string().contains("docker rm"), "{err}");
    let state = h.assert_settled("a").await;
    assert!(matches!(state, Asleep | Archived), "{state}");
    h.served("a").await;
    assert_eq!(h.read_file("a", "data/db").as_deref(), Some("rows"));
}

#[tokio::test(start_paused = true)]
async fn archiving_an_archived_container_is_a_no_op() {
    let h = Harness::new().await;
    if h.archived("a", &[]).await.is_none() {
        return;
    }
    let files = h.snapshot_files();
    h.lifecycle().archive("a").await.unwrap();
    assert_eq!(h.snapshot_files(), files);
    let err = h.lifecycle().archive("nope").await.unwrap_err();
    assert!(matches!(err, LifecycleError::NotFound(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_request_arriving_during_an_archive_is_served_with_the_users_files() {
    let h = Arc::new(Harness::new().await);
    if !h.can_archive() {
        return;
    }
    h.asleep("a").await;
    h.write_file("a", "data/db", "rows");
    // The removal (after the snapshot is recorded) takes a while.
    h.fake().delay(Call::Remove, Duration::from_secs(1));
    let archiving = {
        let h = h.clone();
        tokio::spawn(async move { h.lifecycle().archive("a").await })
    };
    h.wait_state("a", Archiving).await;
    let request = h.spawn_request("a");
    archiving.await.unwrap().unwrap();
    request.await.unwrap().expect("served after a restore");
    assert_eq!(h.assert_settled("a").await, Running);
    assert_eq!(h.read_file("a", "data/db").as_deref(), Some("rows"));
}

#[tokio::test(start_paused = true)]
async fn an_archive_short_of_disk_is_refused_and_stays_asleep() {
    let h = Harness::with(Options {
        min_free_disk: u64::MAX / 4,
        ..Options::default()
    })
    .await;
    if !h.can_archive() {
        return;
    }
    h.asleep("a").await;
    h.write_file("a", "data/db", "rows");
    let err = h.lifecycle().archive("a").await.unwrap_err();
    assert!(matches!(err, LifecycleError::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("free disk"), "{err}");
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert!(h.snapshot_files().is_empty(), "nothing written");
    h.served("a").await;
    assert_eq!(h.read_file("a", "data/db").as_deref(), Some("rows"));
}
