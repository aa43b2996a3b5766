//! Sleep: idle containers are stopped; anything in use stays awake; a stop
//! that fails leaves the container serving.

use std::time::Duration;

use super::harness::*;
use crate::lifecycle::LifecycleError;

#[tokio::test(start_paused = true)]
async fn sleep_stops_the_container_and_gives_back_its_room() {
    let h = Harness::new().await;
    h.running("a").await;
    assert_eq!(h.lifecycle().capacity_usage().running, 1);
    h.lifecycle().sleep("a").await.unwrap();
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert!(!h.fake().running("a"));
    assert!(
        h.fake().container("a").is_some(),
        "asleep keeps the container"
    );
    assert_eq!(h.lifecycle().capacity_usage().running, 0);
}

#[tokio::test(start_paused = true)]
async fn sleeping_twice_stops_once() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.lifecycle().sleep("a").await.unwrap();
    assert_eq!(h.fake().calls(Call::Stop), 1);
    let err = h.lifecycle().sleep("nope").await.unwrap_err();
    assert!(matches!(err, LifecycleError::NotFound(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_stop_keeps_it_running_and_serving() {
    let h = Harness::new().await;
    h.running("a").await;
    h.fake().fail_for("a", Call::Stop, 1, Fault::Unavailable);
    let err = h.lifecycle().sleep("a").await.unwrap_err();
    assert!(err.to_string().contains("docker stop"), "{err}");
    assert_eq!(h.assert_settled("a").await, Running);
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn the_sweep_puts_an_idle_container_to_sleep() {
    let h = Harness::new().await;
    h.create_with(&["a"], |spec| spec.idle_timeout = Duration::ZERO)
        .await
        .unwrap();
    h.wait_state("a", Asleep).await;
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert!(!h.fake().running("a"));
}

#[tokio::test(start_paused = true)]
async fn an_open_connection_keeps_it_awake_until_it_closes() {
    let h = Harness::new().await;
    h.create_with(&["a"], |spec| spec.idle_timeout = Duration::ZERO)
        .await
        .unwrap();
    // Idle at once, were it not for the connection.
    let connection = h.open_connection("a");
    h.advance(Duration::from_secs(30)).await;
    assert_eq!(h.state("a"), Running, "in use: never idle");
    drop(connection);
    h.wait_state("a", Asleep).await;
}

#[tokio::test(start_paused = true)]
async fn recent_activity_keeps_it_awake_across_sweeps() {
    let h = Harness::new().await;
    h.running("a").await;
    for _ in 0..10 {
        h.served("a").await;
        h.advance(Duration::from_secs(1)).await;
    }
    assert_eq!(h.state("a"), Running);
    assert_eq!(h.fake().calls(Call::Stop), 0);
}

#[tokio::test(start_paused = true)]
async fn a_request_arriving_while_it_stops_is_served_after_a_wake() {
    let h = std::sync::Arc::new(Harness::new().await);
    h.running("a").await;
    h.fake().delay(Call::Stop, Duration::from_secs(2));
    let sleeping = {
        let h = h.clone();
        tokio::spawn(async move { h.lifecycle().sleep("a").await })
    };
    h.advance(Duration::from_secs(1)).await;
    assert_eq!(h.state("a"), Stopping);
    let request = h.spawn_request("a");
    sleeping.await.unwrap().unwrap();
    let upstream = request.await.unwrap().expect("served");
    assert_eq!(h.fake().container("a").unwrap().upstream, Some(upstream));
    assert_eq!(h.assert_settled("a").await, Running);
}
