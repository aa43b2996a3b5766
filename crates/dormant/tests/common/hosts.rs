//! Several Docker hosts on this one machine, for the tests of dormant across
//! hosts: `Lab::start(n)` brings up n hosts (each its own network, PID, mount
//! and UTS namespaces, its own dockerd and address on a private bridge, the
//! demo image loaded), and dropping the lab removes all of it, even when the
//! test panics. The work is done by `tests/hosts/lab.sh`; names, addresses
//! and directories come from the lab's slot (see `lab_slot`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::lab_slot::{take_slot, LAB_ROOT};
use super::processes::{self, children, ProcessId};
use super::{demo_image, Dormant};

/// How long a host's dockerd may take to answer (a loaded machine; it takes
/// 0.3-1.5 s when quiet).
const HOST_START_LIMIT: Duration = Duration::from_secs(60);
/// How long a killed host's processes may take to be gone.
const HOST_KILL_LIMIT: Duration = Duration::from_secs(15);

/// Why this machine cannot run a lab (so the test skips), or `None`. Only
/// these are reasons to skip: anything else missing fails the test.
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root: network namespaces need root".into());
    }
    if !on_path("ip") {
        return Some("no `ip` command (Debian package iproute2)".into());
    }
    None
}

/// A few Docker hosts on a private network. Host numbers start at 1.
pub struct Lab {
    slot: u8,
    /// The slot's lock: held (flock) as long as the file is open.
    _lock: File,
    hosts: Vec<Host>,
}

/// One host: the `lab.sh host` process, whose child is the host's PID 1.
struct Host {
    child: Option<Child>,
    /// Its PID namespace (the inode of /proc/PID/ns/pid of its PID 1).
    pid_namespace: u64,
}

impl Lab {
    /// Brings up `n` hosts (1-9) on their network, each with a dockerd that
    /// answers and has the demo image. Panics saying what is missing or what
    /// failed.
    pub fn start(n: usize) -> Self {
        assert!((1..=9).contains(&n), "a lab has 1-9 hosts, not {n}");
        for (program, package) in [
            ("unshare", "util-linux"),
            ("nsenter", "util-linux"),
            ("dockerd", "docker.io"),
        ] {
            assert!(
                on_path(program),
                "the lab needs `{program}`: install Debian's {package}"
            );
        }
        assert!(
            on_path("docker-init") || on_path("tini"),
            "the lab needs `docker-init` (Debian's docker.io) or `tini` (Debian's tini)"
        );
        let image = demo_image();
        let (slot, lock) = take_slot();
        let mut lab = Self {
            slot,
            _lock: lock,
            hosts: Vec::new(),
        };
        let started = Instant::now();
        lab.script(&["down"]);
        lab.script(&["up", &n.to_string()]);
        let network = started.elapsed();
        for i in 1..=n {
            lab.hosts.push(Host {
                child: None,
                pid_namespace: 0,
            });
            lab.spawn_host(i);
        }
        for i in 1..=n {
            lab.wait_host(i);
        }
        let daemons = started.elapsed();
        lab.load_image(image);
        let ms = |d: Duration| d.as_millis();
        eprintln!(
            "lab: slot {slot}, {n} hosts up in {} ms (network {} ms, daemons {} ms, \
             {image} loaded {} ms)",
            ms(started.elapsed()),
            ms(network),
            ms(daemons - network),
            ms(started.elapsed() - daemons)
        );
        lab
    }

    /// Host `i`'s Docker endpoint (for `docker -H` or bollard).
    pub fn docker(&self, i: usize) -> String {
        format!("unix://{}", self.dir(i).join("docker.sock").display())
    }

    /// Host `i`'s address on the lab's network (the machine is `.1`).
    pub fn address(&self, i: usize) -> IpAddr {
        self.host(i);
        IpAddr::V4(Ipv4Addr::new(10, 77, self.slot, 10 + i as u8))
    }

    /// The machine's own address on the lab's network.
    pub fn machine_address(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, self.slot, 1))
    }

    /// Host `i`'s directory (its dockerd's data, a place for its dormant's).
    pub fn dir(&self, i: usize) -> PathBuf {
        self.host(i);
        Path::new(LAB_ROOT)
            .join(self.slot.to_string())
            .join(format!("h{i}"))
    }

    /// Runs the docker CLI against host `i`; its non-empty output lines.
    pub fn docker_lines(&self, i: usize, args: &[&str]) -> Vec<String> {
        super::docker_lines(&[&["-H", self.docker(i).as_str()], args].concat())
    }

    /// A command that runs `program` inside host `i` (all its namespaces):
    /// killing the host kills the process too, as on a real host.
    pub fn run_in(&self, i: usize, program: impl AsRef<OsStr>) -> Command {
        let nsenter = self.nsenter(i);
        let mut command = Command::new(&nsenter[0]);
        command.args(&nsenter[1..]).arg(program);
        command
    }

    /// `nsenter` and its arguments that enter host `i`; the program follows.
    fn nsenter(&self, i: usize) -> Vec<OsString> {
        let init = self.init(i).to_string();
        ["nsenter", "-t", &init, "-n", "-p", "-m", "-u", "--"]
            .map(OsString::from)
            .into()
    }

    /// Starts dormant inside host `i` with extra `serve` flags: data under
    /// the host's directory, host `i`'s daemon, the API and the proxy on
    /// the host's address (ephemeral ports), reachable from the machine.
    pub fn dormant(&self, i: usize, extra_args: &[&str]) -> Dormant {
        let data_dir = self.dir(i).join("dormant");
        let mut dormant = Dormant::prepare(data_dir, extra_args, &[]);
        dormant.launcher = self.nsenter(i);
        dormant.listen = self.address(i);
        dormant.docker_host = Some(self.docker(i));
        dormant.spawn();
        dormant
    }

    /// Points `dormant` (stopped) at host `i` again, after a host restart
    /// gave the host a new PID 1; `dormant.restart()` then starts it there.
    pub fn rehome(&self, i: usize, dormant: &mut Dormant) {
        dormant.launcher = self.nsenter(i);
    }

    /// SIGKILL to host `i`'s PID 1, as a power cut: the kernel ends every
    /// process in it (dockerd, containerd, shims, containers, whatever
    /// `run_in` started). Returns once they are all gone.
    pub fn kill(&mut self, i: usize) {
        let init = self.init(i);
        let pid = rustix::process::Pid::from_raw(init as i32).expect("PID 1's pid");
        rustix::process::kill_process(pid, rustix::process::Signal::KILL)
            .unwrap_or_else(|e| panic!("SIGKILL to host {i}'s PID 1 ({init}): {e}"));
        let mut child = self.hosts[i - 1].child.take().expect("the host runs");
        let deadline = Instant::now() + HOST_KILL_LIMIT;
        while child.try_wait().expect("wait for the host").is_none() {
            assert!(
                Instant::now() < deadline,
                "host {i} still runs {HOST_KILL_LIMIT:?} after SIGKILL to its PID 1"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        while !self.processes(i).is_empty() {
            assert!(
                Instant::now() < deadline,
                "host {i}'s processes outlived its PID 1 by {HOST_KILL_LIMIT:?}: {:?}",
                self.processes(i)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts host `i` again (killing it first if it runs), as a reboot: same
    /// disk, empty /run; its daemon answers when this returns.
    pub fn restart(&mut self, i: usize) {
        if self.hosts[i - 1].child.is_some() {
            self.kill(i);
        }
        self.spawn_host(i);
        self.wait_host(i);
    }

    /// Unplugs host `i` from the network: packets to and from it are dropped
    /// (nothing answers, nothing is refused), as with a cut cable.
    pub fn cut(&self, i: usize) {
        self.host(i);
        self.script(&["cut", &i.to_string()]);
    }

    /// Plugs host `i` back in.
    pub fn heal(&self, i: usize) {
        self.host(i);
        self.script(&["heal", &i.to_string()]);
    }

    /// Every process of host `i` as the machine sees it (its PID 1 and all
    /// below it, containers included). Empty once the host is dead.
    pub fn processes(&self, i: usize) -> Vec<ProcessId> {
        processes::in_namespace_tree(self.host(i).pid_namespace)
    }

    /// Whether `process` of host `i` lives in a PID namespace below the
    /// host's own (a container's).
    pub fn in_container(&self, i: usize, process: ProcessId) -> bool {
        processes::namespace(process).is_some_and(|ns| ns != self.host(i).pid_namespace)
    }

    fn host(&self, i: usize) -> &Host {
        assert!(
            (1..=self.hosts.len()).contains(&i),
            "the lab has hosts 1-{}, not {i}",
            self.hosts.len()
        );
        &self.hosts[i - 1]
    }

    /// Host `i`'s PID 1 (docker-init), the only child of `lab.sh host`.
    fn init(&self, i: usize) -> u32 {
        let child = self.host(i).child.as_ref();
        let child = child.unwrap_or_else(|| panic!("host {i} is not running (killed?)"));
        children(child.id())
            .first()
            .copied()
            .unwrap_or_else(|| panic!("host {i} has no PID 1 yet"))
    }

    fn spawn_host(&mut self, i: usize) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap_or_else(|e| panic!("host {i}'s log: {e}"));
        let child = Command::new(script())
            .args(["host", &self.slot.to_string(), &i.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log's handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start host {i} with lab.sh: {e}"));
        self.hosts[i - 1].child = Some(child);
    }

    /// Waits until host `i`'s dockerd answers; notes its PID namespace.
    fn wait_host(&mut self, i: usize) {
        let deadline = Instant::now() + HOST_START_LIMIT;
        loop {
            let child = self.hosts[i - 1].child.as_mut().expect("host started");
            if let Some(status) = child.try_wait().expect("wait for the host") {
                panic!(
                    "host {i} ended ({status}) before its dockerd answered; its log:\n{}",
                    self.log(i)
                );
            }
            let answers = Command::new("docker")
                .args(["-H", &self.docker(i), "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answers {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "host {i}'s dockerd did not answer in {HOST_START_LIMIT:?}; its log:\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let init = self.init(i);
        self.hosts[i - 1].pid_namespace = processes::pid_namespace(init)
            .unwrap_or_else(|| panic!("host {i}'s PID 1 ({init}) has no PID namespace"));
    }

    /// `docker save` once, `docker load` into every host at once: never a pull.
    fn load_image(&self, image: &str) {
        let archive = Path::new(LAB_ROOT)
            .join(self.slot.to_string())
            .join("image.tar");
        let saved = Command::new("docker")
            .args(["save", "-o"])
            .arg(&archive)
            .arg(image)
            .output()
            .expect("run docker save");
        assert!(
            saved.status.success(),
            "docker save {image}: {}",
            String::from_utf8_lossy(&saved.stderr)
        );
        let loads: Vec<_> = (1..=self.hosts.len())
            .map(|i| {
                let child = Command::new("docker")
                    .args(["-H", &self.docker(i), "load", "-q", "-i"])
                    .arg(&archive)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run docker load");
                (i, child)
            })
            .collect();
        for (i, child) in loads {
            let output = child.wait_with_output().expect("wait for docker load");
            assert!(
                output.status.success(),
                "docker load of {image} into host {i}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let _ = std::fs::remove_file(&archive);
    }

    fn log_path(&self, i: usize) -> PathBuf {
        Path::new(LAB_ROOT)
            .join(self.slot.to_string())
            .join(format!("h{i}.log"))
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Runs `lab.sh COMMAND SLOT ARGS...`; panics with its output on failure.
    fn script(&self, args: &[&str]) {
        let slot = self.slot.to_string();
        let mut all = vec![args[0], slot.as_str()];
        all.extend(&args[1..]);
        let output = Command::new(script())
            .args(&all)
            .output()
            .unwrap_or_else(|e| panic!("run lab.sh {all:?}: {e}"));
        assert!(
            output.status.success(),
            "lab.sh {all:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let started = Instant::now();
        if std::thread::panicking() {
            for i in 1..=self.hosts.len() {
                let log = self.log(i);
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("---- lab host {i}'s log (last lines) ----");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        // PID 1s first (each takes its host down at once), then `down`
        // removes the rest: namespaces, links, cgroups, files.
        for host in &mut self.hosts {
            if let Some(child) = &host.child {
                if let Some(init) = children(child.id()).first() {
                    if let Some(pid) = rustix::process::Pid::from_raw(*init as i32) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
        }
        for host in &mut self.hosts {
            if let Some(mut child) = host.child.take() {
                let deadline = Instant::now() + HOST_KILL_LIMIT;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let down = Command::new(script())
            .args(["down", &self.slot.to_string()])
            .output();
        match down {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "lab: `lab.sh down {}` failed; run it by hand: {}",
                self.slot,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => eprintln!("lab: cannot run lab.sh down {}: {e}", self.slot),
        }
        eprintln!(
            "lab: slot {} torn down in {} ms",
            self.slot,
            started.elapsed().as_millis()
        );
    }
}

/// `tests/hosts/lab.sh` of this source tree.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hosts/lab.sh")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
