//! Token buckets that keep floods from waking containers: one per client
//! address (IPv6 by its /64) for requests that would wake a container or
//! that name an unknown host, and one for the whole host on wakes started.
//!
//! Each bucket is GCRA ("generic cell rate algorithm"): a single number per
//! client, the time at which its bucket will be full again. A client whose
//! bucket is full again holds nothing worth keeping, so its entry may go.
//!
//! Memory is bounded: at most [`MAX_CLIENTS`] entries, in shards (one mutex
//! each, so proxy threads rarely wait on each other). A full shard first
//! drops the entries whose bucket is full again; if it is still full it
//! drops the eighth of its entries nearest to full. So an attacker who
//! rotates addresses to fill the map pushes out the clients that lose least
//! (nearly full buckets, most often the attacker's own one-request entries),
//! and the entry of a client who spent its burst is dropped last: rotating
//! addresses does not reset one's own bucket. What it cannot stop is an
//! attacker with more addresses than the map holds; the host-wide cap on
//! wakes started (`--max-wake-rate`) bounds what those can do.

use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Most clients the limiter remembers at once, over all shards (some 40
/// bytes each).
pub const MAX_CLIENTS: usize = 100_000;
/// Shards of the client map: enough that threads rarely meet on one lock.
const SHARDS: usize = 16;
/// The share of a full shard dropped at once when nothing in it has
/// expired: evicting in batches keeps the cost per insert constant.
const EVICT_DIVISOR: usize = 8;

/// A rate, `20/m`: so many events per second (`s`), minute (`m`) or hour
/// (`h`). `off` (or `0`) turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Duration,
}

impl Rate {
    pub const OFF: Rate = Rate {
        count: 0,
        period: Duration::from_secs(1),
    };

    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    pub fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    fn new(count: u32, period: Duration) -> Self {
        Self { count, period }
    }

    pub fn is_off(&self) -> bool {
        self.count == 0
    }

    /// How many events the rate allows per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Time between two events at this rate.
    fn interval(&self) -> Duration {
        self.period / self.count.max(1)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text == "0" {
            return Ok(Self::OFF);
        }
        let wrong = || format!("`{text}` is not a rate like 20/m (per s, m or h), or `off`");
        let (count, unit) = text.split_once('/').ok_or_else(wrong)?;
        let count: u32 = count.trim().parse().map_err(|_| wrong())?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(wrong()),
        };
        if count > 1_000_000 {
            return Err(format!("`{text}`: at most 1000000 per period"));
        }
        Ok(Self::new(count, period))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_off() {
            return f.write_str("off");
        }
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A rate and the burst allowed on top, as GCRA numbers in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    /// Time one request's token takes to come back.
    interval: u64,
    /// How far ahead of now a bucket may run: `burst` intervals.
    tolerance: u64,
}

impl Gcra {
    fn new(rate: Rate, burst: u32) -> Self {
        let interval = u64::try_from(rate.interval().as_nanos()).unwrap_or(u64::MAX);
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// Takes a token from the bucket that is full again at `full_at`, at
    /// `now`: the new `full_at`, or how long until a token is back.
    fn take(&self, full_at: u64, now: u64) -> Result<u64, Duration> {
        let next = full_at.max(now).saturating_add(self.interval);
        let ahead = next - now;
        if ahead > self.tolerance {
            Err(Duration::from_nanos(ahead - self.tolerance))
        } else {
            Ok(next)
        }
    }
}

/// Nanoseconds since the limiter was made: a timeline plain integers can
/// hold. Tokio's clock, so tests can pause and advance it.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Who a bucket belongs to: an IPv4 address, or the /64 an IPv6 address is
/// in (whoever has one address of a /64 usually has all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            // As `::ffff:a.b.c.d`: its low 64 bits are never zero, unlike
            // every IPv6 key's, so the two kinds never meet.
            IpAddr::V4(v4) => Self(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => Self(u128::from(v6) & !u128::from(u64::MAX)),
        }
    }
}

/// A token bucket per client, memory bounded (see the module's notes).
#[derive(Debug)]
pub struct ClientLimiter {
    gcra: Gcra,
    clock: Clock,
    /// Picks the shard; random per process, so nobody can aim at one.
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<ClientKey, u64>>]>,
    shard_capacity: usize,
}

impl ClientLimiter {
    /// `None` when `rate` is off.
    pub fn new(rate: Rate, burst: u32) -> Option<Self> {
        Self::with_capacity(rate, burst, MAX_CLIENTS)
    }

    fn with_capacity(rate: Rate, burst: u32, max_clients: usize) -> Option<Self> {
        if rate.is_off() {
            return None;
        }
        Some(Self {
            gcra: Gcra::new(rate, burst),
            clock: Clock::new(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_capacity: (max_clients / SHARDS).max(1),
        })
    }

    /// Takes a token of `client`'s bucket, or says how long until one is
    /// back.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let key = ClientKey::of(client);
        let now = self.clock.now();
        let shard = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        let mut map = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.shard_capacity && !map.contains_key(&key) {
            make_room(&mut map, now);
        }
        match map.entry(key) {
            Entry::Occupied(mut entry) => {
                *entry.get_mut() = self.gcra.take(*entry.get(), now)?;
            }
            Entry::Vacant(entry) => {
                entry.insert(self.gcra.take(now, now)?);
            }
        }
        Ok(())
    }

    /// Clients remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Drops the entries whose bucket is full again; failing that, the eighth
/// nearest to full.
fn make_room(map: &mut HashMap<ClientKey, u64>, now: u64) {
    let before = map.len();
    map.retain(|_, full_at| *full_at > now);
    if map.len() < before {
        return;
    }
    let mut full_at: Vec<u64> = map.values().copied().collect();
    let nth = (full_at.len() / EVICT_DIVISOR).min(full_at.len() - 1);
    let (_, &mut threshold, _) = full_at.select_nth_unstable(nth);
    map.retain(|_, full_at| *full_at > threshold);
}

/// One token bucket for the whole host: wakes started.
#[derive(Debug)]
pub struct HostLimiter {
    gcra: Gcra,
    clock: Clock,
    full_at: AtomicU64,
}

impl HostLimiter {
    /// `None` when `rate` is off. The burst is one period's count.
    pub fn new(rate: Rate) -> Option<Self> {
        if rate.is_off() {
            return None;
        }
        Some(Self {
            gcra: Gcra::new(rate, rate.count()),
            clock: Clock::new(),
            full_at: AtomicU64::new(0),
        })
    }

    /// Takes a token, or says how long until one is back.
    pub fn check(&self) -> Result<(), Duration> {
        let now = self.clock.now();
        let mut seen = self.full_at.load(Ordering::Relaxed);
        loop {
            let next = self.gcra.take(seen, now)?;
            match self.full_at.compare_exchange_weak(
                seen,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => seen = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn rates_parse_and_print() {
        assert_eq!("20/m".parse::<Rate>().unwrap(), Rate::per_minute(20));
        assert_eq!(" 10/s ".parse::<Rate>().unwrap(), Rate::per_second(10));
        assert_eq!("off".parse::<Rate>().unwrap(), Rate::OFF);
        assert_eq!("0".parse::<Rate>().unwrap(), Rate::OFF);
        assert_eq!("5/h".parse::<Rate>().unwrap().to_string(), "5/h");
        assert_eq!("20/m".parse::<Rate>().unwrap().to_string(), "20/m");
        for bad in ["20", "20/d", "x/m", "-1/m", "/m", "20/", "2000000/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} parsed");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_allowed_then_one_token_per_interval() {
        // 20/m: a token every 3 s; a burst of 10.
        let limiter = ClientLimiter::new(Rate::per_minute(20), 10).unwrap();
        let client = ip("203.0.113.7");
        for i in 0..10 {
            assert_eq!(limiter.check(client), Ok(()), "request {i} of the burst");
        }
        assert_eq!(limiter.check(client), Err(Duration::from_secs(3)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limiter.check(client), Err(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(limiter.check(client), Ok(()));
        assert_eq!(limiter.check(client), Err(Duration::from_secs(3)));
        // Refused requests cost nothing: the wait does not grow.
        assert_eq!(limiter.check(client), Err(Duration::from_secs(3)));
        // After a whole burst's time the bucket is full again.
        tokio::time::advance(Duration::from_secs(30)).await;
        for _ in 0..10 {
            assert_eq!(limiter.check(client), Ok(()));
        }
        assert!(limiter.check(client).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn clients_have_their_own_buckets() {
        let limiter = ClientLimiter::new(Rate::per_minute(1), 1).unwrap();
        assert_eq!(limiter.check(ip("192.0.2.1")), Ok(()));
        assert_eq!(limiter.check(ip("192.0.2.1")), Err(Duration::from_secs(60)));
        assert_eq!(limiter.check(ip("192.0.2.2")), Ok(()));
        // The same address seen over IPv4 and as a v4-mapped IPv6 address.
        assert!(limiter.check(ip("::ffff:192.0.2.2")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_clients_are_keyed_by_their_64() {
        let limiter = ClientLimiter::new(Rate::per_minute(1), 2).unwrap();
        assert_eq!(limiter.check(ip("2001:db8:1:2::1")), Ok(()));
        assert_eq!(limiter.check(ip("2001:db8:1:2:ffff:1:2:3")), Ok(()));
        assert!(limiter.check(ip("2001:db8:1:2::99")).is_err());
        assert_eq!(limiter.check(ip("2001:db8:1:3::1")), Ok(()));
        assert_ne!(
            ClientKey::of(ip("::ffff:0.0.0.0")),
            ClientKey::of(ip("::")),
            "v4 keys never meet v6 /64 keys"
        );
    }

    #[test]
    fn an_off_rate_makes_no_limiter() {
        assert!(ClientLimiter::new(Rate::OFF, 10).is_none());
        assert!(HostLimiter::new(Rate::OFF).is_none());
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_bounded_and_full_buckets_expire() {
        let limiter = ClientLimiter::with_capacity(Rate::per_second(1), 5, 1_600).unwrap();
        for n in 0..10_000 {
            assert_eq!(limiter.check(v4(n)), Ok(()));
        }
        assert!(limiter.len() <= 1_600, "{} clients kept", limiter.len());
        // One second later every one-request bucket is full again: the next
        // insert into a full shard drops them all there.
        tokio::time::advance(Duration::from_secs(1)).await;
        for n in 20_000..20_200 {
            assert_eq!(limiter.check(v4(n)), Ok(()));
        }
        assert!(limiter.len() <= 1_600);
        assert!(
            limiter.len() < 1_000,
            "expired entries were dropped: {}",
            limiter.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rotating_addresses_does_not_reset_a_spent_bucket() {
        let limiter = ClientLimiter::with_capacity(Rate::per_minute(1), 3, 160).unwrap();
        let attacker = ip("198.51.100.1");
        for _ in 0..3 {
            assert_eq!(limiter.check(attacker), Ok(()));
        }
        assert!(limiter.check(attacker).is_err());
        // Many fresh addresses, each with one request: the map fills and
        // evicts, but the spent bucket is the last to go.
        for n in 0..5_000 {
            let _ = limiter.check(v4(n));
        }
        assert!(limiter.len() <= 160);
        assert!(
            limiter.check(attacker).is_err(),
            "the spent bucket was reset"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_host_limiter_caps_wakes_per_second() {
        let limiter = HostLimiter::new(Rate::per_second(10)).unwrap();
        for _ in 0..10 {
            assert_eq!(limiter.check(), Ok(()));
        }
        assert_eq!(limiter.check(), Err(Duration::from_millis(100)));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(limiter.check(), Ok(()));
        assert!(limiter.check().is_err());
    }

    #[test]
    fn the_host_limiter_is_exact_under_contention() {
        let limiter = std::sync::Arc::new(HostLimiter::new(Rate::per_minute(100)).unwrap());
        let granted = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (limiter, granted) = (limiter.clone(), granted.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if limiter.check().is_ok() {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // 100 of burst, plus at most a token or two back while it ran.
        let granted = granted.load(Ordering::Relaxed);
        assert!((100..=102).contains(&granted), "{granted} granted");
    }
}
