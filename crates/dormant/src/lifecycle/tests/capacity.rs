//! Capacity: `max_running` and the memory budget. Room is made by putting
//! the least recently active container to sleep, preferring those with
//! nothing in use; waiting starts are served first come, first served; a
//! start that cannot get room in time gets 503 with `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use super::harness::*;
use crate::proxy::waker::WakeErrorKind;

fn max_running(n: usize) -> Options {
    Options {
        max_running: Some(n),
        ..Options::default()
    }
}

#[tokio::test(start_paused = true)]
async fn the_least_recently_active_container_makes_room() {
    let h = Harness::with(max_running(2)).await;
    h.running("a").await;
    h.running("b").await;
    h.tick_wall_clock();
    h.served("a").await;
    h.tick_wall_clock();
    h.running("c").await;
    assert_eq!(h.state("b"), Asleep, "b was the least recently active");
    assert_eq!(h.state("a"), Running);
    assert_eq!(h.lifecycle().capacity_usage().running, 2);
    assert_eq!(h.fake().running_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_container_with_nothing_in_use_is_evicted_before_one_in_use() {
    let h = Harness::with(max_running(2)).await;
    h.running("a").await;
    h.running("b").await;
    let _connection = h.open_connection("a");
    h.tick_wall_clock();
    h.served("b").await;
    h.tick_wall_clock();
    h.running("c").await;
    assert_eq!(
        h.state("a"),
        Running,
        "in use, although less recently active"
    );
    assert_eq!(h.state("b"), Asleep);
}

#[tokio::test(start_paused = true)]
async fn when_everything_is_in_use_the_least_recently_active_goes() {
    let h = Harness::with(max_running(2)).await;
    h.running("a").await;
    h.running("b").await;
    let _a = h.open_connection("a");
    h.tick_wall_clock();
    let _b = h.open_connection("b");
    h.tick_wall_clock();
    h.running("c").await;
    assert_eq!(h.state("a"), Asleep);
    assert_eq!(h.state("b"), Running);
}

#[tokio::test(start_paused = true)]
async fn the_memory_budget_is_kept() {
    let h = Harness::with(Options {
        memory_budget: 2 * MEMORY + MEMORY / 2,
        ..Options::default()
    })
    .await;
    h.running("a").await;
    h.tick_wall_clock();
    h.running("b").await;
    h.tick_wall_clock();
    h.running("c").await;
    let usage = h.lifecycle().capacity_usage();
    assert_eq!(usage.running, 2);
    assert!(usage.memory_bytes <= usage.memory_budget_bytes);
    assert_eq!(h.state("a"), Asleep);
}

#[tokio::test(start_paused = true)]
async fn a_container_larger_than_the_whole_budget_is_refused() {
    let h = Harness::with(Options {
        memory_budget: MEMORY,
        ..Options::default()
    })
    .await;
    let err = h
        .create_with(&["a"], |spec| spec.memory_bytes = 2 * MEMORY)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("memory budget"), "{err}");
    assert!(h.record("a").await.is_none());
    assert_eq!(h.fake().calls(Call::Start), 0);
}

#[tokio::test(start_paused = true)]
async fn a_batch_larger_than_max_running_is_created_with_the_oldest_asleep() {
    let h = Harness::with(max_running(2)).await;
    let records = h.create(&["a", "b", "c"]).await.unwrap();
    let running = records.iter().filter(|r| r.state == Running).count();
    assert_eq!(running, 2, "{records:?}");
    for record in &records {
        assert_eq!(h.state(&record.name), record.state);
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_starts_are_served_first_come_first_served() {
    let h = Arc::new(Harness::with(max_running(1)).await);
    for name in ["a", "b", "c"] {
        h.running(name).await;
    }
    h.lifecycle().sleep("c").await.unwrap();
    h.fake().script_image(
        IMAGE,
        Script {
            start_latency: Duration::from_secs(1),
            ..Script::default()
        },
    );
    let mut requests = Vec::new();
    for name in ["a", "b", "c"] {
        requests.push(h.spawn_request(name));
        h.advance(Duration::from_millis(100)).await;
    }
    for request in requests {
        request.await.unwrap().expect("each is served in its turn");
    }
    // The three creates started a, b, c; then the queue, in arrival order.
    // (A waiter whose container is evicted again before it looks may queue
    // once more: later starts are not checked.)
    let starts = h.fake().call_log(Call::Start);
    assert_eq!(starts[3..6], ["a", "b", "c"], "{starts:?}");
    assert_eq!(h.fake().running_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_wake_that_gets_no_room_in_time_answers_no_room_and_stays_asleep() {
    let h = Arc::new(Harness::with(max_running(1)).await);
    h.running("b").await;
    h.lifecycle().sleep("b").await.unwrap();
    h.running("a").await;
    h.lifecycle().sleep("a").await.unwrap();
    // `a` holds the only room while it starts, for longer than b may wait.
    h.fake().script(
        "a",
        Script {
            start_latency: WAKE_TIMEOUT + Duration::from_secs(5),
            ..Script::default()
        },
    );
    let a = h.spawn_request("a");
    h.advance(Duration::from_millis(100)).await;
    let err = h.request("b").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::NoRoom, "{err:?}");
    assert!(err.retry_after.is_some(), "503 with Retry-After");
    assert_eq!(
        h.assert_settled("b").await,
        Asleep,
        "no room is not a failure"
    );
    // `a`'s start outlasted the wake timeout: whatever its verdict, it
    // ends in a state a request can act on.
    let _ = a.await.unwrap();
    h.eventually("`a`'s wake ends", || h.state("a") != Starting)
        .await;
    h.assert_settled("a").await;
}

#[tokio::test(start_paused = true)]
async fn a_wake_whose_eviction_keeps_failing_gives_up_with_no_room() {
    let h = Harness::with(max_running(1)).await;
    h.running("b").await;
    h.lifecycle().sleep("b").await.unwrap();
    h.running("a").await;
    h.fake().delay(Call::Stop, Duration::from_millis(100));
    h.fake()
        .fail_for("a", Call::Stop, ALWAYS, Fault::Unavailable);
    let err = h.request("b").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::NoRoom, "{err:?}");
    assert_eq!(h.assert_settled("b").await, Asleep);
    assert_eq!(h.state("a"), Running);
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn room_is_given_back_by_sleep_crash_and_delete() {
    let h = Harness::new().await;
    for name in ["a", "b", "c"] {
        h.running(name).await;
    }
    assert_eq!(h.lifecycle().capacity_usage().memory_bytes, 3 * MEMORY);
    h.lifecycle().sleep("a").await.unwrap();
    h.fake().kill("b", 1);
    h.wait_state("b", Asleep).await;
    h.lifecycle().delete("c").await.unwrap();
    let usage = h.lifecycle().capacity_usage();
    assert_eq!((usage.running, usage.memory_bytes), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_evicted_container_finishes_its_requests_in_flight_before_it_stops() {
    let h = Harness::with(max_running(1)).await;
    h.running("a").await;
    let in_flight = h.open_connection("a");
    let lifecycle = h.lifecycle().clone();
    let spec = h.spec(&["b"]);
    let create_b = tokio::spawn(async move { lifecycle.create(spec).await });
    h.advance(Duration::from_millis(500)).await;
    assert_eq!(h.state("a"), Stopping, "new requests for a wait now");
    assert!(
        h.fake().running("a"),
        "not stopped under a request in flight"
    );
    drop(in_flight);
    create_b.await.unwrap().unwrap();
    assert_eq!(h.state("a"), Asleep);
    assert_eq!(h.state("b"), Running);
}

#[tokio::test(start_paused = true)]
async fn an_eviction_waits_for_requests_in_flight_only_so_long() {
    let h = Harness::with(max_running(1)).await;
    h.running("a").await;
    let _never_ends = h.open_connection("a");
    h.create(&["b"]).await.unwrap();
    assert_eq!(h.state("a"), Asleep, "put to sleep after the drain's bound");
    assert_eq!(h.state("b"), Running);
}
