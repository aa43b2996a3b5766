//! Containers are hardened by default, as Docker records it and as the
//! process inside sees it; and from inside a container, dormant's API, the
//! host's loopback services and other containers (another tenant's on a
//! network of their own) are out of reach.

mod common;

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::{docker_lines, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// The demo image as this worktree builds it, under a tag of its own: the
/// `/connect` probe must be there even while another test run rebuilds
/// `dormant-demo:latest` from older sources.
const IMAGE: &str = "dormant-demo:hardening";

fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO_BIN_EXE_dormant"))
            .args(["demo-image", "--tag", IMAGE])
            .stdout(Stdio::null())
            .status()
            .expect("run dormant demo-image");
        assert!(status.success(), "dormant demo-image failed");
    });
    IMAGE
}

/// `docker inspect` of `dormant-<name>`, as JSON.
fn inspect(name: &str) -> Value {
    let lines = docker_lines(&[
        "inspect",
        "--format",
        "{{json .}}",
        &format!("dormant-{name}"),
    ]);
    serde_json::from_str(&lines[0]).unwrap()
}

fn docker_info(field: &str) -> String {
    docker_lines(&["info", "--format", &format!("{{{{.{field}}}}}")]).join("")
}

/// Capability bits (`linux/capability.h`) of the six every container loses.
const DROPPED_BITS: [(&str, u32); 6] = [
    ("SETPCAP", 8),
    ("NET_RAW", 13),
    ("SYS_CHROOT", 18),
    ("MKNOD", 27),
    ("AUDIT_WRITE", 29),
    ("SETFCAP", 31),
];

/// A field of `/proc/self/status` of the app inside container `name`.
async fn proc_status(dormant: &Dormant, name: &str, field: &str) -> String {
    let (status, body) = dormant.get(name, "/files/proc/self/status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status:\n{body}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn containers_are_created_hardened() {
    let dormant = Dormant::start_with(&[
        "--allowed-capabilities",
        "NET_RAW",
        "--pids-limit",
        "500",
        "--log-max-size",
        "5m",
        "--log-max-files",
        "2",
    ]);
    let plain = unique("hard");
    let with_raw = unique("hard");
    let image = image();
    dormant
        .create(json!({"image": image, "name": plain, "memory": "64m"}))
        .await;
    let created = dormant
        .create(json!({"image": image, "name": with_raw, "cap_add": ["net_raw"]}))
        .await;
    assert_eq!(created[0]["cap_add"], json!(["NET_RAW"]));

    let host = inspect(&plain)["HostConfig"].clone();
    println!(
        "docker inspect dormant-{plain}: CapDrop={} CapAdd={} PidsLimit={} LogConfig={} Memory={} MemorySwap={} SecurityOpt={}",
        host["CapDrop"], host["CapAdd"], host["PidsLimit"], host["LogConfig"], host["Memory"], host["MemorySwap"], host["SecurityOpt"]
    );
    let cap_drop: Vec<&str> = host["CapDrop"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for (cap, _) in DROPPED_BITS {
        assert!(cap_drop.contains(&cap), "{cap} not dropped: {cap_drop:?}");
    }
    assert_eq!(host["CapAdd"], Value::Null);
    assert_eq!(host["PidsLimit"], 500);
    assert!(host["SecurityOpt"]
        .as_array()
        .unwrap()
        .contains(&json!("no-new-privileges")));
    assert_eq!(host["Memory"], 64 << 20);
    // Swap equal to memory: no swap at all. Where the kernel cannot limit
    // swap, Docker drops the setting (-1) and says so.
    let allowed_swap = if docker_info("SwapLimit") == "true" {
        vec![json!(64 << 20)]
    } else {
        vec![json!(64 << 20), json!(-1)]
    };
    assert!(
        allowed_swap.contains(&host["MemorySwap"]),
        "MemorySwap {} allows swap beyond the memory limit",
        host["MemorySwap"]
    );
    match docker_info("LoggingDriver").as_str() {
        driver @ ("json-file" | "local") => {
            assert_eq!(host["LogConfig"]["Type"], driver);
            assert_eq!(
                host["LogConfig"]["Config"]["max-size"],
                (5u64 << 20).to_string()
            );
            assert_eq!(host["LogConfig"]["Config"]["max-file"], "2");
        }
        other => println!("Docker logs through `{other}`: dormant leaves it alone"),
    }

    let host = inspect(&with_raw)["HostConfig"].clone();
    assert_eq!(host["CapAdd"], json!(["NET_RAW"]));
    assert!(!host["CapDrop"]
        .as_array()
        .unwrap()
        .contains(&json!("NET_RAW")));

    // What the app inside really holds.
    let bounding = |hex: &str| u64::from_str_radix(hex, 16).unwrap();
    let plain_caps = bounding(&proc_status(&dormant, &plain, "CapBnd").await);
    for (cap, bit) in DROPPED_BITS {
        assert_eq!(
            plain_caps & (1 << bit),
            0,
            "{cap} still in the bounding set"
        );
    }
    assert_eq!(proc_status(&dormant, &plain, "NoNewPrivs").await, "1");
    let raw_caps = bounding(&proc_status(&dormant, &with_raw, "CapBnd").await);
    assert_ne!(raw_caps & (1 << 13), 0, "NET_RAW was not added back");
}

#[tokio::test]
async fn a_capability_outside_the_allow_list_is_refused() {
    let dormant = Dormant::start_with(&["--allowed-capabilities", "NET_RAW"]);
    let name = unique("hard");
    let (status, body) = dormant
        .api(
            Method::POST,
            "/v1/containers",
            Some(json!({"image": image(), "name": name, "cap_add": ["NET_RAW", "SYS_ADMIN"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cap_add") && message.contains("SYS_ADMIN") && message.contains("NET_RAW"),
        "{message}"
    );
    dormant.assert_nothing_left("after a refused cap_add").await;
}

/// A field of `dormant-<name>`'s (only) network endpoint, e.g. `Gateway`.
fn network_field(name: &str, field: &str) -> String {
    inspect(name)["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .values()
        .find_map(|endpoint| endpoint[field].as_str().filter(|v| !v.is_empty()))
        .unwrap()
        .to_owned()
}

/// What `GET /connect?addr=...` inside container `name` saw.
async fn reach(dormant: &Dormant, name: &str, addr: &str) -> String {
    let (status, body) = dormant.get(name, &format!("/connect?addr={addr}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    seen["result"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn on_its_network_a_container_reaches_neither_dormant_nor_the_host_nor_its_neighbours() {
    isolated_with_upstream("network").await;
}

#[tokio::test]
async fn with_published_ports_a_container_reaches_neither_dormant_nor_the_host_nor_its_neighbours()
{
    isolated_with_upstream("published").await;
}

/// From inside a container, with the proxy reaching containers `upstream`
/// (`network` or `published`): only its own app answers.
async fn isolated_with_upstream(upstream: &str) {
    let dormant = Dormant::start_with(&["--upstream", upstream]);
    let (inside, neighbour) = (unique("iso"), unique("iso"));
    for name in [&inside, &neighbour] {
        dormant
            .create(json!({"image": image(), "name": name}))
            .await;
    }
    let gateway = network_field(&inside, "Gateway");
    let neighbour_ip = network_field(&neighbour, "IPAddress");
    // A service on the host's loopback, as a database or an agent would be.
    let loopback_service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let loopback_port = loopback_service.local_addr().unwrap().port();

    // The probe works: the container reaches its own app.
    assert_eq!(
        reach(&dormant, &inside, "127.0.0.1:8080").await,
        "connected"
    );
    let targets = [
        ("the other container", format!("{neighbour_ip}:8080")),
        ("dormant's API", format!("{gateway}:{}", dormant.api.port())),
        (
            "dormant's proxy",
            format!("{gateway}:{}", dormant.proxy.port()),
        ),
        (
            "a host loopback service",
            format!("{gateway}:{loopback_port}"),
        ),
    ];
    for (what, addr) in &targets {
        let seen = reach(&dormant, &inside, addr).await;
        println!("--upstream {upstream}: {what} at {addr}: {seen}");
        assert_ne!(seen, "connected", "the container reached {what} at {addr}");
    }
    drop(loopback_service);
}

/// Makes tenant `id`; returns its API token.
async fn make_tenant(dormant: &Dormant, id: &str) -> String {
    let (status, body) = dormant
        .api(Method::POST, "/v1/tenants", Some(json!({ "id": id })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"]["token"].as_str().unwrap().to_owned()
}

/// The address of `dormant-<name>` on its (only) network, and that network's name.
fn address_and_network(name: &str) -> (String, String) {
    let networks = inspect(name)["NetworkSettings"]["Networks"].clone();
    let (network, endpoint) = networks.as_object().unwrap().iter().next().unwrap();
    let ip = endpoint["IPAddress"].as_str().unwrap().to_owned();
    (ip, network.clone())
}

#[tokio::test]
async fn a_tenants_container_reaches_no_other_tenants_container() {
    let (tenant_a, tenant_b) = (unique("ta"), unique("tb"));
    let dormant = Dormant::start_with(&["--upstream", "network"]);
    let (inside, other, admins) = (unique("iso"), unique("iso"), unique("iso"));
    for (tenant, name) in [(&tenant_a, &inside), (&tenant_b, &other)] {
        let token = make_tenant(&dormant, tenant).await;
        let body = json!({"image": image(), "name": name}).to_string();
        let (status, created) = dormant
            .api_raw(Method::POST, "/v1/containers", Some(&token), body.into())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }
    dormant
        .create(json!({"image": image(), "name": admins}))
        .await;

    let (_, inside_network) = address_and_network(&inside);
    let (other_ip, other_network) = address_and_network(&other);
    let (admins_ip, admins_network) = address_and_network(&admins);
    assert!(
        inside_network.ends_with(&format!("-t-{tenant_a}")),
        "{inside_network}"
    );
    assert!(
        other_network.ends_with(&format!("-t-{tenant_b}")),
        "{other_network}"
    );
    assert_ne!(inside_network, admins_network);
    let gateway = network_field(&inside, "Gateway");
    let loopback_service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let loopback_port = loopback_service.local_addr().unwrap().port();

    // Both apps answer through the proxy, so a refusal below is isolation.
    assert_eq!(
        reach(&dormant, &inside, "127.0.0.1:8080").await,
        "connected"
    );
    assert_eq!(reach(&dormant, &other, "127.0.0.1:8080").await, "connected");
    let targets = [
        ("tenant B's container", format!("{other_ip}:8080")),
        ("the admin's container", format!("{admins_ip}:8080")),
        ("dormant's API", format!("{gateway}:{}", dormant.api.port())),
        (
            "a host loopback service",
            format!("{gateway}:{loopback_port}"),
        ),
    ];
    for (what, addr) in &targets {
        let seen = reach(&dormant, &inside, addr).await;
        println!("tenant A's container: {what} at {addr}: {seen}");
        assert_ne!(
            seen, "connected",
            "tenant A's container reached {what} at {addr}"
        );
    }
    drop(loopback_service);

    // A tenant that is gone leaves no network behind.
    let (status, body) = dormant
        .api(Method::DELETE, &format!("/v1/containers/{other}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = dormant
        .api(Method::DELETE, &format!("/v1/tenants/{tenant_b}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let left = docker_lines(&[
        "network",
        "ls",
        "--quiet",
        "--filter",
        &format!("name={other_network}"),
    ]);
    assert!(
        left.is_empty(),
        "tenant B's network {other_network} is still there"
    );
}
