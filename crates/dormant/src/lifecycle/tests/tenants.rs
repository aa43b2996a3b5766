//! Tenants' quotas: creates past `max_containers` or a container larger than
//! `max_memory_bytes` are refused (403) leaving nothing behind; a start past
//! `max_running` or `max_memory_bytes` puts the tenant's own least recently
//! active container to sleep, never another tenant's or the admin's; when
//! none of its own can be put to sleep, the start is refused (429 with
//! `Retry-After`) and the container stays asleep. Past `max_snapshot_bytes`
//! its containers stay asleep instead of being archived. The admin is
//! unlimited.

use std::sync::Arc;
use std::time::Duration;

use super::harness::*;
use crate::error_kind::ErrorKind;
use crate::lifecycle::LifecycleError;
use crate::proxy::waker::WakeErrorKind;
use crate::tenant::Quotas;

fn limit(h: &Harness, tenant: &str, quotas: Quotas) {
    h.lifecycle().quotas().set(tenant, quotas);
}

async fn running_as(h: &Harness, tenant: &str, name: &str) {
    h.create_with(&[name], |spec| spec.owner = tenant.into())
        .await
        .unwrap_or_else(|e| panic!("create {name} for {tenant}: {e}"));
    assert_eq!(h.state(name), Running);
}

fn max_running(n: u64) -> Quotas {
    Quotas {
        max_running: Some(n),
        ..Quotas::default()
    }
}

#[tokio::test(start_paused = true)]
async fn past_max_running_the_tenants_own_least_recently_active_goes_to_sleep() {
    let h = Harness::new().await;
    limit(&h, "acme", max_running(2));
    limit(&h, "beta", max_running(5));
    // The least recently active of all: a host-wide eviction would take them.
    running_as(&h, "admin", "x").await;
    running_as(&h, "beta", "b1").await;
    h.tick_wall_clock();
    running_as(&h, "acme", "a1").await;
    h.tick_wall_clock();
    running_as(&h, "acme", "a2").await;
    h.tick_wall_clock();
    h.served("a1").await;
    h.tick_wall_clock();

    running_as(&h, "acme", "a3").await;
    assert_eq!(h.state("a2"), Asleep, "acme's least recently active");
    for name in ["a1", "a3", "b1", "x"] {
        assert_eq!(h.state(name), Running, "{name}");
    }

    // A wake does the same: a1 is now acme's least recently active.
    h.tick_wall_clock();
    h.served("a2").await;
    assert_eq!(h.state("a1"), Asleep);
    for name in ["a2", "a3", "b1", "x"] {
        assert_eq!(h.state(name), Running, "{name}");
    }
    assert_eq!(h.lifecycle().tenant_usage("acme").running, 2);
}

#[tokio::test(start_paused = true)]
async fn the_memory_quota_of_running_containers_is_kept_the_same_way() {
    let h = Harness::new().await;
    limit(
        &h,
        "acme",
        Quotas {
            max_memory_bytes: Some(2 * MEMORY),
            ..Quotas::default()
        },
    );
    running_as(&h, "acme", "a1").await;
    h.tick_wall_clock();
    running_as(&h, "acme", "a2").await;
    h.tick_wall_clock();
    running_as(&h, "acme", "a3").await;
    assert_eq!(h.state("a1"), Asleep);
    let usage = h.lifecycle().tenant_usage("acme");
    assert_eq!((usage.running, usage.memory_bytes), (2, 2 * MEMORY));
}

#[tokio::test(start_paused = true)]
async fn a_wake_with_none_of_its_own_to_put_to_sleep_is_refused_with_retry_after() {
    let h = Arc::new(Harness::new().await);
    limit(&h, "acme", max_running(1));
    running_as(&h, "acme", "a1").await;
    h.lifecycle().sleep("a1").await.unwrap();
    running_as(&h, "acme", "a2").await;
    h.lifecycle().sleep("a2").await.unwrap();
    limit(&h, "beta", Quotas::default());
    running_as(&h, "beta", "b1").await;
    h.fake().script_image(
        IMAGE,
        Script {
            start_latency: Duration::from_secs(2),
            ..Script::default()
        },
    );
    // a1 is starting: it holds acme's only place, and a starting container
    // cannot be put to sleep.
    let first = h.spawn_request("a1");
    h.advance(Duration::from_millis(100)).await;
    let refused = h.request("a2").await.unwrap_err();
    assert_eq!(refused.kind, WakeErrorKind::QuotaFull, "{refused:?}");
    assert_eq!(refused.kind.error_kind(), ErrorKind::RunningQuotaFull);
    assert_eq!(refused.kind.error_kind().status(), 429);
    assert!(refused.retry_after.is_some());
    assert!(
        refused.reason.contains("max_running is 1"),
        "{}",
        refused.reason
    );
    assert_eq!(h.state("a2"), Asleep, "refused for the quota, not failed");
    assert_eq!(h.state("b1"), Running, "another tenant's is never touched");
    first.await.unwrap().expect("the first wake goes on");
    assert_eq!(h.state("a1"), Running);

    // Once a1 runs, it can be put to sleep for a2.
    h.lifecycle().wake("a2").await.expect("a1 makes room");
    assert_eq!(h.state("a1"), Asleep);
}

#[tokio::test(start_paused = true)]
async fn the_admin_is_never_limited_by_tenants_quotas() {
    let h = Harness::new().await;
    limit(&h, "acme", max_running(1));
    h.create(&["x1", "x2", "x3"]).await.unwrap();
    for name in ["x1", "x2", "x3"] {
        assert_eq!(h.state(name), Running, "{name}");
    }
    running_as(&h, "acme", "a1").await;
    assert_eq!(h.lifecycle().tenant_usage("admin").running, 3);
    let err = h
        .create_with(&["z1"], |spec| spec.owner = "nobody".into())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`nobody` does not exist"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn creates_past_max_containers_or_max_memory_are_refused_leaving_nothing() {
    let h = Harness::new().await;
    limit(
        &h,
        "acme",
        Quotas {
            max_containers: Some(2),
            max_memory_bytes: Some(MEMORY),
            ..Quotas::default()
        },
    );
    running_as(&h, "acme", "a1").await;
    let as_acme = |spec: &mut crate::lifecycle::NewContainers| spec.owner = "acme".into();
    let err = h.create_with(&["a2", "a3"], as_acme).await.unwrap_err();
    assert!(matches!(err, LifecycleError::QuotaExceeded(_)), "{err}");
    assert_eq!(err.kind().status(), 403);
    let message = err.to_string();
    assert!(
        message.contains("max_containers is 2") && message.contains("has 1"),
        "{message}"
    );
    assert!(h.record("a2").await.is_none() && h.record("a3").await.is_none());

    let err = h
        .create_with(&["big"], |spec| {
            spec.owner = "acme".into();
            spec.memory_bytes = 2 * MEMORY;
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_memory_bytes"), "{err}");
    assert!(h.record("big").await.is_none());
    assert_eq!(h.fake().calls(Call::Create), 1, "only a1 reached Docker");

    h.create_with(&["a2"], as_acme)
        .await
        .expect("the second fits");
    // Another tenant and the admin are not counted against acme.
    h.create(&["x1", "x2"]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn quotas_changed_later_apply_to_the_next_start() {
    let h = Harness::new().await;
    limit(&h, "acme", Quotas::default());
    running_as(&h, "acme", "a1").await;
    h.tick_wall_clock();
    running_as(&h, "acme", "a2").await;
    limit(&h, "acme", max_running(1));
    h.tick_wall_clock();
    running_as(&h, "acme", "a3").await;
    let usage = h.lifecycle().tenant_usage("acme");
    assert_eq!(usage.running, 1, "both older ones were put to sleep");
    assert_eq!(h.state("a3"), Running);
}

#[tokio::test(start_paused = true)]
async fn past_max_snapshot_bytes_its_containers_stay_asleep_instead_of_archived() {
    let h = Harness::new().await;
    if !h.can_archive() {
        return;
    }
    limit(
        &h,
        "acme",
        Quotas {
            max_snapshot_bytes: Some(1),
            ..Quotas::default()
        },
    );
    for name in ["a1", "a2"] {
        running_as(&h, "acme", name).await;
        h.write_file(name, "/data/x", "the user's file");
    }
    limit(&h, "beta", Quotas::default());
    running_as(&h, "beta", "b1").await;
    h.lifecycle().archive("a1").await.expect("below the quota");
    assert_eq!(h.state("a1"), Archived);
    assert!(h.lifecycle().tenant_usage("acme").snapshot_bytes >= 1);

    let err = h.lifecycle().archive("a2").await.unwrap_err();
    assert!(matches!(err, LifecycleError::QuotaExceeded(_)), "{err}");
    assert!(err.to_string().contains("max_snapshot_bytes"), "{err}");
    assert_eq!(h.state("a2"), Asleep, "kept, with its files, asleep");
    h.lifecycle()
        .archive("b1")
        .await
        .expect("another tenant's quota");
    assert_eq!(h.state("b1"), Archived);
}

#[tokio::test(start_paused = true)]
async fn a_tenant_with_containers_cannot_be_retired_and_a_retired_one_gets_none() {
    let h = Harness::new().await;
    limit(&h, "acme", max_running(3));
    running_as(&h, "acme", "a1").await;
    assert_eq!(h.lifecycle().retire_tenant("acme"), Err(1));
    h.lifecycle().delete("a1").await.unwrap();
    assert_eq!(
        h.lifecycle().retire_tenant("acme"),
        Ok(Some(max_running(3)))
    );
    let err = h
        .create_with(&["a2"], |spec| spec.owner = "acme".into())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(h.record("a2").await.is_none());
}
