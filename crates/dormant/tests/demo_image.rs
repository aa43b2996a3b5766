//! `dormant demo-image` from an installed binary: a copy of `dormant` alone in a directory, run
//! from `/` with no cargo on the PATH, builds an image that serves the demo through dormant.

mod common;

use std::process::Command;

use common::{docker_lines, unique, Dormant};
use http::StatusCode;
use serde_json::json;

/// Removes the test's image tag when the test ends, even when it fails.
struct Tag(String);

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", &self.0]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_binary_builds_a_demo_image_that_serves() {
    let bin_dir = std::env::temp_dir().join(unique("dormant-installed"));
    std::fs::create_dir_all(&bin_dir).unwrap();
    let installed = bin_dir.join("dormant");
    std::fs::copy(env!("CARGO_BIN_EXE_dormant"), &installed).unwrap();
    let tag = Tag(format!("{}:test", unique("dormant-demo-installed")));

    let mut command = Command::new(&installed);
    command
        .args(["demo-image", "--tag", &tag.0])
        .current_dir("/")
        .env_clear()
        .env("PATH", &bin_dir);
    if let Some(host) = std::env::var_os("DOCKER_HOST") {
        command.env("DOCKER_HOST", host);
    }
    let output = command.output().unwrap();
    let _ = std::fs::remove_dir_all(&bin_dir);
    assert!(
        output.status.success(),
        "demo-image from an installed binary failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(&tag.0));

    let config = docker_lines(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Entrypoint}} {{json .Config.ExposedPorts}} {{index .Config.Labels \"dormant.demo\"}}",
        &tag.0,
    ]);
    assert_eq!(
        config,
        [r#"["/dormant","demo-serve"] {"8080/tcp":{}} true"#],
        "the image's config"
    );

    let dormant = Dormant::start();
    let name = unique("installed");
    dormant.create(json!({"image": tag.0, "name": name})).await;
    let (status, body) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("hello from "), "{body}");
    let (status, body) = dormant.get(&name, "/files/srv/fixtures/keep.txt").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "from the image\n")
    );

    // The workload's own exit code reaches Docker through `dormant demo-serve`.
    let crash = unique("installed-crash");
    let (status, body) = dormant
        .api(
            http::Method::POST,
            "/v1/containers",
            Some(json!({"image": tag.0, "name": crash, "cmd": ["--exit-immediately"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.to_string().contains("code 3"), "{body}");
}
