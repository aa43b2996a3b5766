//! Waking an asleep container: the request that arrives is served once the
//! app answers; a wake that fails ends `failed` with a reason, never half-way.

use std::time::Duration;

use super::harness::*;
use crate::lifecycle::LifecycleError;
use crate::proxy::waker::WakeErrorKind;

#[tokio::test(start_paused = true)]
async fn a_request_wakes_an_asleep_container_and_is_served() {
    let h = Harness::new().await;
    h.asleep("a").await;
    assert!(!h.fake().running("a"));
    h.served("a").await;
    assert_eq!(h.assert_settled("a").await, Running);
    assert_eq!(
        h.fake().calls_for("a", Call::Start),
        2,
        "create, then one wake"
    );
    assert_eq!(h.record("a").await.unwrap().wakes, 1);
}

#[tokio::test(start_paused = true)]
async fn the_api_wake_returns_once_the_app_answers() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().script(
        "a",
        Script {
            start_latency: Duration::from_secs(1),
            ready: Readiness::After(Duration::from_secs(2)),
            ..Script::default()
        },
    );
    let started = tokio::time::Instant::now();
    h.lifecycle().wake("a").await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(h.state("a"), Running);
    let err = h.lifecycle().wake("nope").await.unwrap_err();
    assert!(matches!(err, LifecycleError::NotFound(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_running_container_is_served_without_a_start() {
    let h = Harness::new().await;
    h.running("a").await;
    let first = h.served("a").await;
    assert_eq!(h.served("a").await, first);
    assert_eq!(h.fake().calls(Call::Start), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_ends_failed_with_the_call_in_the_reason() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().fail_for("a", Call::Start, 1, Fault::Other);
    let err = h.request("a").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::Failed);
    assert!(err.reason.contains("docker start"), "{}", err.reason);
    assert!(err.retry_after.is_some(), "the backoff is announced");
    assert_eq!(h.assert_settled("a").await, Failed);
    assert!(h
        .record("a")
        .await
        .unwrap()
        .reason
        .unwrap()
        .contains("docker start"));
    assert!(!h.fake().running("a"));
    assert_eq!(
        h.lifecycle().capacity_usage().running,
        0,
        "its room is given back"
    );
}

#[tokio::test(start_paused = true)]
async fn an_app_that_never_answers_is_stopped_and_failed_at_the_wake_timeout() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().script(
        "a",
        Script {
            ready: Readiness::Never,
            ..Script::default()
        },
    );
    let started = tokio::time::Instant::now();
    let err = h.request("a").await.unwrap_err();
    assert!(started.elapsed() >= WAKE_TIMEOUT);
    assert_eq!(err.kind, WakeErrorKind::Failed);
    assert!(err.reason.contains("not ready"), "{}", err.reason);
    assert_eq!(h.assert_settled("a").await, Failed);
    assert!(!h.fake().running("a"), "nothing half-started stays running");
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_start_fails_the_wake_at_once() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().script(
        "a",
        Script {
            crash: Some(Crash::AtStart { exit_code: 7 }),
            ..Script::default()
        },
    );
    let started = tokio::time::Instant::now();
    let err = h.request("a").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(err.reason.contains("exited with code 7"), "{}", err.reason);
    assert_eq!(h.assert_settled("a").await, Failed);
}

#[tokio::test(start_paused = true)]
async fn a_crash_while_starting_is_heard_from_docker_events() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().script(
        "a",
        Script {
            ready: Readiness::After(Duration::from_secs(8)),
            crash: Some(Crash::After {
                after: Duration::from_secs(2),
                exit_code: 139,
            }),
            ..Script::default()
        },
    );
    let started = tokio::time::Instant::now();
    let err = h.request("a").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(err.reason.contains("139"), "{}", err.reason);
    assert_eq!(h.assert_settled("a").await, Failed);
}

#[tokio::test(start_paused = true)]
async fn a_container_removed_behind_dormants_back_is_made_again() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().remove_outside("a");
    h.served("a").await;
    assert_eq!(h.fake().calls_for("a", Call::Create), 2);
    assert_eq!(h.assert_settled("a").await, Running);
}

#[tokio::test(start_paused = true)]
async fn when_its_image_is_gone_it_is_made_again_from_the_image_name() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().remove_outside("a");
    // The tag moved: the id the container was made from is gone.
    h.fake().remove_image(IMAGE);
    h.fake().add_image(IMAGE, &[8080]);
    h.served("a").await;
    assert_eq!(
        h.fake().calls_for("a", Call::Create),
        3,
        "the first create, one by the old id (image missing), one by name"
    );
}

#[tokio::test(start_paused = true)]
async fn an_inspect_failure_fails_the_wake_and_a_later_request_recovers() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().fail_for("a", Call::Inspect, 1, Fault::Unavailable);
    let err = h.request("a").await.unwrap_err();
    assert!(err.reason.contains("unreachable"), "{}", err.reason);
    assert_eq!(h.assert_settled("a").await, Failed);
    h.advance(Duration::from_secs(2)).await;
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_start_is_waited_for() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().script(
        "a",
        Script {
            start_latency: Duration::from_secs(4),
            ready: Readiness::After(Duration::from_secs(4)),
            ..Script::default()
        },
    );
    let started = tokio::time::Instant::now();
    h.served("a").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(8) && took < WAKE_TIMEOUT,
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn while_the_daemon_is_down_wakes_fail_and_once_it_is_back_they_work() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().fail(Call::Inspect, ALWAYS, Fault::Unavailable);
    h.fake().fail(Call::Start, ALWAYS, Fault::Unavailable);
    let err = h.request("a").await.unwrap_err();
    assert!(
        err.reason.contains("is the Docker daemon running?"),
        "{}",
        err.reason
    );
    assert_eq!(h.assert_settled("a").await, Failed);
    h.fake().heal();
    h.advance(Duration::from_secs(2)).await;
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn a_container_gone_between_inspect_and_start_fails_the_wake_not_the_route() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().fail_for("a", Call::Start, 1, Fault::NotFound);
    let err = h.request("a").await.unwrap_err();
    assert!(err.reason.contains("not found"), "{}", err.reason);
    assert_eq!(h.assert_settled("a").await, Failed);
    h.advance(Duration::from_secs(2)).await;
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn the_store_records_the_docker_id_of_a_recreated_container() {
    let h = Harness::new().await;
    h.asleep("a").await;
    let first = h.fake().container("a").unwrap().id;
    h.fake().remove_outside("a");
    // Docker answers "image missing" for the id once: the name is used.
    h.fake().fail_for("a", Call::Create, 1, Fault::ImageMissing);
    h.served("a").await;
    let second = h.fake().container("a").unwrap().id;
    assert_ne!(first, second);
    assert_eq!(h.record("a").await.unwrap().docker_id, Some(second));
}

#[tokio::test(start_paused = true)]
async fn a_finished_wake_is_counted_in_the_last_hours_history() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().script(
        "a",
        Script {
            ready: Readiness::After(Duration::from_secs(2)),
            ..Script::default()
        },
    );
    h.lifecycle().wake("a").await.unwrap();
    // A failed wake is no finished wake: it is not counted.
    h.asleep("b").await;
    h.fake().fail_for("b", Call::Start, 1, Fault::Other);
    assert!(h.request("b").await.is_err());

    let hour = h
        .lifecycle()
        .metrics()
        .wake_history
        .last_hour(crate::domain::now_millis());
    let wakes: u64 = hour.iter().map(|minute| minute.wakes).sum();
    assert_eq!(wakes, 1, "{hour:?}");
    let minute = hour.iter().find(|minute| minute.wakes == 1).unwrap();
    assert!(minute.max_ms >= 2_000, "{minute:?}");
    assert_eq!(minute.avg_ms, minute.max_ms);
}

#[tokio::test(start_paused = true)]
async fn an_app_on_other_ports_fails_the_wake_within_two_seconds_naming_them() {
    use crate::events::{EventKind, Next};
    let h = Harness::new().await;
    h.asleep("a").await;
    // An admin port at once, the main one on the wrong port a little later;
    // port 8080 never answers.
    h.fake().script(
        "a",
        Script {
            ready: Readiness::Never,
            listens: Some(vec![
                (9090, Duration::ZERO),
                (3000, Duration::from_millis(600)),
            ]),
            ..Script::default()
        },
    );
    let mut events = h.lifecycle().events().subscribe(None);
    let started = tokio::time::Instant::now();
    let err = h.request("a").await.unwrap_err();
    let reason = "the app listens on 3000, 9090 but not on the configured port 8080; \
                  set `port` to one of them";
    assert_eq!(err.kind, WakeErrorKind::Failed);
    assert_eq!(err.reason, reason);
    // 9090 is seen at the first look (250 ms after the start): within 2 s of it.
    assert!(
        started.elapsed() <= Duration::from_millis(2_250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(h.assert_settled("a").await, Failed);
    assert_eq!(h.reason("a").as_deref(), Some(reason));
    assert_eq!(h.record("a").await.unwrap().reason.as_deref(), Some(reason));
    let failed = loop {
        match events.next().await {
            Next::Event(event) if event.kind == EventKind::Failed => break event,
            Next::Event(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(failed.reason.as_deref(), Some(reason));
}

#[tokio::test(start_paused = true)]
async fn an_app_that_opens_its_port_after_an_admin_port_is_served() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().script(
        "a",
        Script {
            ready: Readiness::After(Duration::from_millis(1_500)),
            listens: Some(vec![(9090, Duration::ZERO)]),
            ..Script::default()
        },
    );
    h.served("a").await;
    assert_eq!(h.assert_settled("a").await, Running);
}
