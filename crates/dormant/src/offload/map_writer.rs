//! Keeps the nginx map in step with the container table: after each burst
//! of transitions (debounced), the map's text is made again; only when its
//! entries changed is the file replaced and nginx reloaded, at most one
//! reload per `MIN_RELOAD_GAP`. A failed write or reload is logged and
//! tried again with a backoff; none of it ever waits on, or holds up, a
//! transition: lifecycle only pokes the table's change signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::nginx_map;
use super::reload;
use crate::lifecycle::table::ContainerTable;
use crate::metrics::Metrics;

/// How long a burst of transitions may go on before the map is written:
/// a herd of wakes or a sweep's sleeps becomes one reload.
const DEBOUNCE: Duration = Duration::from_millis(25);
/// Fewest time between two reloads: each starts new nginx workers.
const MIN_RELOAD_GAP: Duration = Duration::from_millis(200);
/// First wait after a failed write or reload; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the writer needs.
pub struct MapWriter {
    pub table: Arc<ContainerTable>,
    pub base_domain: String,
    pub path: PathBuf,
    pub reload: String,
    /// dormant's proxy as nginx reaches it: the wake endpoint's upstream.
    pub wake: SocketAddr,
    pub metrics: Arc<Metrics>,
}

/// Where the writer stands: what is on disk, whether nginx has read it.
struct Progress {
    generation: u64,
    /// The entries last written, `None` before the first write (and after
    /// a failed one).
    written: Option<Vec<(String, SocketAddr)>>,
    /// The file changed (or dormant just started) and nginx has not
    /// reloaded since.
    reload_due: bool,
    last_reload: Option<Instant>,
    /// Write or reload failures in a row, for the backoff.
    failures: u32,
}

impl MapWriter {
    /// Follows the table until `stopped`.
    pub async fn run(self, stopped: impl std::future::Future<Output = ()>) {
        tokio::pin!(stopped);
        tracing::info!(map = %self.path.display(), reload = %self.reload, "keeping nginx's map");
        let mut progress = Progress {
            generation: 0,
            written: None,
            // nginx may hold an older map than the one written now.
            reload_due: true,
            last_reload: None,
            failures: 0,
        };
        loop {
            let retry_at = self.step(&mut progress).await;
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.table.changed() => {
                    // Let the rest of the burst arrive.
                    tokio::time::sleep(DEBOUNCE).await;
                }
                () = retry => {}
                () = &mut stopped => return,
            }
        }
    }

    /// Writes the map if its entries changed, then reloads nginx if due.
    /// Returns when to try again after a failure (or a reload held back by
    /// `MIN_RELOAD_GAP`).
    async fn step(&self, progress: &mut Progress) -> Option<Instant> {
        let running = self.table.running_public_upstreams();
        if progress.written.as_ref() != Some(&running) {
            let generation = progress.generation + 1;
            let (text, refused) =
                nginx_map::render(&self.base_domain, self.wake, &running, generation);
            for host in refused {
                tracing::warn!(%host, "not a plain hostname: left out of nginx's map, served through dormant");
            }
            let path = self.path.clone();
            let written =
                tokio::task::spawn_blocking(move || nginx_map::write_atomically(&path, &text))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match written {
                Ok(()) => {
                    progress.generation = generation;
                    progress.written = Some(running);
                    progress.reload_due = true;
                    tracing::debug!(generation, map = %self.path.display(), "nginx map written");
                }
                Err(e) => {
                    progress.written = None;
                    tracing::warn!(map = %self.path.display(), error = %e, "cannot write nginx's map (--nginx-map); trying again");
                    return Some(backoff(progress));
                }
            }
        }
        if !progress.reload_due {
            return None;
        }
        if let Some(last) = progress.last_reload {
            let allowed = last + MIN_RELOAD_GAP;
            if Instant::now() < allowed {
                return Some(allowed);
            }
        }
        progress.last_reload = Some(Instant::now());
        match reload::run(&self.reload).await {
            Ok(()) => {
                self.metrics.nginx_reloads.inc();
                progress.reload_due = false;
                progress.failures = 0;
                tracing::debug!(generation = progress.generation, "nginx reloaded");
                None
            }
            Err(why) => {
                self.metrics.nginx_reload_failures.inc();
                tracing::warn!(%why, generation = progress.generation, "nginx did not reload (--nginx-reload); trying again. Until it does, nginx sends hosts where the last map it read says, and dormant's fallback covers what fails");
                Some(backoff(progress))
            }
        }
    }
}

fn backoff(progress: &mut Progress) -> Instant {
    let wait = FIRST_BACKOFF
        .saturating_mul(1 << progress.failures.min(16))
        .min(MAX_BACKOFF);
    progress.failures += 1;
    Instant::now() + wait
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ContainerState, WakeStrategy};
    use crate::lifecycle::table::{RouteConfig, RouteStatus};

    const CONFIG: RouteConfig = RouteConfig {
        idle_timeout: Duration::from_secs(60),
        wake: WakeStrategy::Hold,
        archive_after: Duration::from_secs(3600),
        memory_bytes: 1 << 20,
    };

    fn lines(path: &std::path::Path) -> usize {
        std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}");
    }

    /// A real map file and a real reload command (it counts its runs, and
    /// fails while `fail` exists).
    #[tokio::test]
    async fn bursts_make_one_reload_unchanged_maps_none_and_failed_reloads_are_retried() {
        let dir =
            std::env::temp_dir().join(format!("dormant-writer-{}", crate::token::random_hex(4)));
        std::fs::create_dir_all(&dir).unwrap();
        let (map, tried, reloaded, fail) = (
            dir.join("map.conf"),
            dir.join("tried"),
            dir.join("reloaded"),
            dir.join("fail"),
        );
        let table = Arc::new(ContainerTable::new());
        let at = |last: u8| -> SocketAddr { format!("172.18.0.{last}:8080").parse().unwrap() };
        // Inserted, then published, as lifecycle does.
        let a = table.insert_for_test(
            "a",
            CONFIG,
            RouteStatus::not_serving(ContainerState::Starting, None),
        );
        table.publish_for_test(&a, RouteStatus::running(at(2)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = Arc::new(Metrics::new());
        let writer = MapWriter {
            table: table.clone(),
            base_domain: "localhost".into(),
            path: map.clone(),
            reload: format!(
                "echo >> {}; test ! -e {} && echo >> {}",
                tried.display(),
                fail.display(),
                reloaded.display()
            ),
            wake: "127.0.0.1:8080".parse().unwrap(),
            metrics: metrics.clone(),
        };
        let running = tokio::spawn(writer.run(async move {
            let _ = stopped.await;
        }));
        let text = || std::fs::read_to_string(&map).unwrap_or_default();

        until("the first map and reload", || lines(&reloaded) == 1).await;
        assert!(text().contains("generation 1:"));
        assert!(text().contains("a.localhost dormant-c-a-172-18-0-2-8080;"));

        // A burst: two containers start at once, one write, one reload.
        let b = table.insert_for_test(
            "b",
            CONFIG,
            RouteStatus::not_serving(ContainerState::Starting, None),
        );
        let c = table.insert_for_test(
            "c",
            CONFIG,
            RouteStatus::not_serving(ContainerState::Starting, None),
        );
        table.publish_for_test(&b, RouteStatus::running(at(3)));
        table.publish_for_test(&c, RouteStatus::running(at(4)));
        until("b and c in the map", || lines(&reloaded) == 2).await;
        assert!(text().contains("generation 2:"), "{}", text());
        assert!(text().contains("b.localhost") && text().contains("c.localhost"));

        // A change that is not the map's (an asleep container goes on
        // sleeping): no write, no reload.
        let d = table.insert_for_test(
            "d",
            CONFIG,
            RouteStatus::not_serving(ContainerState::Asleep, None),
        );
        table.publish_for_test(
            &d,
            RouteStatus::not_serving(ContainerState::Asleep, Some("idle")),
        );
        tokio::time::sleep(DEBOUNCE * 4).await;
        // Napping leaves the map: generation 3.
        table.publish_for_test(&c, RouteStatus::napping(at(4)));
        until("c out of the map", || lines(&reloaded) == 3).await;
        assert!(text().contains("generation 3:"), "{}", text());
        assert!(!text().contains("c.localhost"));

        // A failing reload is tried again until it works.
        std::fs::write(&fail, "").unwrap();
        table.publish_for_test(&b, RouteStatus::not_serving(ContainerState::Stopping, None));
        until("a failed reload", || lines(&tried) == 4).await;
        assert_eq!(lines(&reloaded), 3);
        assert!(
            !text().contains("b.localhost"),
            "the file is written all the same"
        );
        std::fs::remove_file(&fail).unwrap();
        until("the reload tried again", || lines(&reloaded) == 4).await;
        assert_eq!(metrics.nginx_reloads.get(), 4);
        assert_eq!(metrics.nginx_reload_failures.get(), 1);

        stop.send(()).unwrap();
        running.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
