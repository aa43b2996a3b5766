//! What a tenant is: an id chosen by the admin, and the quotas its
//! containers live within. `QuotaBook` is the in-memory copy lifecycle
//! reads on every create and start; the API keeps it in step with the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// The owner of containers made with the admin token. Reserved: no tenant
/// may take this id.
pub const ADMIN: &str = "admin";

/// Longest tenant id.
pub const MAX_ID_LEN: usize = 32;

/// Checks a tenant id: a DNS-label-like name `[a-z0-9]([a-z0-9-]*[a-z0-9])?`
/// of 1..=32 characters, and not `admin`.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("must be 1 to {MAX_ID_LEN} characters long"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !id.chars().all(allowed) || id.starts_with('-') || id.ends_with('-') {
        return Err("must be lowercase letters, digits and inner hyphens, like a DNS label".into());
    }
    if id == ADMIN {
        return Err("`admin` is reserved for the admin".into());
    }
    Ok(())
}

/// A tenant's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Containers it may have, whatever their state.
    pub max_containers: Option<u64>,
    /// Containers it may have running (or starting) at once.
    pub max_running: Option<u64>,
    /// Sum of the memory limits of its running containers.
    pub max_memory_bytes: Option<u64>,
    /// Disk its snapshots may take; past it, its containers stay asleep
    /// rather than being archived.
    pub max_snapshot_bytes: Option<u64>,
}

/// Every tenant's quotas, by tenant id. The admin is never in it, and so is
/// never limited. Cheap to clone; reads never wait on I/O.
#[derive(Debug, Clone, Default)]
pub struct QuotaBook(Arc<RwLock<HashMap<String, Quotas>>>);

impl QuotaBook {
    /// The quotas of `owner`, or `None` when it is unlimited.
    pub fn get(&self, owner: &str) -> Option<Quotas> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(owner)
            .copied()
    }

    pub fn set(&self, tenant: &str, quotas: Quotas) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_owned(), quotas);
    }

    pub fn remove(&self, tenant: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_dns_labels_and_admin_is_reserved() {
        assert!(check_id("acme").is_ok());
        assert!(check_id("a-1").is_ok());
        assert!(check_id(&"a".repeat(32)).is_ok());
        for bad in [
            "",
            "admin",
            "-a",
            "a-",
            "Acme",
            "a_b",
            "a.b",
            &"a".repeat(33),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_book_limits_only_the_tenants_in_it() {
        let book = QuotaBook::default();
        let quotas = Quotas {
            max_running: Some(2),
            ..Quotas::default()
        };
        book.set("acme", quotas);
        assert_eq!(book.get("acme"), Some(quotas));
        assert_eq!(book.get(ADMIN), None);
        book.remove("acme");
        assert_eq!(book.get("acme"), None);
    }
}
