//! Archive and restore against the real Docker daemon: a container's own
//! changes become one snapshot, the Docker container goes away, and the next
//! request brings everything back exactly as it was.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{demo_image, docker_lines, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::{json, Value};

async fn file_op(dormant: &Dormant, name: &str, method: Method, path_and_query: &str) {
    let (status, text) = dormant
        .proxy_request(
            method.clone(),
            name,
            &format!("/files{path_and_query}"),
            Bytes::new(),
        )
        .await;
    assert!(
        status.is_success(),
        "{method} {path_and_query}: {status} {text:?}"
    );
}

/// Content (or `None` if missing) and stat of a path in the container.
async fn look(dormant: &Dormant, name: &str, path: &str) -> (Option<String>, Option<Value>) {
    let (status, stat) = dormant.get(name, &format!("/files{path}?op=stat")).await;
    if status == StatusCode::NOT_FOUND {
        return (None, None);
    }
    assert_eq!(status, StatusCode::OK, "stat {path}: {stat}");
    let stat: Value = serde_json::from_str(&stat).unwrap();
    let content = if stat["type"] == "file" {
        let (status, body) = dormant.get(name, &format!("/files{path}")).await;
        assert_eq!(status, StatusCode::OK);
        Some(body)
    } else {
        None
    };
    (content, Some(stat))
}

/// Everything a user did, as paths whose content and stat must survive.
const PATHS: &[&str] = &[
    "/home/u/a.txt",
    "/home/u/deep/er/b.txt",
    "/home/u/empty",
    "/home/u/my%20file%20%C3%A9t%C3%A9.txt",
    "/home/u/link",
    "/home/u/hard",
    "/home/u/private",
    "/home/u/emptydir",
    "/srv/fixtures/keep.txt",
    "/srv/fixtures/delete-me.txt",
    "/srv/fixtures/dir-to-file",
    "/srv/fixtures/opaque-dir/old.txt",
    "/srv/fixtures/opaque-dir/new.txt",
    "/data/in-volume.txt",
];

async fn make_changes(dormant: &Dormant, name: &str) {
    dormant
        .put_file(name, "/home/u/a.txt", "first version")
        .await;
    dormant
        .put_file(name, "/home/u/a.txt", "second version, modified")
        .await;
    dormant
        .put_file(name, "/home/u/deep/er/b.txt", "nested")
        .await;
    dormant.put_file(name, "/home/u/empty", "").await;
    dormant
        .put_file(
            name,
            "/home/u/my%20file%20%C3%A9t%C3%A9.txt",
            "spaces and accents",
        )
        .await;
    file_op(
        dormant,
        name,
        Method::POST,
        "/home/u/link?op=symlink&target=a.txt",
    )
    .await;
    file_op(
        dormant,
        name,
        Method::POST,
        "/home/u/hard?op=link&target=/home/u/a.txt",
    )
    .await;
    dormant.put_file(name, "/home/u/private", "secret").await;
    file_op(
        dormant,
        name,
        Method::POST,
        "/home/u/private?op=chmod&mode=600",
    )
    .await;
    file_op(dormant, name, Method::POST, "/home/u/emptydir?op=mkdir").await;
    // Changes to what came from the image.
    file_op(dormant, name, Method::DELETE, "/srv/fixtures/delete-me.txt").await;
    file_op(dormant, name, Method::DELETE, "/srv/fixtures/dir-to-file").await;
    dormant
        .put_file(name, "/srv/fixtures/dir-to-file", "now a file")
        .await;
    file_op(dormant, name, Method::DELETE, "/srv/fixtures/opaque-dir").await;
    dormant
        .put_file(name, "/srv/fixtures/opaque-dir/new.txt", "made again")
        .await;
    dormant
        .put_file(name, "/data/in-volume.txt", "kept in a named volume")
        .await;
}

async fn snapshot_of_everything(
    dormant: &Dormant,
    name: &str,
) -> Vec<(String, Option<String>, Option<Value>)> {
    let mut seen = Vec::new();
    for path in PATHS {
        let (content, stat) = look(dormant, name, path).await;
        seen.push((path.to_string(), content, stat));
    }
    seen
}

fn layer_depth(name: &str) -> usize {
    let lower = docker_lines(&[
        "inspect",
        "-f",
        "{{.GraphDriver.Data.LowerDir}}",
        &format!("dormant-{name}"),
    ]);
    lower.first().map_or(0, |l| l.split(':').count())
}

#[tokio::test]
async fn an_archived_container_comes_back_exactly_as_it_was() {
    let dormant = Dormant::start();
    let name = unique("arch");
    dormant
        .create(json!({"image": demo_image(), "name": name, "volumes": ["/data"]}))
        .await;
    make_changes(&dormant, &name).await;
    let before = snapshot_of_everything(&dormant, &name).await;
    // The changes are what we think they are.
    let by_path = |path: &str| before.iter().find(|(p, ..)| p == path).unwrap().clone();
    assert_eq!(by_path("/home/u/hard").2.unwrap()["nlink"], 2);
    assert_eq!(by_path("/home/u/link").2.unwrap()["link_target"], "a.txt");
    assert!(by_path("/srv/fixtures/delete-me.txt").2.is_none());
    assert!(by_path("/srv/fixtures/opaque-dir/old.txt").2.is_none());
    assert_eq!(
        by_path("/srv/fixtures/dir-to-file").2.unwrap()["type"],
        "file"
    );
    let depth = layer_depth(&name);

    let archived = dormant.archive(&name).await;
    assert!(
        archived["snapshot"]["bytes"].as_u64().unwrap() > 0,
        "{archived}"
    );
    assert!(
        dormant.docker_containers().is_empty(),
        "Docker still has the container"
    );
    assert!(
        dormant.docker_volumes().is_empty(),
        "Docker still has the volume"
    );

    let after = snapshot_of_everything(&dormant, &name).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "{} changed across archive and restore", b.0);
    }
    let restored = dormant.view(&name).await;
    assert_eq!(restored["state"], "running");
    assert!(
        restored.get("snapshot").is_none(),
        "the snapshot outlived its restore: {restored}"
    );
    assert_eq!(layer_depth(&name), depth);
}

#[tokio::test]
async fn twenty_cycles_keep_layer_depth_and_snapshot_size_flat() {
    let dormant = Dormant::start();
    let name = unique("cycle");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    let depth = layer_depth(&name);
    let mut sizes = Vec::new();
    for cycle in 0..20 {
        // The same amount of user data each time, under a new name, and the
        // previous cycle's file deleted: nothing should pile up.
        dormant
            .put_file(&name, &format!("/work/file-{cycle}"), &"x".repeat(100_000))
            .await;
        if cycle > 0 {
            file_op(
                &dormant,
                &name,
                Method::DELETE,
                &format!("/work/file-{}", cycle - 1),
            )
            .await;
        }
        let archived = dormant.archive(&name).await;
        sizes.push(archived["snapshot"]["bytes"].as_u64().unwrap());
        let (status, body) = dormant
            .get(&name, &format!("/files/work/file-{cycle}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.len(), 100_000);
        assert_eq!(
            layer_depth(&name),
            depth,
            "layer depth grew at cycle {cycle}"
        );
    }
    let (first, last) = (sizes[1], sizes[19]);
    assert!(
        last <= first + first / 10 + 512,
        "snapshot grew from {first} to {last} bytes: {sizes:?}"
    );
    let (status, _) = dormant.get(&name, "/files/work/file-0").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a deleted file came back");
}

#[tokio::test]
async fn a_corrupt_snapshot_is_never_restored_and_is_kept() {
    let dormant = Dormant::start();
    let name = unique("corrupt");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    dormant.put_file(&name, "/home/u/a.txt", "precious").await;
    dormant.archive(&name).await;
    let dir = dormant.data_dir.join("snapshots");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&files[0], &bytes).unwrap();

    let (status, body) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("SHA-256"), "{body}");
    let failed = dormant.view(&name).await;
    assert_eq!(failed["state"], "failed");
    assert!(
        failed["reason"].as_str().unwrap().contains("damaged"),
        "{failed}"
    );
    assert!(files[0].exists(), "the corrupt snapshot was deleted");
    assert!(
        dormant.docker_containers().is_empty(),
        "a half-restored container was left"
    );
}

#[tokio::test]
async fn a_crash_at_any_point_of_an_archive_or_restore_loses_nothing() {
    let archive_points = [
        "archive-after-snapshot-write",
        "archive-after-snapshot-record",
        "archive-after-docker-remove",
    ];
    let restore_points = ["restore-after-create", "restore-after-write"];
    for point in archive_points.iter().chain(&restore_points) {
        let mut dormant = Dormant::start();
        let name = unique("crash");
        dormant
            .create(json!({"image": demo_image(), "name": name, "volumes": ["/data"]}))
            .await;
        dormant.put_file(&name, "/home/u/a.txt", "survives").await;
        dormant.put_file(&name, "/data/v.txt", "survives too").await;
        if restore_points.contains(point) {
            dormant.archive(&name).await;
        }
        dormant.kill();
        dormant.set_env("DORMANT_FAULT_POINT", Some(point));
        dormant.restart();
        // Reach the point: dormant aborts in the middle of the call.
        let path = if restore_points.contains(point) {
            "wake"
        } else {
            "archive"
        };
        let dormant_api = dormant.api;
        let _ = tokio::time::timeout(
            Duration::from_secs(60),
            common::raw_post(
                dormant_api,
                &format!("/v1/containers/{name}/{path}"),
                "test-token",
            ),
        )
        .await;
        let status = dormant.wait_aborted();
        assert!(
            !status.success(),
            "{point}: dormant did not stop at its fault point"
        );
        dormant.set_env("DORMANT_FAULT_POINT", None);
        dormant.restart();

        let settled = dormant.view(&name).await;
        let state = settled["state"].as_str().unwrap().to_owned();
        let containers = dormant.docker_containers();
        match state.as_str() {
            "asleep" => assert_eq!(containers.len(), 1, "{point}: asleep without its container"),
            "archived" => {
                assert!(
                    containers.is_empty(),
                    "{point}: archived but Docker has {containers:?}"
                );
                assert!(
                    settled["snapshot"].is_object(),
                    "{point}: archived without a snapshot"
                );
            }
            other => panic!("{point}: settled in state {other}"),
        }
        let snapshots: Vec<String> = std::fs::read_dir(dormant.data_dir.join("snapshots"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let expected = usize::from(state == "archived");
        assert_eq!(
            snapshots.len(),
            expected,
            "{point}: snapshot files left: {snapshots:?}"
        );

        let (status, body) = dormant.get(&name, "/files/home/u/a.txt").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "survives"),
            "{point}"
        );
        let (status, body) = dormant.get(&name, "/files/data/v.txt").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "survives too"),
            "{point}"
        );
    }
}

#[tokio::test]
async fn a_crash_between_a_restore_and_its_flush_is_flushed_at_the_next_start() {
    for point in ["restore-before-flush", "restore-after-flush"] {
        crash_around_the_flush(point).await;
    }
}

async fn crash_around_the_flush(point: &str) {
    let mut dormant = Dormant::start();
    let name = unique("flush");
    dormant
        .create(json!({"image": demo_image(), "name": name, "volumes": ["/data"]}))
        .await;
    dormant.put_file(&name, "/home/u/a.txt", "survives").await;
    dormant.put_file(&name, "/data/v.txt", "survives too").await;
    dormant.archive(&name).await;
    dormant.kill();
    dormant.set_env("DORMANT_FAULT_POINT", Some(point));
    dormant.restart();
    let dormant_api = dormant.api;
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        common::raw_post(
            dormant_api,
            &format!("/v1/containers/{name}/wake"),
            "test-token",
        ),
    )
    .await;
    let status = dormant.wait_aborted();
    assert!(!status.success(), "{point}: dormant did not stop there");
    let snapshot_dir = dormant.data_dir.join("snapshots");
    let snapshots = || -> Vec<String> {
        std::fs::read_dir(&snapshot_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        snapshots().len(),
        1,
        "{point}: the snapshot goes only after the flush"
    );
    assert_eq!(
        dormant.docker_containers().len(),
        1,
        "{point}: the restored container"
    );

    dormant.set_env("DORMANT_FAULT_POINT", None);
    dormant.restart();
    let flushed = common::eventually(Duration::from_secs(60), async || {
        dormant.view(&name).await["snapshot"].is_null() && snapshots().is_empty()
    })
    .await;
    assert!(
        flushed,
        "{point}: the snapshot was not dropped:\n{}",
        dormant.log()
    );
    assert!(
        dormant.log().contains("the restored files are on disk"),
        "{point}: {}",
        dormant.log()
    );
    let (status, body) = dormant.get(&name, "/files/home/u/a.txt").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "survives"),
        "{point}"
    );
    let (status, body) = dormant.get(&name, "/files/data/v.txt").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "survives too"),
        "{point}"
    );
    assert_eq!(dormant.view(&name).await["state"], "running", "{point}");
}
