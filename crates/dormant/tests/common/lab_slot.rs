//! A lab's slot (0-7): the number its names, subnet (10.77.S.0/24) and
//! directories come from, held with an exclusive `flock` for as long as the
//! lab lives.
//!
//! Concurrent test processes take different slots, so they never share a
//! name, a subnet or a directory. Names from a random run id would do that
//! too, but a run killed outright (SIGKILL, no `Drop`) would leave its
//! namespaces and daemons for ever; with slots the kernel drops a dead run's
//! lock, and whoever takes the slot next removes what is left of it before
//! using it (`lab.sh down`). A slot's names also stay within the kernel's 15
//! characters for an interface name.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};

/// Where the slots' locks and directories live.
pub const LAB_ROOT: &str = "/tmp/dormant-lab";
/// Slots 0-7 (what `lab.sh` accepts).
const SLOTS: u8 = 8;
/// Longest wait for a free slot (another test process holds each one).
const SLOT_WAIT: Duration = Duration::from_secs(600);

/// The first free slot and its lock (held while the file is open); waits
/// up to `SLOT_WAIT` while all are taken.
pub fn take_slot() -> (u8, File) {
    std::fs::create_dir_all(LAB_ROOT).unwrap_or_else(|e| panic!("create {LAB_ROOT}: {e}"));
    let deadline = Instant::now() + SLOT_WAIT;
    loop {
        for slot in 0..SLOTS {
            let path = Path::new(LAB_ROOT).join(format!("slot{slot}.lock"));
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
                return (slot, file);
            }
        }
        assert!(
            Instant::now() < deadline,
            "all {SLOTS} lab slots stayed taken for {SLOT_WAIT:?} (locks in {LAB_ROOT})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
