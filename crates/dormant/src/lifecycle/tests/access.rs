//! A container's access (public or private): set at create, changed
//! through the commit path, seen by the proxy's route at once, and kept
//! across restarts.

use super::harness::*;
use crate::domain::Access;

#[tokio::test(start_paused = true)]
async fn access_is_set_at_create_changed_at_once_and_kept_across_restarts() {
    let mut h = Harness::new().await;
    h.create_with(&["a"], |spec| spec.access = Access::Private)
        .await
        .unwrap();
    h.running("b").await;
    let route = |h: &Harness, name: &str| h.lifecycle().table().get(name).unwrap();
    assert_eq!(route(&h, "a").access(), Access::Private);
    assert_eq!(route(&h, "b").access(), Access::Public);

    h.lifecycle()
        .set_access("b", Access::Private)
        .await
        .unwrap();
    assert_eq!(
        route(&h, "b").access(),
        Access::Private,
        "the proxy sees it"
    );
    assert_eq!(h.record("b").await.unwrap().spec.access, Access::Private);
    h.lifecycle().set_access("a", Access::Public).await.unwrap();
    assert_eq!(route(&h, "a").access(), Access::Public);
    assert_eq!(
        h.state("b"),
        Running,
        "changing access leaves the state alone"
    );

    h.restart().await.unwrap();
    assert_eq!(route(&h, "a").access(), Access::Public);
    assert_eq!(
        route(&h, "b").access(),
        Access::Private,
        "kept in the store"
    );
    let err = h.lifecycle().set_access("nope", Access::Private).await;
    assert!(matches!(
        err,
        Err(crate::lifecycle::LifecycleError::NotFound(_))
    ));
}
