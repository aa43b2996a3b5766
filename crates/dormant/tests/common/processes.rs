//! The machine's processes as /proc shows them: a process named for good by
//! its pid and start time, its children, and the PID namespace it is in.

use std::os::unix::fs::MetadataExt;

/// One process, even after its pid is reused (the start time differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    /// Clock ticks after boot.
    pub start: u64,
}

/// Child processes of `pid` (empty when it has none or is gone).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether `process` still runs.
pub fn still_runs(process: ProcessId) -> bool {
    read(process.pid).is_some_and(|p| p.id == process)
}

/// The PID namespace of `process` (the inode of /proc/PID/ns/pid), while it runs.
pub fn namespace(process: ProcessId) -> Option<u64> {
    read(process.pid)
        .filter(|p| p.id == process)
        .map(|p| p.pid_namespace)
}

/// The PID namespace of `pid` (the inode of /proc/PID/ns/pid).
pub fn pid_namespace(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

/// Every process in PID namespace `namespace` or in one below it: those
/// with an ancestor (or themselves) in it. A container's processes count:
/// their parent is a shim in the host's namespace.
pub fn in_namespace_tree(namespace: u64) -> Vec<ProcessId> {
    let table = table();
    let inside = |mut pid: u32| loop {
        let Some(process) = table.iter().find(|p| p.id.pid == pid) else {
            return false;
        };
        if process.pid_namespace == namespace {
            return true;
        }
        if process.parent <= 1 {
            return false;
        }
        pid = process.parent;
    };
    table
        .iter()
        .filter(|p| inside(p.id.pid))
        .map(|p| p.id)
        .collect()
}

struct Process {
    id: ProcessId,
    parent: u32,
    pid_namespace: u64,
}

fn table() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(read)
        .collect()
}

fn read(pid: u32) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state, parent, ...; the start
    // time is the 20th field from there (the 22nd of the line).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(Process {
        id: ProcessId {
            pid,
            start: fields.get(19)?.parse().ok()?,
        },
        parent: fields.get(1)?.parse().ok()?,
        pid_namespace: pid_namespace(pid)?,
    })
}
