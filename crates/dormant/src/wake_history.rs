//! Wakes of the last hour, minute by minute: how many finished and how long
//! they took. Sixty fixed buckets, so memory stays the same however many
//! wakes there are; the dashboard draws its chart from them (`GET /v1/stats`).

use std::sync::Mutex;

use crate::domain::UnixMillis;

/// Minutes kept: one hour.
pub const MINUTES: usize = 60;
const MINUTE_MS: i64 = 60_000;

/// One minute's wakes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    /// Minutes since the Unix epoch this bucket counts; a bucket whose
    /// minute is not the one a slot stands for now is stale and reads as 0.
    minute: i64,
    wakes: u64,
    sum_ms: u64,
    max_ms: u64,
}

/// One minute as read back, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeMinute {
    pub minute_start: UnixMillis,
    pub wakes: u64,
    /// Mean wake duration; 0 when there were no wakes.
    pub avg_ms: u64,
    pub max_ms: u64,
}

/// The ring of the last hour's minutes, slot = minute mod 60.
#[derive(Debug)]
pub struct WakeHistory {
    buckets: Mutex<[Bucket; MINUTES]>,
}

impl Default for WakeHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl WakeHistory {
    pub fn new() -> Self {
        Self {
            buckets: Mutex::new([Bucket::default(); MINUTES]),
        }
    }

    /// Counts a wake that finished at `at` and took `wake_ms`.
    pub fn record(&self, at: UnixMillis, wake_ms: u64) {
        let minute = at.div_euclid(MINUTE_MS);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = &mut buckets[slot(minute)];
        if bucket.minute != minute {
            *bucket = Bucket {
                minute,
                ..Bucket::default()
            };
        }
        bucket.wakes += 1;
        bucket.sum_ms = bucket.sum_ms.saturating_add(wake_ms);
        bucket.max_ms = bucket.max_ms.max(wake_ms);
    }

    /// The sixty minutes up to and including the one `now` falls in,
    /// oldest first; minutes without wakes read as zeros.
    pub fn last_hour(&self, now: UnixMillis) -> Vec<WakeMinute> {
        let current = now.div_euclid(MINUTE_MS);
        let buckets = *self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        (current - MINUTES as i64 + 1..=current)
            .map(|minute| {
                let bucket = buckets[slot(minute)];
                let (wakes, sum_ms, max_ms) = if bucket.minute == minute {
                    (bucket.wakes, bucket.sum_ms, bucket.max_ms)
                } else {
                    (0, 0, 0)
                };
                WakeMinute {
                    minute_start: minute * MINUTE_MS,
                    wakes,
                    avg_ms: sum_ms.checked_div(wakes).unwrap_or(0),
                    max_ms,
                }
            })
            .collect()
    }
}

fn slot(minute: i64) -> usize {
    minute.rem_euclid(MINUTES as i64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixMillis = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE_MS;

    #[test]
    fn counts_averages_and_maxes_per_minute() {
        let history = WakeHistory::new();
        history.record(T0 + 1_000, 100);
        history.record(T0 + 59_999, 300);
        history.record(T0 + MINUTE_MS, 50);
        let hour = history.last_hour(T0 + MINUTE_MS + 10);
        assert_eq!(hour.len(), MINUTES);
        assert_eq!(
            hour[MINUTES - 2],
            WakeMinute {
                minute_start: T0,
                wakes: 2,
                avg_ms: 200,
                max_ms: 300
            }
        );
        assert_eq!(
            hour[MINUTES - 1],
            WakeMinute {
                minute_start: T0 + MINUTE_MS,
                wakes: 1,
                avg_ms: 50,
                max_ms: 50
            }
        );
        assert!(hour[..MINUTES - 2].iter().all(|m| m.wakes == 0));
        assert_eq!(hour[0].minute_start, T0 - 58 * MINUTE_MS);
    }

    #[test]
    fn minutes_older_than_an_hour_drop_out_and_their_slot_is_reused() {
        let history = WakeHistory::new();
        history.record(T0, 100);
        // Still inside the hour 59 minutes later.
        let later = T0 + 59 * MINUTE_MS;
        assert_eq!(history.last_hour(later)[0].wakes, 1);
        // An hour later the same slot stands for a new minute: the old
        // count reads as nothing, and a new wake starts it afresh.
        let hour_later = T0 + 60 * MINUTE_MS;
        assert!(history.last_hour(hour_later).iter().all(|m| m.wakes == 0));
        history.record(hour_later + 5, 7);
        let minute = history.last_hour(hour_later)[MINUTES - 1];
        assert_eq!((minute.wakes, minute.avg_ms, minute.max_ms), (1, 7, 7));
    }
}
