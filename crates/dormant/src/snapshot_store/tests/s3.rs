//! The object store's snapshot store against a real S3 server: upload, download and verify,
//! damaged and missing objects, a server that does not answer, start-up's clean-up.

use std::collections::HashSet;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_goes_up_in_parts_and_comes_back_verified() {
    let dir = temp_dir("roundtrip");
    let server = S3Server::start(&dir.join("s3"));
    let spool = dir.join("spool");
    let store = s3_store(server.builder(), &spool, "dormant/test");
    assert_eq!(store.describe(), "s3://snaps/dormant/test");

    // 12 MiB and a bit: three parts of 5 MiB (the last one short).
    let big = content((12 << 20) + 12_345, 7);
    let record = stage(&store, "alice", &big);
    assert_eq!(record.file, format!("{NODE}/alice-1764669600000.snap.zst"));
    store.keep(&record.file, &info(&record)).await.unwrap();
    assert!(
        dir_entries(&spool).is_empty(),
        "the spool file is deleted once uploaded"
    );
    assert!(server.unfinished_parts().is_empty());
    let object = server
        .root
        .join(BUCKET)
        .join("dormant/test")
        .join(&record.file);
    assert_eq!(
        std::fs::read(&object).unwrap(),
        big,
        "the object is the file"
    );

    // A small one goes up in one PUT.
    let small = stage(&store, "bob", b"tiny snapshot");
    store.keep(&small.file, &info(&small)).await.unwrap();

    let downloaded = std::sync::atomic::AtomicU64::new(0);
    let told = |bytes| {
        downloaded.fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
    };
    let fetched = store.fetch(&record, &told).await.unwrap();
    assert_eq!(
        downloaded.into_inner(),
        big.len() as u64,
        "progress tells every byte"
    );
    assert!(fetched.verified);
    assert!(fetched.path.starts_with(&spool));
    assert_eq!(std::fs::read(&fetched.path).unwrap(), big);
    let downloaded = fetched.path.clone();
    drop(fetched);
    assert!(
        !downloaded.exists(),
        "a download is deleted once restored from"
    );
    assert!(!store.known_missing(&record.file));

    store.delete(&record.file).await.unwrap();
    store.delete(&record.file).await.unwrap();
    assert!(!object.exists());
    match store.fetch(&record, &|_| {}).await {
        Err(SnapshotError::Missing { what, why }) => {
            assert_eq!(what, format!("s3://snaps/dormant/test/{}", record.file));
            assert!(why.contains("no such object"), "{why}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(dir_entries(&spool).is_empty());
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_object_is_refused_and_nothing_is_left_to_restore_from() {
    let dir = temp_dir("damaged");
    let server = S3Server::start(&dir.join("s3"));
    let spool = dir.join("spool");
    let store = s3_store(server.builder(), &spool, "");
    let bytes = content(6 << 20, 11);
    let record = stage(&store, "alice", &bytes);
    store.keep(&record.file, &info(&record)).await.unwrap();

    // Same size, one byte changed: only the checksum tells.
    let mut damaged = bytes.clone();
    damaged[3 << 20] ^= 0x40;
    let client = server.builder().with_bucket_name(BUCKET).build().unwrap();
    let key = ObjectPath::parse(&record.file).unwrap();
    client.put(&key, PutPayload::from(damaged)).await.unwrap();
    match store.fetch(&record, &|_| {}).await {
        Err(SnapshotError::ChecksumMismatch { path, expected, .. }) => {
            assert_eq!(path, PathBuf::from(format!("s3://snaps/{}", record.file)));
            assert_eq!(expected, record.sha256);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert!(
        dir_entries(&spool).is_empty(),
        "no download is left to restore from"
    );

    // A different size is refused before downloading anything.
    client
        .put(&key, PutPayload::from(b"short".to_vec()))
        .await
        .unwrap();
    let error = store.fetch(&record, &|_| {}).await.unwrap_err();
    assert!(
        matches!(error, SnapshotError::ChecksumMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("5 bytes"), "{error}");
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_answer_is_named_with_what_to_check() {
    let dir = temp_dir("down");
    let spool = dir.join("spool");
    // Nothing listens there.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let store = s3_store(builder_for(&endpoint), &spool, "p");
    let record = stage(&store, "alice", &content(1 << 20, 3));
    let error = store.keep(&record.file, &info(&record)).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!("s3://snaps/p/{}", record.file)),
        "{message}"
    );
    assert!(message.contains("is the endpoint reachable"), "{message}");
    assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
    assert!(
        dir_entries(&spool).is_empty(),
        "nothing kept after a failed upload"
    );

    let error = store.fetch(&record, &|_| {}).await.unwrap_err();
    assert!(matches!(error, SnapshotError::Remote(_)), "{error}");
    assert!(error.to_string().contains("HEAD s3://snaps/p/"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_removes_orphans_of_this_node_and_aborts_unfinished_uploads() {
    let dir = temp_dir("cleanup");
    let server = S3Server::start(&dir.join("s3"));
    let spool = dir.join("spool");
    let store = s3_store(server.builder(), &spool, "pre");
    let kept = stage(&store, "alice", b"recorded");
    store.keep(&kept.file, &info(&kept)).await.unwrap();
    let orphan = stage(&store, "bob", b"uploaded, never recorded");
    store.keep(&orphan.file, &info(&orphan)).await.unwrap();
    let client = server.builder().with_bucket_name(BUCKET).build().unwrap();
    let theirs = ObjectPath::parse("pre/othernode/carol-1.snap.zst").unwrap();
    client
        .put(&theirs, PutPayload::from(b"another node's".to_vec()))
        .await
        .unwrap();

    // A crash mid-upload: a spool file, a part uploaded, the marker beside them.
    let cut = stage(&store, "dave", &content(6 << 20, 5));
    let cut_key = ObjectPath::parse(format!("pre/{}", cut.file)).unwrap();
    let id = client.create_multipart(&cut_key).await.unwrap();
    client
        .put_part(&cut_key, &id, 0, PutPayload::from(content(5 << 20, 9)))
        .await
        .unwrap();
    assert_eq!(server.unfinished_parts().len(), 1);
    let marker = serde_json::json!({"key": cut_key.as_ref(), "upload_id": id});
    std::fs::write(
        spool.join("dave-1764669600000.snap.zst.upload"),
        marker.to_string(),
    )
    .unwrap();
    std::fs::write(spool.join("erin-5.snap.zst.download.tmp-77"), b"half").unwrap();

    let referenced = HashSet::from([kept.file.clone()]);
    let removed = store.clean_up(&referenced).await;
    assert_eq!(removed.len(), 4, "{removed:?}");
    assert!(dir_entries(&spool).is_empty(), "{:?}", dir_entries(&spool));
    assert!(
        server.unfinished_parts().is_empty(),
        "the upload was aborted"
    );
    assert!(
        client.head(&theirs).await.is_ok(),
        "another node's object is not touched"
    );
    let kept_key = ObjectPath::parse(format!("pre/{}", kept.file)).unwrap();
    assert!(client.head(&kept_key).await.is_ok());
    let orphan_key = ObjectPath::parse(format!("pre/{}", orphan.file)).unwrap();
    assert!(matches!(
        client.head(&orphan_key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_from_before_the_object_store_stay_local_and_are_kept() {
    let dir = temp_dir("before");
    let server = S3Server::start(&dir.join("s3"));
    let spool = dir.join("spool");
    // Archived while snapshots were kept in the data dir.
    std::fs::create_dir_all(&spool).unwrap();
    let local = LocalSnapshots::new(spool.clone());
    let old = stage(&local, "alice", b"archived before --snapshots s3://");
    let store = s3_store(server.builder(), &spool, "");
    assert!(!store.known_missing(&old.file));
    let removed = store.clean_up(&HashSet::from([old.file.clone()])).await;
    assert_eq!(
        removed,
        Vec::<String>::new(),
        "a recorded local snapshot stays"
    );
    let fetched = store.fetch(&old, &|_| {}).await.unwrap();
    assert_eq!(fetched.path, spool.join(&old.file));
    assert!(!fetched.verified, "the restore checks it, as before");
    drop(fetched);
    assert!(spool.join(&old.file).is_file(), "not a download: kept");
    store.delete(&old.file).await.unwrap();
    assert!(store.known_missing(&old.file));
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_cut_short_is_aborted_and_leaves_no_marker() {
    let dir = temp_dir("cut");
    let server = S3Server::start(&dir.join("s3"));
    let spool = dir.join("spool");
    let store = s3_store(server.builder(), &spool, "");
    let record = stage(&store, "alice", &content(6 << 20, 13));
    let file = store.staging_path(&record.file);
    let path = store.object_path(&record.file).unwrap();
    // It claims 16 MiB: the second of its 5 MiB parts cannot be read.
    let error = store
        .upload(&file, 16 << 20, &path, &record.file)
        .await
        .unwrap_err();
    assert!(matches!(error, SnapshotError::Io { .. }), "{error}");
    assert!(
        server.unfinished_parts().is_empty(),
        "the upload is aborted"
    );
    assert_eq!(
        dir_entries(&spool),
        vec!["alice-1764669600000.snap.zst".to_owned()],
        "no marker is left once the upload is aborted"
    );
    let client = server.builder().with_bucket_name(BUCKET).build().unwrap();
    assert!(matches!(
        client.head(&path).await,
        Err(object_store::Error::NotFound { .. })
    ));
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}
