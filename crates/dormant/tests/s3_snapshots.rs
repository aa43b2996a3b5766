//! Snapshots in an S3-compatible object store, end to end: the real dormant binary with
//! `--snapshots s3://...` against a real S3 server (`s3s-fs`) and the real Docker daemon.
//! An archive leaves one object in the bucket and nothing in the local snapshot dir; a
//! request restores the container with its data, here and on another node that has only
//! the store's rows and the bucket.

mod common;

use std::time::Duration;

use common::s3::S3Server;
use common::{demo_image, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::json;

const BUCKET: &str = "dormant-snaps";

fn start(server: &S3Server, extra_env: &[(&str, &str)]) -> Dormant {
    let url = format!("s3://{BUCKET}/site-a");
    let env = server.env();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra_env);
    Dormant::start_with_env(&["--snapshots", &url], &all)
}

/// `len` bytes of text zstd cannot squeeze much (6 bits of noise per byte).
fn noise(len: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

fn local_snapshots(dormant: &Dormant) -> Vec<String> {
    std::fs::read_dir(dormant.data_dir.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn an_archive_goes_to_the_bucket_and_a_request_restores_it_with_its_data() {
    let server = S3Server::start(BUCKET);
    let dormant = start(&server, &[]);
    let name = unique("s3");
    dormant
        .create(json!({"image": demo_image(), "name": name, "volumes": ["/data"]}))
        .await;
    dormant
        .put_file(&name, "/home/u/notes.txt", "kept in the bucket")
        .await;
    dormant
        .put_file(&name, "/data/v.txt", "a volume's file")
        .await;
    // Big enough that its snapshot goes up as a multipart upload of 8 MiB parts.
    let big = noise(24 << 20);
    dormant.put_file(&name, "/data/big.txt", &big).await;

    let archived = dormant.archive(&name).await;
    let snapshot = &archived["snapshot"];
    assert!(
        snapshot["bytes"].as_u64().unwrap() > 16 << 20,
        "three parts or more: {archived}"
    );
    let objects = server.objects(BUCKET);
    assert_eq!(objects.len(), 1, "one object: {objects:?}");
    let key = objects[0].clone();
    let mine = format!("site-a/{}/{name}-", dormant.node);
    assert!(
        key.starts_with(&mine) && key.ends_with(".snap.zst"),
        "{key} is not {mine}<ms>.snap.zst"
    );
    let object = std::fs::metadata(server.root.join(BUCKET).join(&key)).unwrap();
    assert_eq!(Some(object.len()), snapshot["bytes"].as_u64());
    assert_eq!(
        local_snapshots(&dormant),
        Vec::<String>::new(),
        "nothing is left in the local snapshot dir"
    );
    assert_eq!(dormant.docker_containers(), Vec::<String>::new());

    let (status, body) = dormant.get(&name, "/files/home/u/notes.txt").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "kept in the bucket"),
        "{}",
        dormant.log()
    );
    let (status, body) = dormant.get(&name, "/files/data/v.txt").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "a volume's file"));
    let (status, body) = dormant.get(&name, "/files/data/big.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == big, "the big file came back changed");
    assert_eq!(dormant.view(&name).await["state"], "running");

    // Once the restored files are on disk, the object goes.
    let gone = common::eventually(Duration::from_secs(60), async || {
        dormant.view(&name).await["snapshot"].is_null() && server.objects(BUCKET).is_empty()
    })
    .await;
    assert!(gone, "the object stays after the flush:\n{}", dormant.log());
    assert_eq!(local_snapshots(&dormant), Vec::<String>::new());

    let (status, _) = dormant
        .api(Method::DELETE, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    dormant.assert_nothing_left("after delete").await;
}

#[tokio::test]
async fn another_node_restores_from_the_bucket_alone() {
    let server = S3Server::start(BUCKET);
    let mut first = start(&server, &[]);
    let name = unique("s3moved");
    first
        .create(json!({"image": demo_image(), "name": name, "volumes": ["/data"]}))
        .await;
    first
        .put_file(&name, "/home/u/a.txt", "written on the first node")
        .await;
    first
        .put_file(&name, "/data/b.txt", "and in its volume")
        .await;
    first.archive(&name).await;
    let first_node = first.node.clone();
    first.stop();

    // The second node shares the store's rows (copied here, as a shared database would
    // hold them) and the bucket; it has no snapshot file and another node id.
    let second = start(&server, &[]);
    let second_dir = second.data_dir.clone();
    let mut second = second;
    second.kill();
    for entry in std::fs::read_dir(&second_dir).unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("dormant.db")
        {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    for entry in std::fs::read_dir(&first.data_dir).unwrap().flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file.starts_with("dormant.db") {
            std::fs::copy(entry.path(), second_dir.join(&*file)).unwrap();
        }
    }
    second.restart();
    assert_ne!(second.node, first_node);
    assert_eq!(local_snapshots(&second), Vec::<String>::new());
    assert_eq!(
        server.objects(BUCKET).len(),
        1,
        "the other node's object is not an orphan here"
    );

    let (status, body) = second.get(&name, "/files/home/u/a.txt").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "written on the first node"),
        "{}",
        second.log()
    );
    let (status, body) = second.get(&name, "/files/data/b.txt").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "and in its volume")
    );
    assert_eq!(
        second.docker_containers().len(),
        1,
        "it runs on the second node"
    );
}

#[tokio::test]
async fn an_unreachable_bucket_keeps_the_container_asleep_and_says_what_to_check() {
    let server = S3Server::start(BUCKET);
    let mut env = server.env();
    drop(server);
    // Nothing listens there any more.
    env.retain(|(key, _)| *key != "AWS_ENDPOINT_URL");
    let endpoint = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.push(("AWS_ENDPOINT_URL", &endpoint));
    let dormant = Dormant::start_with_env(&["--snapshots", &format!("s3://{BUCKET}/x")], &all);
    let name = unique("s3down");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    dormant.put_file(&name, "/home/u/a.txt", "still here").await;
    let (status, json) = dormant
        .api(
            Method::POST,
            &format!("/v1/containers/{name}/archive"),
            None,
        )
        .await;
    assert!(status.is_server_error(), "{status} {json}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("s3://{BUCKET}/x/")), "{json}");
    assert!(message.contains("is the endpoint reachable"), "{json}");
    assert_eq!(dormant.view(&name).await["state"], "asleep");
    assert_eq!(local_snapshots(&dormant), Vec::<String>::new());
    let (status, body) = dormant.get(&name, "/files/home/u/a.txt").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "still here"));
}

#[tokio::test]
async fn a_damaged_object_is_refused_before_any_container_is_made() {
    let server = S3Server::start(BUCKET);
    let dormant = start(&server, &[]);
    let name = unique("s3bad");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    dormant.put_file(&name, "/home/u/a.txt", "whatever").await;
    dormant.archive(&name).await;
    let objects = server.objects(BUCKET);
    let object = server.root.join(BUCKET).join(&objects[0]);
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&object, bytes).unwrap();

    let since = common::docker_time();
    let (status, body) = dormant.get(&name, "/files/home/u/a.txt").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("damaged"), "{body}");
    assert!(body.contains(&objects[0]), "the key is named: {body}");
    let container = format!("dormant-{name}");
    assert_eq!(
        common::docker_events(&since, &container, "create"),
        0,
        "no container is made from a damaged snapshot"
    );
    assert_eq!(dormant.view(&name).await["state"], "failed");
    assert_eq!(server.objects(BUCKET), objects, "kept for inspection");
    assert_eq!(local_snapshots(&dormant), Vec::<String>::new());

    let (status, _) = dormant
        .api(Method::DELETE, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        server.objects(BUCKET),
        Vec::<String>::new(),
        "deleting the container deletes its object"
    );
}

#[tokio::test]
async fn a_crash_between_the_upload_and_its_record_leaves_no_orphan() {
    let server = S3Server::start(BUCKET);
    let mut dormant = start(&server, &[]);
    let name = unique("s3crash");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    dormant.put_file(&name, "/home/u/a.txt", "not lost").await;
    dormant.kill();
    dormant.set_env("DORMANT_FAULT_POINT", Some("archive-after-snapshot-keep"));
    dormant.restart();
    let api = dormant.api;
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        common::raw_post(api, &format!("/v1/containers/{name}/archive"), "test-token"),
    )
    .await;
    assert!(
        !dormant.wait_aborted().success(),
        "dormant did not stop there"
    );
    assert_eq!(server.objects(BUCKET).len(), 1, "uploaded, not recorded");

    dormant.set_env("DORMANT_FAULT_POINT", None);
    dormant.restart();
    assert_eq!(
        server.objects(BUCKET),
        Vec::<String>::new(),
        "start-up removes the object no row records:\n{}",
        dormant.log()
    );
    assert_eq!(dormant.view(&name).await["state"], "asleep");
    let (status, body) = dormant.get(&name, "/files/home/u/a.txt").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "not lost"));
}
