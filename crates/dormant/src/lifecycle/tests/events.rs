//! Docker's events: a running container that dies on its own is asleep at
//! once, and the next request wakes it.

use std::time::Duration;

use super::harness::*;

#[tokio::test(start_paused = true)]
async fn a_crash_of_a_running_container_makes_it_asleep_and_the_next_request_wakes_it() {
    let h = Harness::new().await;
    h.running("a").await;
    h.fake().kill("a", 137);
    h.wait_state("a", Asleep).await;
    assert_eq!(h.assert_settled("a").await, Asleep);
    assert!(h.reason("a").unwrap().contains("exit code 137"));
    assert_eq!(h.lifecycle().capacity_usage().running, 0);
    h.served("a").await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_some_time_after_a_wake_is_noticed() {
    let h = Harness::new().await;
    h.asleep("a").await;
    h.fake().script(
        "a",
        Script {
            crash: Some(Crash::After {
                after: Duration::from_secs(30),
                exit_code: 1,
            }),
            ..Script::default()
        },
    );
    h.served("a").await;
    h.advance(Duration::from_secs(31)).await;
    assert_eq!(h.assert_settled("a").await, Asleep);
}

#[tokio::test(start_paused = true)]
async fn the_event_stream_is_followed_again_after_it_breaks() {
    let h = Harness::new().await;
    h.running("a").await;
    assert_eq!(h.fake().event_subscribers(), 1);
    h.fake().break_events();
    h.advance(Duration::from_secs(2)).await;
    assert_eq!(h.fake().event_subscribers(), 1, "subscribed again");
    h.fake().kill("a", 2);
    h.wait_state("a", Asleep).await;
}
