//! Restore: a request for an archived container makes it again from its
//! snapshot and serves the request; a failed restore keeps the snapshot and
//! ends `failed` with a reason. Needs root; skipped otherwise.

use std::time::Duration;

use super::harness::*;
use crate::proxy::waker::WakeErrorKind;

#[tokio::test(start_paused = true)]
async fn a_request_restores_an_archived_container_with_the_users_files() {
    let h = Harness::new().await;
    let files = [("home/u/notes.txt", "mine"), ("data/db", "rows")];
    if h.archived("a", &files).await.is_none() {
        return;
    }
    h.served("a").await;
    assert_eq!(h.assert_settled("a").await, Running);
    for (path, content) in files {
        assert_eq!(h.read_file("a", path).as_deref(), Some(content), "{path}");
    }
    // The snapshot has done its job once the restored files are flushed.
    h.eventually("the snapshot file is deleted", || {
        h.snapshot_files().is_empty()
    })
    .await;
    assert!(h.record("a").await.unwrap().snapshot.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_api_wake_restores_too_and_the_container_can_be_archived_again() {
    let h = Harness::new().await;
    if h.archived("a", &[("data/x", "1")]).await.is_none() {
        return;
    }
    h.lifecycle().wake("a").await.unwrap();
    h.write_file("a", "data/x", "2");
    // At once: the archive waits for the restore's flush, then replaces
    // its snapshot; the flush, when it ends, must not drop the new one.
    h.lifecycle().archive("a").await.unwrap();
    h.advance(Duration::from_secs(1)).await;
    let files = h.snapshot_files();
    assert_eq!(files.len(), 1, "the old snapshot is not kept: {files:?}");
    let recorded = h.record("a").await.unwrap().snapshot.map(|s| s.file);
    assert_eq!(recorded.as_ref(), files.first());
    h.served("a").await;
    assert_eq!(h.read_file("a", "data/x").as_deref(), Some("2"));
}

#[tokio::test(start_paused = true)]
async fn a_delete_right_after_a_restore_leaves_nothing_while_the_flush_runs() {
    let h = Harness::new().await;
    if h.archived("a", &[("data/x", "1"), ("home/u/y", "2")])
        .await
        .is_none()
    {
        return;
    }
    h.served("a").await;
    h.lifecycle().delete("a").await.unwrap();
    h.advance(Duration::from_secs(1)).await;
    assert!(h.record("a").await.is_none());
    assert!(h.snapshot_files().is_empty(), "{:?}", h.snapshot_files());
    assert!(h.fake().container("a").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_missing_snapshot_fails_the_wake_with_a_reason() {
    let h = Harness::new().await;
    if h.archived("a", &[]).await.is_none() {
        return;
    }
    for file in h.snapshot_files() {
        std::fs::remove_file(h.snapshot_dir().join(file)).unwrap();
    }
    let err = h.request("a").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::Failed);
    assert!(err.reason.contains("missing"), "{}", err.reason);
    assert_eq!(h.assert_settled("a").await, Failed);
}

#[tokio::test(start_paused = true)]
async fn a_damaged_snapshot_is_kept_and_the_wake_fails() {
    let h = Harness::new().await;
    if h.archived("a", &[("data/x", "1")]).await.is_none() {
        return;
    }
    let file = h.snapshot_dir().join(&h.snapshot_files()[0]);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let err = h.request("a").await.unwrap_err();
    assert!(err.reason.contains("damaged"), "{}", err.reason);
    assert_eq!(h.assert_settled("a").await, Failed);
    assert_eq!(h.snapshot_files().len(), 1, "kept for inspection");
    assert!(
        h.fake().container("a").is_none(),
        "nothing half-restored stays"
    );
}

#[tokio::test(start_paused = true)]
async fn a_create_failure_during_restore_keeps_the_snapshot_and_a_later_wake_works() {
    let h = Harness::new().await;
    if h.archived("a", &[("data/x", "1")]).await.is_none() {
        return;
    }
    h.fake().fail_for("a", Call::Create, 1, Fault::Unavailable);
    let err = h.request("a").await.unwrap_err();
    assert!(err.reason.contains("docker create"), "{}", err.reason);
    assert_eq!(h.assert_settled("a").await, Failed);
    assert!(h.record("a").await.unwrap().snapshot.is_some());
    h.advance(Duration::from_secs(2)).await;
    h.served("a").await;
    assert_eq!(h.read_file("a", "data/x").as_deref(), Some("1"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_restore_with_a_failed_clean_up_never_loses_the_snapshot() {
    let mut h = Harness::new().await;
    if h.archived("a", &[("data/x", "precious")]).await.is_none() {
        return;
    }
    // The new container is made, then Docker fails: first looking at it,
    // then removing it.
    // (The first removal is the clean start before the restore.)
    h.fake().fail_for("a", Call::Inspect, 1, Fault::Unavailable);
    h.fake()
        .fail_later("a", Call::Remove, 1, 1, Fault::Unavailable);
    let _ = h.request("a").await.unwrap_err();
    h.restart().await.unwrap();
    assert_eq!(
        h.snapshot_files().len(),
        1,
        "the only copy of the user's files"
    );
    h.advance(Duration::from_secs(2)).await;
    h.served("a").await;
    assert_eq!(h.read_file("a", "data/x").as_deref(), Some("precious"));
}

#[tokio::test(start_paused = true)]
async fn a_restore_short_of_disk_answers_503_and_stays_archived() {
    let mut h = Harness::new().await;
    if h.archived("a", &[("data/db", "rows")]).await.is_none() {
        return;
    }
    h.set_options(|o| o.min_free_disk = u64::MAX / 4);
    h.restart().await.unwrap();
    let err = h.request("a").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::NoSpace, "{err:?}");
    assert!(err.retry_after.is_some(), "503 with Retry-After");
    assert!(!err.reason.contains('/'), "no host paths: {}", err.reason);
    assert_eq!(h.assert_settled("a").await, Archived);
    assert_eq!(h.snapshot_files().len(), 1, "the snapshot is kept");
    h.set_options(|o| o.min_free_disk = 0);
    h.restart().await.unwrap();
    h.served("a").await;
    assert_eq!(h.read_file("a", "data/db").as_deref(), Some("rows"));
}
