//! Linux capabilities: the ones every container loses, and the admin's
//! allow-list of those a create request may add back.

use std::fmt;
use std::str::FromStr;

/// Docker's default capabilities that no web workload needs and that help an
/// attacker: raw sockets (ARP/ICMP spoofing on the bridge), device nodes,
/// audit writes, file capabilities, changing capability sets and chroot.
/// Every container is created without them.
pub const DROPPED: [&str; 6] = [
    "NET_RAW",
    "MKNOD",
    "AUDIT_WRITE",
    "SETFCAP",
    "SETPCAP",
    "SYS_CHROOT",
];

/// Every Linux capability (as of Linux 6.x), without the `CAP_` prefix.
const KNOWN: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A capability's canonical name (`NET_RAW`) from how a person may write it
/// (`net_raw`, `CAP_NET_RAW`).
pub fn canonical(name: &str) -> Result<String, String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if KNOWN.contains(&bare) {
        Ok(bare.to_owned())
    } else {
        Err(format!(
            "`{name}` is not a Linux capability (write it as e.g. `NET_BIND_SERVICE`)"
        ))
    }
}

/// `--allowed-capabilities`: what a create request may add back. Empty by
/// default: containers get no capability beyond Docker's defaults minus
/// [`DROPPED`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedCapabilities(Vec<String>);

impl AllowedCapabilities {
    pub fn allows(&self, capability: &str) -> bool {
        self.0.iter().any(|c| c == capability)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for AllowedCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// A comma-separated list (`NET_RAW,SYS_PTRACE`); empty allows nothing.
impl FromStr for AllowedCapabilities {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut allowed = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = canonical(name)?;
            if !allowed.contains(&name) {
                allowed.push(name);
            }
        }
        Ok(Self(allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_canonical_and_unknown_ones_refused() {
        assert_eq!(canonical("net_raw").unwrap(), "NET_RAW");
        assert_eq!(canonical("CAP_SYS_PTRACE").unwrap(), "SYS_PTRACE");
        assert!(canonical("ALL").is_err());
        assert!(canonical("NET_RAWR").is_err());
        assert!(DROPPED.iter().all(|c| canonical(c).is_ok()));
    }

    #[test]
    fn the_allow_list_parses_from_one_string() {
        let allowed: AllowedCapabilities = " net_raw, CAP_SYS_PTRACE ,NET_RAW".parse().unwrap();
        assert_eq!(allowed.to_string(), "NET_RAW,SYS_PTRACE");
        assert!(allowed.allows("SYS_PTRACE"));
        assert!(!allowed.allows("SYS_ADMIN"));
        assert!("".parse::<AllowedCapabilities>().unwrap().is_empty());
        assert!("NET_RAW,ALL".parse::<AllowedCapabilities>().is_err());
    }
}
