//! Wake: a request (or the API) for a container that is not running gets it
//! started, or restored and started, and waits until the app answers.
//!
//! A napping container's wake is an unpause (`nap.rs`): no start, no probe.
//!
//! One wake per container at a time: it runs in a task of its own (so a
//! client hanging up never cuts a start short), and every concurrent caller
//! joins it and hears its verdict, so Docker sees one start. The verdict
//! leaves the container in a defined state: `running`; back `asleep` or
//! `archived` when there was no room (503, not a failure); or `failed` with
//! the reason, backing off before the next try so a container that crashes
//! at start is not restarted in a tight loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::context::{Change, Context};
use super::nap::{self, Unpaused};
use super::table::{Owner, Route, RouteStatus, WakeOutcome};
use super::{bring_up, capacity, flush, restore, LifecycleError};
use crate::domain::ContainerState;
use crate::proxy::waker::{WakeError, WakeErrorKind};

/// Waiters give a wake this much longer than `--wake-timeout`, so they hear
/// its own verdict rather than a timeout of their own.
const WAIT_MARGIN: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where the container answers, waking it first if needed.
pub(super) async fn ready_upstream(
    ctx: &Arc<Context>,
    route: &Arc<Route>,
) -> Result<SocketAddr, WakeError> {
    let status = route.status();
    match (status.state, status.upstream) {
        (ContainerState::Running, Some(upstream)) => return Ok(upstream),
        (ContainerState::Deleted, _) => return Err(deleted()),
        _ => {}
    }
    if let Some(refused) = backing_off(&status) {
        return Err(refused);
    }
    let mut verdict = begin(ctx, route);
    let deadline = Instant::now() + ctx.config.wake_timeout + WAIT_MARGIN;
    let heard = tokio::time::timeout_at(deadline, verdict.wait_for(Option::is_some))
        .await
        .map(|seen| seen.map(|outcome| outcome.clone()));
    match heard {
        Ok(Ok(outcome)) => outcome.unwrap_or_else(|| Err(vanished())),
        Ok(Err(_)) => Err(vanished()),
        Err(_) => Err(WakeError {
            kind: WakeErrorKind::TimedOut,
            reason: format!(
                "it did not become ready within {:?}",
                ctx.config.wake_timeout
            ),
            retry_after: None,
        }),
    }
}

/// Starts a wake task unless one is in flight; returns where its verdict
/// will be told.
pub(super) fn begin(
    ctx: &Arc<Context>,
    route: &Arc<Route>,
) -> watch::Receiver<Option<WakeOutcome>> {
    let (verdict, runner) = route.join_or_start_wake();
    if let Some(tell) = runner {
        let ctx = ctx.clone();
        let route = route.clone();
        ctx.clone().spawn(async move {
            let owner = route.own().await;
            let outcome = run(&ctx, &owner, &tell).await;
            tell.send_replace(Some(outcome));
        });
    }
    verdict
}

/// The wake itself, owning the container. An unpause tells `tell` its
/// verdict early, before its row is written.
async fn run(
    ctx: &Arc<Context>,
    owner: &Owner,
    tell: &watch::Sender<Option<WakeOutcome>>,
) -> WakeOutcome {
    let status = owner.status();
    match status.state {
        ContainerState::Running => {
            if let Some(upstream) = status.upstream {
                return Ok(upstream);
            }
        }
        ContainerState::Deleted => return Err(deleted()),
        ContainerState::Creating => {
            return Err(failed("its creation did not finish".into()));
        }
        // Paused, not stopped: an unpause is the whole wake, unless Docker
        // no longer runs it.
        ContainerState::Napping => {
            if let Some(upstream) = status.upstream {
                let thawed = |upstream| {
                    tell.send_replace(Some(Ok(upstream)));
                };
                match nap::unpause(ctx, owner, upstream, thawed).await? {
                    Unpaused::Serving(upstream) => return Ok(upstream),
                    Unpaused::NotRunning => {}
                }
            }
        }
        _ => {}
    }
    if let Some(refused) = backing_off(&status) {
        return Err(refused);
    }
    let name = owner.name();
    let started = Instant::now();
    let deadline = started + ctx.config.wake_timeout;
    let record = owner.record();
    let archived = record.snapshot.is_some() && record.docker_id.is_none();
    let mut restored = None;
    if archived {
        // Room first: a restore is wasted work for a container that cannot run.
        let admitted =
            capacity::admit(ctx, name, &record.owner, record.spec.memory_bytes, deadline).await;
        if let Err(error) = admitted {
            return Err(no_room(ctx, owner, error).await);
        }
        match restore::run(ctx, owner).await {
            Ok(done) => restored = Some(done),
            // Not the container's fault: it stays archived, nothing lost.
            Err(LifecycleError::NoSpace { reason, .. }) => {
                let error = WakeError {
                    kind: WakeErrorKind::NoSpace,
                    reason,
                    retry_after: Some(super::error::NO_SPACE_RETRY),
                };
                return Err(no_room(ctx, owner, error).await);
            }
            Err(e) => return Err(fail(ctx, owner, reason_of(e)).await),
        }
    }
    let starting = RouteStatus::not_serving(ContainerState::Starting, None);
    if let Err(e) = ctx.commit(owner, starting, Change::default()).await {
        flush_restored(ctx, owner, restored);
        return Err(fail(ctx, owner, reason_of(e)).await);
    }
    let brought_up = bring_up::run(ctx, owner, deadline).await;
    flush_restored(ctx, owner, restored);
    match brought_up {
        Ok(upstream) => {
            woke(ctx, owner, upstream, started).await;
            Ok(upstream)
        }
        Err(LifecycleError::Wake { error, .. })
            if matches!(error.kind, WakeErrorKind::NoRoom | WakeErrorKind::QuotaFull) =>
        {
            Err(no_room(ctx, owner, error).await)
        }
        Err(e) => {
            let reason = reason_of(e);
            // Leave nothing half-started: a container whose app never
            // answered is stopped until the next try.
            let docker_name = owner.record().docker_name();
            if let Err(e) = ctx.runtime.stop(&docker_name, 0).await {
                tracing::debug!(container = %name, error = %e, "stop after a failed wake");
            }
            Err(fail(ctx, owner, reason).await)
        }
    }
}

/// Makes what a restore wrote durable, in the background, once the app
/// answers or failed to: the start's own writes (Docker's, the app's) would
/// otherwise queue behind the flush on the same disk. `starting` is
/// committed by then, so a crash from here on leaves a restore that
/// start-up finishes (flushes again), never undoes.
fn flush_restored(ctx: &Arc<Context>, owner: &Owner, restored: Option<restore::Restored>) {
    if let Some(restored) = restored {
        flush::spawn(ctx, owner, restored.trees, restored.snapshot_file);
    }
}

/// Records a successful wake.
async fn woke(ctx: &Context, owner: &Owner, upstream: SocketAddr, started: Instant) {
    let name = owner.name();
    let took = started.elapsed();
    ctx.metrics.wakes.inc();
    ctx.metrics.wake_duration.observe(took.as_secs_f64());
    owner.reset_wake_failures();
    owner.touch();
    let change = Change {
        wake_ms: Some(took.as_millis() as u64),
        ..Change::default()
    };
    if let Err(e) = ctx
        .commit(owner, RouteStatus::running(upstream), change)
        .await
    {
        tracing::error!(container = %name, error = %e, "cannot record state running; serving it anyway");
        ctx.publish(owner, RouteStatus::running(upstream));
        return;
    }
    tracing::info!(container = %name, took_ms = took.as_millis() as u64, %upstream, "woke");
}

/// No room (or no disk, or its tenant's running quota is full) could be
/// had: not a failure of the container. It goes back to how it slept, and
/// the waiters get 503 (429 for the quota) with `Retry-After`.
async fn no_room(ctx: &Context, owner: &Owner, error: WakeError) -> WakeError {
    let record = owner.record();
    let state = if record.docker_id.is_none() && record.snapshot.is_some() {
        ContainerState::Archived
    } else {
        ContainerState::Asleep
    };
    tracing::warn!(container = %owner.name(), reason = %error.reason, "no room to wake it");
    ctx.commit_or_publish(owner, RouteStatus::not_serving(state, Some(&error.reason)))
        .await;
    error
}

/// Records a failed wake and when the next may be tried.
async fn fail(ctx: &Context, owner: &Owner, reason: String) -> WakeError {
    ctx.metrics.wake_failures.inc();
    let failures = owner.note_wake_failure();
    let backoff = backoff_after(failures);
    tracing::error!(container = %owner.name(), %reason, failures, retry_in = ?backoff, "wake failed");
    let status = RouteStatus::failed(&reason, Instant::now() + backoff);
    ctx.commit_or_publish(owner, status).await;
    WakeError {
        retry_after: Some(backoff),
        ..failed(reason)
    }
}

/// Why a wake failed, without the container's name: every answer that
/// carries it names the container already.
fn reason_of(error: LifecycleError) -> String {
    match error {
        LifecycleError::NotReady { reason, .. } => reason,
        LifecycleError::Runtime { source, .. } => source.to_string(),
        LifecycleError::Snapshot { reason, .. } => format!("its snapshot: {reason}"),
        other => other.to_string(),
    }
}

/// A `failed` container still backing off refuses new wakes until then.
fn backing_off(status: &RouteStatus) -> Option<WakeError> {
    let retry_at = status.retry_at?;
    let now = Instant::now();
    (status.state == ContainerState::Failed && retry_at > now).then(|| WakeError {
        kind: WakeErrorKind::BackingOff,
        reason: status.reason.as_deref().unwrap_or("it failed").to_owned(),
        retry_after: Some(retry_at - now),
    })
}

/// 1 s after the first failure, doubling up to a minute.
fn backoff_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

fn failed(reason: String) -> WakeError {
    WakeError {
        kind: WakeErrorKind::Failed,
        reason,
        retry_after: None,
    }
}

fn deleted() -> WakeError {
    WakeError {
        kind: WakeErrorKind::Deleted,
        reason: "it was deleted".into(),
        retry_after: None,
    }
}

/// The wake task ended without a verdict: only a panic does that.
fn vanished() -> WakeError {
    failed("the wake ended without a verdict (see dormant's log)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff_after(1), Duration::from_secs(1));
        assert_eq!(backoff_after(2), Duration::from_secs(2));
        assert_eq!(backoff_after(4), Duration::from_secs(8));
        assert_eq!(backoff_after(7), Duration::from_secs(60));
        assert_eq!(backoff_after(1000), Duration::from_secs(60));
    }
}
