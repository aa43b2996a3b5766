//! The `--snapshots` URL, and the data dir's store.

use std::collections::HashSet;

use super::*;

#[test]
fn snapshots_urls_parse_and_bad_ones_say_what_is_expected() {
    assert_eq!(
        "s3://my-bucket/dormant/prod/".parse::<SnapshotLocation>(),
        Ok(SnapshotLocation::S3 {
            bucket: "my-bucket".into(),
            prefix: "dormant/prod".into()
        })
    );
    assert_eq!(
        "s3://my-bucket".parse::<SnapshotLocation>(),
        Ok(SnapshotLocation::S3 {
            bucket: "my-bucket".into(),
            prefix: String::new()
        })
    );
    for bad in [
        "/srv/snapshots",
        "s3://",
        "s3://B/x",
        "s3://ok-bucket/a//b",
        "s3://ok-bucket/../x",
    ] {
        let error = bad.parse::<SnapshotLocation>().unwrap_err();
        assert!(error.contains("s3://bucket"), "{bad}: {error}");
    }
}

#[tokio::test]
async fn the_local_store_keeps_in_place_and_cleans_what_no_row_records() {
    let dir = temp_dir("local");
    let store = LocalSnapshots::new(dir.clone());
    let record = stage(&store, "alice", b"snapshot bytes");
    store.keep(&record.file, &info(&record)).await.unwrap();
    let fetched = store.fetch(&record, &|_| {}).await.unwrap();
    assert_eq!(fetched.path, dir.join(&record.file));
    assert!(!fetched.verified, "the restore checks a local file itself");
    drop(fetched);
    assert!(
        dir.join(&record.file).is_file(),
        "a kept file outlives its fetch"
    );

    std::fs::write(dir.join("bob-1.snap.zst"), b"orphan").unwrap();
    std::fs::write(dir.join("carol-2.snap.zst.tmp-0123"), b"partial").unwrap();
    let referenced = HashSet::from([record.file.clone()]);
    let removed = store.clean_up(&referenced).await;
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(dir_entries(&dir), vec![record.file.clone()]);

    store.delete(&record.file).await.unwrap();
    store.delete(&record.file).await.unwrap();
    assert!(store.known_missing(&record.file));
    match store.fetch(&record, &|_| {}).await {
        Err(SnapshotError::Missing { what, .. }) => assert_eq!(what, record.file),
        other => panic!("expected Missing, got {other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}
