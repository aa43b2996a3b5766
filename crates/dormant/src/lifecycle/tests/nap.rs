//! Nap: an idle running container is paused (no start, no probe when its
//! next request thaws it); one unpause serves every waiting request; a
//! failed unpause leaves the table true to Docker; a napping container
//! still sleeps after its idle timeout and is the first evicted; nothing in
//! use is ever paused; pauses made by hand are followed.

use std::sync::Arc;
use std::time::Duration;

use super::harness::*;
use crate::events::{EventKind, Next};
use crate::lifecycle::LifecycleError;
use crate::proxy::waker::WakeErrorKind;

/// `name` running, then napping through `/nap` (the sweep's naps are
/// tested on their own: by hand, the state is exact).
async fn napping(h: &Harness, name: &str) {
    h.running(name).await;
    h.lifecycle().nap(name).await.expect("nap");
    assert_eq!(h.state(name), Napping);
    assert!(h.fake().paused(name), "Docker shows it paused");
}

#[tokio::test(start_paused = true)]
async fn the_sweep_naps_an_idle_container_and_its_request_unpauses_it_without_a_start() {
    let h = Harness::new().await;
    h.create_with(&["a"], |spec| {
        spec.nap_after = Some(Duration::from_millis(20))
    })
    .await
    .unwrap();
    // Activity is stamped with the wall clock, which the paused clock does
    // not move.
    std::thread::sleep(Duration::from_millis(25));
    h.wait_state("a", Napping).await;
    assert!(h.fake().paused("a"));
    assert_eq!(h.record("a").await.unwrap().state, Napping, "in the store");
    // No more naps for this test: the request's state must stay put.
    h.lifecycle()
        .set_nap_after("a", Some(Duration::ZERO))
        .await
        .unwrap();

    let (starts, probes) = (h.fake().calls(Call::Start), h.fake().calls(Call::Probe));
    let upstream = h.served("a").await;
    assert_eq!(h.assert_settled("a").await, Running);
    assert!(!h.fake().paused("a"));
    assert_eq!(h.fake().calls(Call::Unpause), 1);
    assert_eq!(h.fake().calls(Call::Start), starts, "no start");
    assert_eq!(h.fake().calls(Call::Probe), probes, "no readiness probe");
    assert_eq!(
        h.fake().container("a").unwrap().upstream,
        Some(upstream),
        "the upstream is unchanged"
    );
    let record = h.record("a").await.unwrap();
    assert_eq!(record.wakes, 0, "an unpause is not counted as a wake");
}

#[tokio::test(start_paused = true)]
async fn napping_and_its_end_are_told_with_the_unpause_time() {
    let h = Harness::new().await;
    h.running("a").await;
    let mut sub = h.lifecycle().events().subscribe(None);
    h.lifecycle().nap("a").await.unwrap();
    h.fake().delay(Call::Unpause, Duration::from_millis(7));
    h.served("a").await;
    let mut told = Vec::new();
    while told.len() < 2 {
        match sub.next().await {
            Next::Event(event) => told.push(event),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(told[0].kind, EventKind::Napping);
    assert_eq!(told[1].kind, EventKind::Ready);
    assert_eq!(
        told[1].unpause_ms,
        Some(7),
        "the fake's 7 ms, in virtual time"
    );
    assert_eq!(told[1].wake_ms, None);
}

#[tokio::test(start_paused = true)]
async fn five_hundred_requests_for_a_napping_container_share_one_unpause() {
    let h = Arc::new(Harness::new().await);
    napping(&h, "a").await;
    h.fake().delay(Call::Unpause, Duration::from_millis(20));
    let requests: Vec<_> = (0..500).map(|_| h.spawn_request("a")).collect();
    for request in requests {
        request.await.unwrap().expect("served");
    }
    assert_eq!(h.fake().calls(Call::Unpause), 1);
    assert_eq!(h.assert_settled("a").await, Running);
}

#[tokio::test(start_paused = true)]
async fn an_unpause_serves_its_requests_before_its_row_is_written() {
    let h = Harness::with(Options {
        store_faults: true,
        ..Options::default()
    })
    .await;
    napping(&h, "a").await;
    let stored = |db: &rusqlite::Connection| -> String {
        db.query_row("SELECT state FROM containers WHERE name = 'a'", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    // Another writer holds the store: the unpause's row must wait.
    let blocker = rusqlite::Connection::open(h.data_dir().join("dormant.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    h.served("a").await;
    assert_eq!(h.state("a"), Running);
    assert_eq!(
        stored(&blocker),
        "napping",
        "served before the row was written"
    );
    blocker.execute_batch("COMMIT").unwrap();
    h.eventually("the row says running", || stored(&blocker) == "running")
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_unpause_answers_the_error_and_the_next_request_tries_again() {
    let h = Harness::new().await;
    napping(&h, "a").await;
    h.fake().fail_for("a", Call::Unpause, 1, Fault::Unavailable);
    let err = h.request("a").await.unwrap_err();
    assert_eq!(err.kind, WakeErrorKind::Failed);
    assert!(err.reason.contains("docker unpause"), "{}", err.reason);
    assert_eq!(h.state("a"), Napping, "Docker still shows it paused");
    assert!(h.fake().paused("a"));
    assert_eq!(h.record("a").await.unwrap().state, Napping);
    h.served("a").await;
    assert_eq!(h.assert_settled("a").await, Running);
}

#[tokio::test(start_paused = true)]
async fn a_napping_container_removed_behind_dormants_back_is_made_again_by_its_request() {
    let h = Harness::new().await;
    napping(&h, "a").await;
    h.fake().remove_outside("a");
    h.served("a").await;
    assert_eq!(h.assert_settled("a").await, Running);
    assert_eq!(h.fake().calls(Call::Create), 2, "made again from its spec");
    assert_eq!(h.lifecycle().capacity_usage().running, 1);
}

#[tokio::test(start_paused = true)]
async fn a_napping_container_stopped_behind_dormants_back_is_started_by_its_request() {
    let h = Harness::new().await;
    napping(&h, "a").await;
    h.fake().stop_quietly("a");
    h.served("a").await;
    assert_eq!(h.assert_settled("a").await, Running);
    assert!(h.fake().running("a") && !h.fake().paused("a"));
}

#[tokio::test(start_paused = true)]
async fn a_napping_container_sleeps_after_its_idle_timeout_and_gives_back_its_room() {
    let h = Harness::new().await;
    h.create_with(&["a"], |spec| {
        spec.nap_after = Some(Duration::from_millis(1));
        spec.idle_timeout = Duration::from_millis(60);
    })
    .await
    .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    h.wait_state("a", Napping).await;
    assert_eq!(
        h.lifecycle().capacity_usage().running,
        1,
        "napping holds room"
    );
    std::thread::sleep(Duration::from_millis(60));
    h.wait_state("a", Asleep).await;
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert!(!h.fake().running("a") && !h.fake().paused("a"));
    assert_eq!(h.reason("a").as_deref(), Some("idle"));
    assert_eq!(h.lifecycle().capacity_usage().running, 0);
    assert_eq!(
        h.fake().calls(Call::Unpause),
        0,
        "this Docker stops a paused container itself"
    );
}

#[tokio::test(start_paused = true)]
async fn a_daemon_that_will_not_stop_a_paused_container_gets_it_unpaused_first() {
    let h = Harness::new().await;
    napping(&h, "a").await;
    h.fake().fail_for("a", Call::Stop, 1, Fault::Conflict);
    h.lifecycle().sleep("a").await.unwrap();
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert_eq!(h.fake().calls(Call::Unpause), 1);
    assert_eq!(h.fake().calls(Call::Stop), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_stop_of_a_napping_container_leaves_it_napping() {
    let h = Harness::new().await;
    napping(&h, "a").await;
    h.fake().fail_for("a", Call::Stop, 1, Fault::Unavailable);
    h.lifecycle().sleep("a").await.unwrap_err();
    assert_eq!(h.assert_settled("a").await, Napping);
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn napping_containers_are_evicted_first_least_recently_active_first() {
    let h = Harness::with(Options {
        max_running: Some(3),
        ..Options::default()
    })
    .await;
    h.running("old").await;
    h.tick_wall_clock();
    napping(&h, "nap1").await;
    h.tick_wall_clock();
    napping(&h, "nap2").await;
    h.tick_wall_clock();
    h.running("c").await;
    assert_eq!(
        h.state("nap1"),
        Asleep,
        "the least recently active napping one"
    );
    assert_eq!(h.state("nap2"), Napping);
    assert_eq!(
        h.state("old"),
        Running,
        "running, although least recently active"
    );
    assert_eq!(h.reason("nap1").as_deref(), Some("evicted"));
    h.running("d").await;
    assert_eq!(h.state("nap2"), Asleep);
    assert_eq!(h.state("old"), Running);
    assert!(!h.fake().paused("nap2") && !h.fake().running("nap2"));
}

#[tokio::test(start_paused = true)]
async fn napping_containers_count_against_the_memory_budget() {
    let h = Harness::with(Options {
        memory_budget: 2 * MEMORY,
        ..Options::default()
    })
    .await;
    napping(&h, "a").await;
    h.running("b").await;
    assert_eq!(h.lifecycle().capacity_usage().memory_bytes, 2 * MEMORY);
    h.running("c").await;
    assert_eq!(h.state("a"), Asleep, "evicted to make room");
    assert_eq!(h.state("b"), Running);
}

#[tokio::test(start_paused = true)]
async fn nothing_in_use_is_ever_paused() {
    let h = Harness::new().await;
    h.create_with(&["a"], |spec| {
        spec.nap_after = Some(Duration::from_millis(1))
    })
    .await
    .unwrap();
    let connection = h.open_connection("a");
    std::thread::sleep(Duration::from_millis(5));
    h.advance(Duration::from_secs(5)).await;
    assert_eq!(h.state("a"), Running, "an open connection keeps it awake");
    let err = h.lifecycle().nap("a").await.unwrap_err();
    assert!(
        matches!(&err, LifecycleError::Conflict(m) if m.contains("in use")),
        "{err}"
    );
    assert_eq!(h.fake().calls(Call::Pause), 0);
    drop(connection);
    std::thread::sleep(Duration::from_millis(5));
    h.wait_state("a", Napping).await;
}

#[tokio::test(start_paused = true)]
async fn a_request_arriving_while_it_pauses_is_served_after_an_unpause() {
    let h = Arc::new(Harness::new().await);
    h.running("a").await;
    h.fake().delay(Call::Pause, Duration::from_secs(1));
    let nap = {
        let h = h.clone();
        tokio::spawn(async move { h.lifecycle().nap("a").await })
    };
    h.advance(Duration::from_millis(500)).await;
    assert_eq!(h.state("a"), Napping, "published before the pause");
    let request = h.spawn_request("a");
    nap.await.unwrap().unwrap();
    request.await.unwrap().expect("served");
    assert_eq!(h.assert_settled("a").await, Running);
    assert!(!h.fake().paused("a"));
    assert_eq!(h.fake().calls(Call::Unpause), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_came_while_napping_was_recorded_calls_the_nap_off() {
    let h = Arc::new(
        Harness::with(Options {
            store_faults: true,
            ..Options::default()
        })
        .await,
    );
    h.running("a").await;
    // Another writer holds the store, so the nap waits while it records
    // `napping`: the window in which a request still sees `running`.
    let blocker = rusqlite::Connection::open(h.data_dir().join("dormant.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let nap = {
        let h = h.clone();
        tokio::spawn(async move { h.lifecycle().nap("a").await })
    };
    // (No sleep: the paused clock would wait for the blocked store.)
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(h.state("a"), Running, "the request is forwarded");
    let request = h.open_connection("a");
    blocker.execute_batch("COMMIT").unwrap();
    let err = nap.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, LifecycleError::Conflict(m) if m.contains("in use")),
        "{err}"
    );
    assert_eq!(h.fake().calls(Call::Pause), 0, "never paused under it");
    assert_eq!(h.assert_settled("a").await, Running);
    drop(request);
}

#[tokio::test(start_paused = true)]
async fn a_failed_pause_keeps_it_running_and_serving() {
    let h = Harness::new().await;
    h.running("a").await;
    h.fake().fail_for("a", Call::Pause, 1, Fault::Other);
    let err = h.lifecycle().nap("a").await.unwrap_err();
    assert!(err.to_string().contains("docker pause"), "{err}");
    assert_eq!(h.assert_settled("a").await, Running);
    h.served("a").await;
    assert_eq!(h.fake().calls(Call::Unpause), 0);
}

#[tokio::test(start_paused = true)]
async fn only_a_running_container_naps() {
    let h = Harness::new().await;
    h.asleep("a").await;
    let err = h.lifecycle().nap("a").await.unwrap_err();
    assert!(
        matches!(&err, LifecycleError::Conflict(m) if m.contains("asleep")),
        "{err}"
    );
    napping(&h, "b").await;
    h.lifecycle()
        .nap("b")
        .await
        .expect("napping already is fine");
    assert_eq!(h.fake().calls(Call::Pause), 1);
}

#[tokio::test(start_paused = true)]
async fn nap_after_zero_never_naps_and_a_change_takes_effect_at_once() {
    let h = Harness::with(Options {
        nap_after: Duration::from_millis(1),
        ..Options::default()
    })
    .await;
    h.create_with(&["a"], |spec| spec.nap_after = Some(Duration::ZERO))
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    h.advance(Duration::from_secs(2)).await;
    assert_eq!(h.state("a"), Running, "0 never naps");
    // Back to the server's default (1 ms here).
    h.lifecycle().set_nap_after("a", None).await.unwrap();
    assert_eq!(h.record("a").await.unwrap().spec.nap_after, None);
    h.wait_state("a", Napping).await;
}

#[tokio::test(start_paused = true)]
async fn a_pause_or_unpause_by_hand_is_followed() {
    let h = Harness::new().await;
    h.running("a").await;
    h.fake().pause_outside("a", true, true);
    h.wait_state("a", Napping).await;
    assert_eq!(h.record("a").await.unwrap().state, Napping);
    h.fake().pause_outside("a", false, true);
    h.wait_state("a", Running).await;
    assert_eq!(h.assert_settled("a").await, Running);
    assert_eq!(
        h.fake().calls(Call::Pause) + h.fake().calls(Call::Unpause),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_napping_container_killed_behind_dormants_back_is_asleep() {
    let h = Harness::new().await;
    napping(&h, "a").await;
    h.fake().kill("a", 137);
    h.wait_state("a", Asleep).await;
    assert_eq!(h.lifecycle().capacity_usage().running, 0);
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_docker_decides_who_naps() {
    let mut h = Harness::new().await;
    napping(&h, "napped").await;
    h.running("paused-by-hand").await;
    napping(&h, "thawed-by-hand").await;
    h.fake().pause_outside("paused-by-hand", true, false);
    h.fake().pause_outside("thawed-by-hand", false, false);
    h.restart().await.unwrap();
    assert_eq!(h.assert_settled("napped").await, Napping);
    assert_eq!(h.assert_settled("paused-by-hand").await, Napping);
    assert_eq!(h.assert_settled("thawed-by-hand").await, Running);
    assert_eq!(h.lifecycle().capacity_usage().running, 3);
    h.served("napped").await;
    assert_eq!(h.assert_settled("napped").await, Running);
}

/// A gateway beside dormant (nginx) that drops a container from its routes
/// only when the test says, recording what it was asked.
#[derive(Default)]
struct Gateway {
    drops: std::sync::atomic::AtomicBool,
    asked: std::sync::Mutex<Vec<(String, bool)>>,
}

#[async_trait::async_trait]
impl crate::lifecycle::PauseGuard for Gateway {
    async fn withdrawn(&self, name: &str, _upstream: std::net::SocketAddr) -> bool {
        let withdrawn = self.drops.load(std::sync::atomic::Ordering::SeqCst);
        // As a real wait for nginx's reload would.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.asked
            .lock()
            .unwrap()
            .push((name.to_owned(), withdrawn));
        withdrawn
    }
}

#[tokio::test(start_paused = true)]
async fn beside_a_gateway_a_nap_pauses_only_once_the_gateway_no_longer_routes_it() {
    let h = Harness::new().await;
    let gateway = Arc::new(Gateway::default());
    h.lifecycle().guard_pauses(gateway.clone());
    h.running("a").await;

    // Still routed by the gateway: no pause, running and serving again.
    let err = h.lifecycle().nap("a").await.unwrap_err();
    assert!(
        matches!(&err, LifecycleError::Conflict(m) if m.contains("gateway")),
        "{err}"
    );
    assert_eq!(
        h.fake().calls(Call::Pause),
        0,
        "never paused under the gateway"
    );
    assert_eq!(h.assert_settled("a").await, Running);
    h.served("a").await;

    // Dropped by the gateway: paused.
    gateway
        .drops
        .store(true, std::sync::atomic::Ordering::SeqCst);
    h.lifecycle().nap("a").await.expect("nap");
    assert_eq!(h.state("a"), Napping);
    assert_eq!(h.fake().calls(Call::Pause), 1);
    assert_eq!(
        *gateway.asked.lock().unwrap(),
        [("a".to_owned(), false), ("a".to_owned(), true)]
    );
}
