//! The command line: `serve`'s configuration precedence (flag > env > file >
//! default) and the client commands against a running dormant.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::{demo_image, dormant_command, unique, Dormant};
use http::{header, Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

#[tokio::test]
async fn flags_beat_env_beat_the_file_beat_defaults() {
    let image = demo_image();
    let dir = std::env::temp_dir().join(unique("dormant-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f.toml");
    std::fs::write(
        &file,
        "base-domain = \"file.test\"\nidle-timeout = \"7m\"\ndefault_memory = \"100m\"\n",
    )
    .unwrap();
    let dormant = Dormant::start_with_env(
        &[
            "--config",
            file.to_str().unwrap(),
            "--default-memory",
            "300m",
        ],
        &[
            ("DORMANT_IDLE_TIMEOUT", "9m"),
            ("DORMANT_DEFAULT_MEMORY", "200m"),
        ],
    );
    let name = unique("prec");

    let created = dormant.create(json!({"image": image, "name": name})).await;
    let view = &created[0];
    assert_eq!(
        view["host"],
        format!("{name}.file.test"),
        "base-domain from the file: {view}"
    );
    assert_eq!(
        view["idle_timeout"], "9m",
        "idle-timeout from the env over the file: {view}"
    );
    assert_eq!(
        view["memory"], "300m",
        "default-memory from the flag over env and file: {view}"
    );
    let (status, view) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        view["url"],
        format!("http://{name}.file.test:{}/", dormant.proxy.port())
    );
    let memory = common::docker_lines(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}}",
        &format!("dormant-{name}"),
    ]);
    assert_eq!(
        memory,
        vec![(300u64 << 20).to_string()],
        "Docker's memory limit"
    );

    // The proxy serves the base domain from the file, and only that one.
    let request = |host: String| {
        Request::builder()
            .uri(format!("http://{}/", dormant.proxy))
            .header(header::HOST, host)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let response = dormant
        .http_client()
        .request(request(format!("{name}.file.test")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, _) = dormant.get(&name, "/").await; // `<name>.localhost`
    assert_eq!(status, StatusCode::NOT_FOUND);

    // What nothing sets keeps its default.
    let defaults = dormant
        .create(json!({"image": image, "name": unique("dflt"), "memory": "64m"}))
        .await;
    assert_eq!(
        defaults[0]["memory"], "64m",
        "a request's own value beats every setting"
    );
    assert_eq!(defaults[0]["idle_timeout"], "9m");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `dormant serve` expecting it to fail at once; returns its stderr.
fn serve_fails(config: &str) -> String {
    let dir = std::env::temp_dir().join(unique("dormant-badconfig"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, config).unwrap();
    let mut child = dormant_command()
        .arg("serve")
        .args(["--config".as_ref(), file.as_os_str()])
        .args(["--data-dir".as_ref(), dir.join("data").as_os_str()])
        .args(["--api-addr", "127.0.0.1:0", "--proxy-addr", "127.0.0.1:0"])
        .env("DORMANT_ADMIN_TOKEN", "test-token")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Only a guard against a dormant that starts serving instead of failing.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            panic!("dormant serve kept running with the config {config:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !status.success(),
        "dormant serve succeeded with the config {config:?}: {stderr}"
    );
    stderr
}

#[test]
fn an_unknown_key_in_the_config_file_stops_serve_naming_the_key() {
    let stderr = serve_fails("base-domain = \"file.test\"\nidle-timout = \"7m\"\n");
    assert!(
        stderr.contains("idle-timout"),
        "the message does not name the key: {stderr}"
    );
}

#[test]
fn a_bad_value_in_the_config_file_stops_serve_naming_the_setting() {
    let stderr = serve_fails("idle-timeout = \"soon\"\n");
    assert!(
        stderr.contains("idle-timeout") || stderr.contains("IDLE_TIMEOUT"),
        "{stderr}"
    );
    let stderr = serve_fails("base-domain = [\"a\", \"b\"]\n");
    assert!(stderr.contains("base-domain"), "{stderr}");
}

/// Runs a client command against `dormant`, with its URL and `token`.
fn client(dormant: &Dormant, token: &str, args: &[&str]) -> Output {
    dormant_command()
        .args(args)
        .args([
            "--url",
            &format!("http://{}", dormant.api),
            "--token",
            token,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "`{what}` failed ({}): {}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_create_list_show_and_remove() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("cli");
    let token = dormant.token.clone();

    let out = ok(
        client(
            &dormant,
            &token,
            &["create", "--image", image, "--name", &name, "-v", "/data"],
        ),
        "dormant create",
    );
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.contains("NAME") && header.contains("STATE"),
        "no table header: {out}"
    );
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()));
    let row = row.unwrap_or_else(|| panic!("no row for {name}: {out}"));
    assert!(row.contains("running"), "{out}");
    let (status, body) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let out = ok(
        client(&dormant, &token, &["ls", "--json"]),
        "dormant ls --json",
    );
    let list: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ls --json is not JSON ({e}): {out}"));
    let containers = list["containers"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(containers.len(), 1, "{out}");
    assert_eq!(containers[0]["name"], name.as_str());
    assert_eq!(containers[0]["state"], "running");

    let out = ok(client(&dormant, &token, &["ls"]), "dormant ls");
    assert!(out.lines().any(|l| l.starts_with(&name)), "{out}");

    let out = ok(client(&dormant, &token, &["get", &name]), "dormant get");
    let state = out.lines().find(|l| l.starts_with("state"));
    assert!(state.is_some_and(|l| l.contains("running")), "{out}");
    assert!(out.contains("/data"), "the volume is not shown: {out}");
    let out = ok(
        client(&dormant, &token, &["get", &name, "--json"]),
        "dormant get --json",
    );
    let view: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("get --json is not JSON ({e}): {out}"));
    assert_eq!(view["name"], name.as_str());

    let out = ok(client(&dormant, &token, &["rm", &name]), "dormant rm");
    assert!(out.contains(&name), "{out}");
    let (status, _) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    dormant.assert_nothing_left("after dormant rm").await;

    // Missing things fail with the API's own message.
    let output = client(&dormant, &token, &["get", &name]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&name) && stderr.contains("404"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_with_a_wrong_token_fail_saying_so() {
    let image = demo_image();
    let dormant = Dormant::start();
    for args in [
        vec!["ls"],
        vec!["get", "someone"],
        vec!["create", "--image", image, "--name", "nobody"],
    ] {
        let output = client(&dormant, "not-the-token", &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{args:?} succeeded with a wrong token"
        );
        assert!(
            stderr.contains("token"),
            "{args:?}: the message does not mention the token: {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    dormant
        .assert_nothing_left("client commands with a wrong token")
        .await;

    // A dormant that is not there: a message saying where it looked.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = dormant_command()
        .args([
            "ls",
            "--url",
            &format!("http://{closed}"),
            "--token",
            "test-token",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&closed.to_string()), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dormant_events_prints_one_line_per_transition_as_it_happens() {
    use std::io::{BufRead, BufReader};
    let dormant = Dormant::start();
    let name = unique("cli");
    let mut follower = dormant_command()
        .args(["events", "--name", &name, "--url"])
        .arg(format!("http://{}", dormant.api))
        .args(["--token", &dormant.token])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    // It says on stderr once it follows the stream: from then on nothing is missed.
    let mut connected = String::new();
    BufReader::new(follower.stderr.take().unwrap())
        .read_line(&mut connected)
        .unwrap();
    assert!(connected.starts_with("following events"), "{connected}");
    let lines = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains(" asleep ");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    let (status, _) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lines.is_finished() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let seen = lines.join().unwrap();
    let kinds: Vec<&str> = seen
        .iter()
        .map(|line| line.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        ["created", "ready", "sleeping", "asleep"],
        "{seen:#?}"
    );
    assert!(seen.iter().all(|line| line.contains(&name)), "{seen:#?}");
    assert!(seen[3].contains("(asked)"), "{}", seen[3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ls_shows_this_node_live_with_its_containers() {
    let image = demo_image();
    let dormant = Dormant::start_with(&["--advertise-addr", "node-a.internal:9999"]);
    let name = unique("nodes");
    dormant.create(json!({"image": image, "name": name})).await;

    let (status, list) = dormant.api(Method::GET, "/v1/nodes", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let nodes = list["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{list}");
    let node = &nodes[0];
    assert_eq!(node["name"], dormant.node.as_str(), "{list}");
    assert_eq!(node["advertise_addr"], "node-a.internal:9999", "{list}");
    assert_eq!(node["this_node"], true, "{list}");
    assert_eq!(node["live"], true, "{list}");
    let held: i64 = node["containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|count| count.as_i64().unwrap())
        .sum();
    assert_eq!(held, 1, "{list}");

    let (status, body) = dormant
        .api_raw(
            Method::GET,
            "/v1/nodes",
            Some("not-the-token"),
            Bytes::new(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:?}");

    let table = ok(
        client(&dormant, &dormant.token, &["node", "ls"]),
        "dormant node ls",
    );
    assert!(
        table.contains(&format!("{} (this)", dormant.node)) && table.contains("live"),
        "{table}"
    );
}
