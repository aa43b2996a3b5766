//! Creating containers: a batch is created whole or not at all, and a failed
//! batch leaves nothing in Docker or the store.

use super::harness::*;
use crate::lifecycle::LifecycleError;
use crate::runtime::RuntimeError;

#[tokio::test(start_paused = true)]
async fn a_created_container_runs_and_is_served() {
    let h = Harness::new().await;
    let records = h.create(&["a"]).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, Running);
    assert_eq!(records[0].spec.port, 8080, "the image's one exposed port");
    assert_eq!(h.assert_settled("a").await, Running);
    assert!(h.fake().running("a"));
    h.served("a").await;
    assert_eq!(h.fake().calls(Call::Start), 1);
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_created_together_with_its_volumes() {
    let h = Harness::new().await;
    let records = h.create(&["a", "b", "c"]).await.unwrap();
    assert_eq!(records.len(), 3);
    for name in ["a", "b", "c"] {
        assert_eq!(h.assert_settled(name).await, Running);
        h.served(name).await;
    }
    assert_eq!(
        h.fake().volume_names(),
        ["dormant-a-v0", "dormant-b-v0", "dormant-c-v0"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_taken_name_fails_the_whole_batch_and_touches_nothing() {
    let h = Harness::new().await;
    h.running("a").await;
    let err = h.create(&["b", "a"]).await.unwrap_err();
    assert!(
        matches!(err, LifecycleError::NameTaken(ref n) if n == "a"),
        "{err}"
    );
    assert_eq!(h.state("b"), Deleted);
    assert!(h.record("b").await.is_none());
    assert!(h.fake().container("b").is_none());
    assert_eq!(h.state("a"), Running, "the existing one is untouched");
}

#[tokio::test(start_paused = true)]
async fn two_creates_of_one_name_at_once_make_one_container() {
    let h = Harness::new().await;
    let (first, second) = tokio::join!(h.create(&["a"]), h.create(&["a"]));
    let (ok, err) = match (first, second) {
        (Ok(ok), Err(err)) | (Err(err), Ok(ok)) => (ok, err),
        other => panic!("exactly one create should win: {other:?}"),
    };
    assert_eq!(ok[0].name, "a");
    assert!(matches!(err, LifecycleError::NameTaken(_)), "{err}");
    assert_eq!(h.fake().calls(Call::Create), 1);
    assert_eq!(h.assert_settled("a").await, Running);
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_is_a_clear_error_and_nothing_is_stored() {
    let h = Harness::new().await;
    let err = h
        .create_with(&["a"], |spec| spec.image = "nope".into())
        .await
        .unwrap_err();
    assert!(
        matches!(err, LifecycleError::ImageNotPresent(ref i) if i == "nope"),
        "{err}"
    );
    assert!(h.record("a").await.is_none());
    assert_eq!(h.fake().calls(Call::Create), 0);
}

#[tokio::test(start_paused = true)]
async fn the_port_must_be_given_when_the_image_does_not_say_which() {
    let h = Harness::new().await;
    h.fake().add_image("bare", &[]);
    h.fake().add_image("many", &[80, 443]);
    for image in ["bare", "many"] {
        let err = h
            .create_with(&["a"], |spec| spec.image = image.into())
            .await
            .unwrap_err();
        assert!(
            matches!(err, LifecycleError::Invalid { field: "port", .. }),
            "{image}: {err}"
        );
    }
    let records = h
        .create_with(&["a"], |spec| {
            spec.image = "many".into();
            spec.port = Some(443);
        })
        .await
        .unwrap();
    assert_eq!(records[0].spec.port, 443);
}

#[tokio::test(start_paused = true)]
async fn a_start_failure_undoes_the_whole_batch() {
    let h = Harness::new().await;
    h.fake().fail_for("b", Call::Start, 1, Fault::Other);
    let err = h.create(&["a", "b", "c"]).await.unwrap_err();
    match &err {
        LifecycleError::Runtime { name, source } => {
            assert_eq!(name, "b");
            assert_eq!(source.call(), "docker start fake0003");
        }
        other => panic!("{other}"),
    }
    for name in ["a", "b", "c"] {
        assert_eq!(h.state(name), Deleted, "{name}");
        assert!(h.record(name).await.is_none(), "{name}");
        assert!(h.fake().container(name).is_none(), "{name}");
    }
    assert!(
        h.fake().volume_names().is_empty(),
        "volumes are removed too"
    );
    assert_eq!(h.lifecycle().capacity_usage().running, 0);
}

#[tokio::test(start_paused = true)]
async fn an_app_that_never_answers_fails_create_at_the_wake_timeout() {
    let h = Harness::new().await;
    h.fake().script(
        "a",
        Script {
            ready: Readiness::Never,
            ..Script::default()
        },
    );
    let started = tokio::time::Instant::now();
    let err = h.create(&["a"]).await.unwrap_err();
    assert!(matches!(err, LifecycleError::NotReady { .. }), "{err}");
    assert!(started.elapsed() >= WAKE_TIMEOUT);
    assert!(h.record("a").await.is_none());
    assert!(h.fake().container("a").is_none());
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_daemon_fails_create_naming_the_call() {
    let h = Harness::new().await;
    h.fake().fail(Call::Create, 1, Fault::Unavailable);
    let err = h.create(&["a"]).await.unwrap_err();
    let LifecycleError::Runtime { source, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        matches!(source, RuntimeError::Unavailable { .. }),
        "{source:?}"
    );
    assert!(
        err.to_string().contains("docker create --name dormant-a"),
        "{err}"
    );
    assert!(h.record("a").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_container_that_crashes_at_start_fails_create_quickly() {
    let h = Harness::new().await;
    h.fake().script(
        "a",
        Script {
            crash: Some(Crash::AtStart { exit_code: 3 }),
            ..Script::default()
        },
    );
    let started = tokio::time::Instant::now();
    let err = h.create(&["a"]).await.unwrap_err();
    assert!(err.to_string().contains("exited with code 3"), "{err}");
    assert!(started.elapsed() < WAKE_TIMEOUT, "not at the timeout");
    assert!(h.fake().container("a").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_tenants_container_is_made_on_its_tenants_network_and_made_there_again() {
    let h = Harness::new().await;
    h.lifecycle()
        .quotas()
        .set("acme", crate::tenant::Quotas::default());
    h.create_with(&["t"], |spec| spec.owner = "acme".into())
        .await
        .unwrap();
    h.create(&["a"]).await.unwrap();
    let tenant = |name: &str| h.fake().container(name).unwrap().tenant;
    assert_eq!(tenant("t").as_deref(), Some("acme"));
    assert_eq!(tenant("a").as_deref(), Some("admin"));
    if !h.can_archive() {
        return;
    }
    h.lifecycle().archive("t").await.unwrap();
    assert!(h.fake().container("t").is_none(), "archived: removed");
    h.served("t").await;
    assert_eq!(
        tenant("t").as_deref(),
        Some("acme"),
        "restored on its network"
    );
}
