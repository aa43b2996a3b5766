//! The event stream tells every transition once, in order, with what the
//! issue asks of each: why a container fell asleep, how long a wake took,
//! how large a snapshot is, who owns it.

use super::harness::*;
use crate::events::{Event, EventKind, Next, Subscription};

/// Every event already published to `sub`, in order.
async fn drain(sub: &mut Subscription) -> Vec<std::sync::Arc<Event>> {
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            next = sub.next() => match next {
                Next::Event(event) => seen.push(event),
                other => panic!("unexpected {other:?}"),
            },
            _ = tokio::time::sleep(std::time::Duration::from_millis(1)) => return seen,
        }
    }
}

fn kinds(events: &[std::sync::Arc<Event>]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[tokio::test(start_paused = true)]
async fn a_life_is_told_transition_by_transition() {
    use EventKind::*;
    let h = Harness::new().await;
    let mut sub = h.lifecycle().events().subscribe(None);
    h.create(&["a"]).await.unwrap();
    let created = drain(&mut sub).await;
    // A new container is started while `creating`: no `starting` between.
    assert_eq!(kinds(&created), [Created, Ready]);
    assert!(
        created.windows(2).all(|w| w[1].id == w[0].id + 1),
        "ids follow each other"
    );
    assert!(created
        .iter()
        .all(|e| e.container == "a" && e.tenant == "admin"));

    h.lifecycle().sleep("a").await.unwrap();
    let slept = drain(&mut sub).await;
    assert_eq!(kinds(&slept), [Sleeping, Asleep]);
    assert_eq!(slept[1].reason.as_deref(), Some("asked"));

    h.served("a").await;
    let woken = drain(&mut sub).await;
    assert_eq!(kinds(&woken), [Starting, Ready]);
    assert!(woken[1].wake_ms.is_some(), "a wake says how long it took");

    if h.can_archive() {
        h.lifecycle().archive("a").await.unwrap();
        let archived = drain(&mut sub).await;
        assert_eq!(kinds(&archived), [Sleeping, Asleep, Archiving, Archived]);
        let bytes = archived[3].snapshot_bytes.expect("archived says its size");
        let record = h.record("a").await.unwrap();
        assert_eq!(Some(bytes), record.snapshot.map(|s| s.bytes));
        h.served("a").await;
        let restored = drain(&mut sub).await;
        assert_eq!(kinds(&restored)[0], Restoring);
        assert_eq!(kinds(&restored).last(), Some(&Ready));
    }

    h.lifecycle().delete("a").await.unwrap();
    let deleted = drain(&mut sub).await;
    assert_eq!(kinds(&deleted).last(), Some(&Deleted));
}

#[tokio::test(start_paused = true)]
async fn an_idle_container_is_told_asleep_because_idle() {
    let h = Harness::new().await;
    let mut sub = h.lifecycle().events().subscribe(None);
    h.create_with(&["a"], |spec| spec.idle_timeout = std::time::Duration::ZERO)
        .await
        .unwrap();
    h.wait_state("a", Asleep).await;
    let asleep = drain(&mut sub).await;
    let last = asleep.last().unwrap();
    assert_eq!(
        (last.kind, last.reason.as_deref()),
        (EventKind::Asleep, Some("idle"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_is_told_created_then_deleted() {
    let h = Harness::new().await;
    let mut sub = h.lifecycle().events().subscribe(None);
    h.create_with(&["a"], |spec| spec.image = "missing".into())
        .await
        .unwrap_err();
    assert!(
        drain(&mut sub).await.is_empty(),
        "nothing was made: nothing told"
    );
    h.fake()
        .fail(Call::Start, 1, crate::runtime::fake::Fault::Other);
    h.create(&["b"]).await.unwrap_err();
    let told = kinds(&drain(&mut sub).await);
    assert_eq!(told.first(), Some(&EventKind::Created));
    assert_eq!(told.last(), Some(&EventKind::Deleted));
}
