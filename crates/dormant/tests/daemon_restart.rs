//! Docker hiccups while dormant runs or starts. A real daemon restart, clean
//! or after a crash (when no event of its containers' end reaches dormant):
//! each container's state is true again within seconds of the daemon being
//! back, and the next request wakes it; dormant started before its daemon
//! waits for it. And start-up survives a Docker removal that keeps failing.
//!
//! The daemon restarted is a private `dockerd` this test starts, beside the
//! machine's own (which other tests use meanwhile): its own data root, exec
//! root, pid file, socket and address pool, no iptables rules, no default
//! bridge, the `vfs` storage driver (works on any filesystem) and an empty
//! config file (so the machine's `daemon.json` is not read). It is stopped and
//! its directories removed when the test ends, however it ends.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{demo_image, eventually, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::json;

/// How long the private daemon may take to answer after it is started.
const DAEMON_START_LIMIT: Duration = Duration::from_secs(60);
/// How long it may take to stop (it stops its containers first).
const DAEMON_STOP_LIMIT: Duration = Duration::from_secs(30);

/// A `dockerd` of the test's own.
struct PrivateDockerd {
    dir: PathBuf,
    /// `unix:///tmp/...sock`
    host: String,
    /// `10.x.y.0/24`: the one subnet its networks may use.
    pool: String,
    child: Option<Child>,
}

impl PrivateDockerd {
    /// Makes its directories; `spawn` starts it.
    fn prepare() -> Self {
        let dir = std::env::temp_dir().join(unique("dkr"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let host = format!("unix://{}", dir.join("docker.sock").display());
        Self {
            pool: free_subnet(),
            dir,
            host,
            child: None,
        }
    }

    /// Starts the daemon and waits until it answers.
    fn spawn(&mut self) {
        if let Err(why) = self.try_spawn() {
            panic!("{why}; its log:\n{}", self.log());
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "the private dockerd already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .map_err(|e| format!("cannot open dockerd.log: {e}"))?;
        let path = |name: &str| self.dir.join(name).display().to_string();
        let child = Command::new("dockerd")
            .args(["--config-file", &path("daemon.json")])
            .args(["--data-root", &path("data"), "--exec-root", &path("exec")])
            .args(["--pidfile", &path("dockerd.pid"), "-H", &self.host])
            .args(["--storage-driver", "vfs", "--bridge", "none"])
            .args(["--iptables=false", "--ip6tables=false", "--ip-masq=false"])
            .args(["--ip-forward=false"])
            .args([
                "--default-address-pool",
                &format!("base={},size=24", self.pool),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start dockerd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + DAEMON_START_LIMIT;
        while !self.docker(&["info"]).status.success() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "the private dockerd did not answer in {DAEMON_START_LIMIT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// SIGKILL, as a crash: its containerd dies with it, the shims and so
    /// the containers live on until the next start stops them.
    fn crash(&mut self) {
        let containerd = std::fs::read_to_string(self.dir.join("exec/containerd/containerd.pid"))
            .expect("its containerd's pid file");
        let mut child = self.child.take().expect("the private dockerd runs");
        child.kill().unwrap();
        child.wait().unwrap();
        // A start while the old containerd is still dying would adopt it
        // and time out; a service manager's restart delay is longer.
        let deadline = Instant::now() + DAEMON_STOP_LIMIT;
        while Path::new(&format!("/proc/{}", containerd.trim())).exists() {
            assert!(Instant::now() < deadline, "its containerd outlived it");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, as `systemctl restart docker` does: it stops its containers
    /// and its containerd, then exits.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + DAEMON_STOP_LIMIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["-H", &self.host])
            .args(args)
            .output()
            .expect("run docker")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Ids of the processes whose command line names this daemon's
    /// directory (its containerd and shims) and of all their descendants
    /// (the containers' processes), descendants last.
    fn processes(&self) -> Vec<String> {
        let dir = self.dir.display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        // (pid, parent pid, command line) of every process.
        let all: Vec<(String, String, String)> = entries
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().into_string().ok()?;
                pid.parse::<u32>().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
                let parent = status
                    .lines()
                    .find_map(|line| line.strip_prefix("PPid:"))?
                    .trim()
                    .to_owned();
                Some((pid, parent, String::from_utf8_lossy(&cmdline).into_owned()))
            })
            .collect();
        let mut found: Vec<String> = all
            .iter()
            .filter(|(_, _, cmdline)| cmdline.contains(&dir))
            .map(|(pid, _, _)| pid.clone())
            .collect();
        let mut next = 0;
        while next < found.len() {
            let parent = found[next].clone();
            found.extend(
                all.iter()
                    .filter(|(_, ppid, _)| *ppid == parent)
                    .map(|(pid, _, _)| pid.clone()),
            );
            next += 1;
        }
        found
    }

    /// Deletes the bridge interfaces of its networks (they outlive the
    /// daemon): those with an address in its pool, which no one else uses.
    fn remove_bridges(&self) {
        let prefix = self.pool.trim_end_matches("0/24");
        let output = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output();
        let Ok(output) = output else { return };
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [_, interface, "inet", address, ..] = fields.as_slice() {
                if address.starts_with(prefix) {
                    let _ = Command::new("ip")
                        .args(["link", "delete", interface])
                        .status();
                }
            }
        }
    }

    /// Whether the daemon says container `dormant-<name>` runs.
    fn running(&self, name: &str) -> bool {
        let output = self.docker(&[
            "inspect",
            "-f",
            "{{.State.Running}}",
            &format!("dormant-{name}"),
        ]);
        String::from_utf8_lossy(&output.stdout).trim() == "true"
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- private dockerd log ----\n{}", self.log());
        }
        // After a crash its containers may still run: a start stops them.
        if self.child.is_none() && !self.processes().is_empty() {
            let _ = self.try_spawn();
        }
        // While it answers: its containers and networks go (a network's
        // bridge interface would outlive the daemon).
        if self.child.is_some() {
            let ids = self.docker(&["ps", "-aq"]).stdout;
            let ids: Vec<String> = String::from_utf8_lossy(&ids)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.iter().map(String::as_str));
                let _ = self.docker(&args);
            }
            let _ = self.docker(&["network", "prune", "-f"]);
        }
        self.stop();
        // Whatever it started that is still there (its containerd, shims,
        // their containers) ends, each by its own id, containers first.
        for pid in self.processes().iter().rev() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        self.remove_bridges();
        unmount_below(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Unmounts whatever the daemon left mounted under `dir` (network namespaces,
/// layers), deepest first, so the directory can be removed.
fn unmount_below(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
}

/// A `10.x.y.0/24` that no route of this host overlaps.
fn free_subnet() -> String {
    let routes = Command::new("ip")
        .args(["-4", "route"])
        .output()
        .expect("run ip route")
        .stdout;
    let taken: Vec<(u32, u32)> = String::from_utf8_lossy(&routes)
        .lines()
        .filter_map(|line| {
            let (addr, len) = line.split_whitespace().next()?.split_once('/')?;
            let addr: std::net::Ipv4Addr = addr.parse().ok()?;
            let mask = u32::MAX
                .checked_shl(32 - len.parse::<u32>().ok()?)
                .unwrap_or(0);
            Some((u32::from(addr) & mask, mask))
        })
        .collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id();
    (0..256u32)
        .map(|i| {
            let n = seed.wrapping_add(i.wrapping_mul(7919));
            std::net::Ipv4Addr::new(10, 200 + (n % 50) as u8, (n >> 8) as u8, 0)
        })
        .find(|net| {
            let net = u32::from(*net);
            let mask = u32::MAX << 8;
            // Two prefixes overlap when either contains the other.
            taken
                .iter()
                .all(|&(route, route_mask)| net & route_mask != route && route & mask != net)
        })
        .map(|net| format!("{net}/24"))
        .expect("no free 10.x.y.0/24 for the private dockerd")
}

async fn state(dormant: &Dormant, name: &str) -> (String, String) {
    let (status, body) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["state"].as_str().unwrap_or_default().to_owned(),
        body["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Waits until dormant shows `name` asleep; returns how long that took and
/// the reason it gives.
async fn until_asleep(dormant: &Dormant, name: &str) -> (Duration, String) {
    let since = Instant::now();
    let asleep = eventually(Duration::from_secs(30), async || {
        state(dormant, name).await.0 == "asleep"
    })
    .await;
    let took = since.elapsed();
    let (state_now, reason) = state(dormant, name).await;
    assert!(
        asleep,
        "still `{state_now}` 30 s after the daemon came back; log:\n{}",
        dormant.log()
    );
    (took, reason)
}

/// The next request wakes `name` on the daemon that came back.
async fn wakes_on_request(dormant: &Dormant, daemon: &PrivateDockerd, name: &str) {
    let (status, body) = dormant.get(name, "/").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the next request did not wake it: {body}"
    );
    assert_eq!(state(dormant, name).await.0, "running");
    assert!(daemon.running(name));
}

#[tokio::test]
async fn a_daemon_restart_leaves_every_state_true() {
    let began = Instant::now();
    let mut daemon = PrivateDockerd::prepare();
    let host = daemon.host.clone();

    // dormant starts before its daemon answers, and waits for it.
    let dormant_args = [
        "--docker-host".to_owned(),
        host.clone(),
        "--upstream".to_owned(),
        "network".to_owned(),
        "--network".to_owned(),
        "dormant-restart-test".to_owned(),
    ];
    let starting = std::thread::spawn(move || {
        let args: Vec<&str> = dormant_args.iter().map(String::as_str).collect();
        Dormant::start_with(&args)
    });
    std::thread::sleep(Duration::from_secs(2));
    daemon.spawn();
    let dormant = starting
        .join()
        .expect("dormant started once its daemon answered");
    assert!(
        dormant
            .log()
            .contains("Docker does not answer yet; waiting for it"),
        "dormant did not say it waited:\n{}",
        dormant.log()
    );

    let image = "dormant-demo:restart-test";
    let built = common::dormant_command()
        .args(["demo-image", "--tag", image, "--docker-host", &host])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        built.success(),
        "dormant demo-image into the private dockerd failed"
    );
    let name = unique("restart");
    dormant.create(json!({"image": image, "name": name})).await;
    assert_eq!(dormant.get(&name, "/").await.0, StatusCode::OK);

    // A clean restart: the daemon stops its containers, then exits.
    daemon.stop();
    daemon.spawn();
    assert!(
        !daemon.running(&name),
        "the restart left the container running"
    );
    let (took, reason) = until_asleep(&dormant, &name).await;
    println!("clean restart: asleep {took:?} after the daemon answered again ({reason})");
    wakes_on_request(&dormant, &daemon, &name).await;

    // A crash: the container outlives the daemon until its next start stops
    // it, and no event of that reaches the stream that was open.
    daemon.crash();
    assert_eq!(dormant.get(&name, "/").await.0, StatusCode::OK);
    daemon.spawn();
    assert!(
        !daemon.running(&name),
        "the restart left the container running"
    );
    let (took, reason) = until_asleep(&dormant, &name).await;
    println!("crash and restart: asleep {took:?} after the daemon answered again ({reason})");
    wakes_on_request(&dormant, &daemon, &name).await;

    println!("whole test: {:?}", began.elapsed());
}

/// A container made outside dormant that holds a volume, so Docker refuses
/// to remove that volume (409: in use); removed when dropped.
struct VolumeBlocker(String);

impl VolumeBlocker {
    fn hold(volume: &str) -> Self {
        let name = unique("blocker");
        let created = Command::new("docker")
            .args(["create", "--name", &name, "-v", &format!("{volume}:/data")])
            .arg(demo_image())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(created.success(), "docker create {name}");
        Self(name)
    }
}

impl Drop for VolumeBlocker {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.0])
            .stdout(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn start_up_survives_a_removal_docker_refuses() {
    let mut dormant = Dormant::start();
    let name = unique("settle");
    dormant
        .create(json!({"image": demo_image(), "name": name, "volumes": ["/data"]}))
        .await;
    for path in ["/files/data/v.txt", "/files/home/u/a.txt"] {
        let (status, _) = dormant
            .proxy_request(Method::PUT, &name, path, "kept".into())
            .await;
        assert!(status.is_success(), "{path}: {status}");
    }

    // An archive cut short once its snapshot is recorded: the next start
    // finishes it, removing the container and its volume...
    dormant.kill();
    dormant.set_env("DORMANT_FAULT_POINT", Some("archive-after-snapshot-record"));
    dormant.restart();
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        common::raw_post(
            dormant.api,
            &format!("/v1/containers/{name}/archive"),
            "test-token",
        ),
    )
    .await;
    assert!(
        !dormant.wait_aborted().success(),
        "dormant did not stop at its fault point"
    );
    // ...which Docker refuses now, and keeps refusing.
    let blocker = VolumeBlocker::hold(&format!("dormant-{name}-v0"));
    dormant.set_env("DORMANT_FAULT_POINT", None);
    dormant.restart();
    assert!(
        dormant
            .log()
            .contains("cannot remove its Docker container yet"),
        "{}",
        dormant.log()
    );
    // The snapshot is the only whole copy now (Docker removed the
    // container, not its volume): anything but archived would lose the
    // container's own files.
    let (state, _) = state(&dormant, &name).await;
    assert_eq!(state, "archived");

    // Once Docker lets go, the next start removes what an archive left.
    drop(blocker);
    dormant.kill_and_restart();
    assert_eq!(
        dormant.docker_volumes(),
        Vec::<String>::new(),
        "the volume was left"
    );
    // Nothing the user wrote is lost: neither in the volume nor in the
    // container's own layer.
    for path in ["/files/data/v.txt", "/files/home/u/a.txt"] {
        let (status, body) = dormant.get(&name, path).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "kept"), "{path}");
    }
}
