//! Which requests may wake a container and which count as activity: bots
//! and monitors never wake one nor keep one awake, and floods from one
//! client (or all of them) cannot wake the host. The proxy asks it at three
//! points of a request; a request for a running container only ever pays
//! for the first, the cheap one ([`WakeFilter::visitor`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{request::Parts, HeaderMap, Method, Response};
use http_body_util::Full;
use prometheus_client::metrics::counter::Counter;

use super::error::ProxyError;
use super::forwarded::{client_ip, TrustedProxies};
use super::no_wake::{AgentList, AgentMatcher, NoWake};
use super::rate_limit::{ClientLimiter, HostLimiter, Rate};
use super::waking::accepts_html;
use crate::domain::ContainerState;
use crate::error_kind::ErrorKind;
use crate::lifecycle::table::{Route, RouteStatus};
use crate::metrics::Metrics;
use tokio::time::Instant;

/// `dormant serve`'s settings for the filter.
#[derive(Debug, Clone)]
pub struct WakeFilterConfig {
    /// `--no-wake-agents`.
    pub no_wake_agents: AgentList,
    /// `--activity-ignores-agents`.
    pub activity_ignores_agents: bool,
    /// `--wake-rate` and `--wake-burst`, per client.
    pub wake_rate: Rate,
    pub wake_burst: u32,
    /// `--unknown-host-rate` and `--unknown-host-burst`, per client.
    pub unknown_host_rate: Rate,
    pub unknown_host_burst: u32,
    /// `--max-wake-rate`, for the whole host.
    pub max_wake_rate: Rate,
    /// `--trusted-proxies`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The client's `--wake-rate`.
    Wake,
    /// The client's `--unknown-host-rate`.
    UnknownHost,
    /// The host's `--max-wake-rate`.
    HostWakes,
}

impl Limit {
    const ALL: [Limit; 3] = [Self::Wake, Self::UnknownHost, Self::HostWakes];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wake => "wake",
            Self::UnknownHost => "unknown_host",
            Self::HostWakes => "max_wake_rate",
        }
    }

    /// What the person is told.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Wake => "too many requests to wake sleeping containers came from your address",
            Self::UnknownHost => "too many requests for unknown hostnames came from your address",
            Self::HostWakes => "this host is starting as many containers as it may just now",
        }
    }

    /// A client's own excess is 429; the host's, everyone's, is 503.
    pub fn error_kind(self) -> ErrorKind {
        match self {
            Self::Wake | Self::UnknownHost => ErrorKind::RateLimited,
            Self::HostWakes => ErrorKind::Overloaded,
        }
    }
}

/// What the filter learnt of a request once, for the later steps.
#[derive(Debug, Clone, Copy)]
pub struct Visitor {
    /// `/robots.txt` or `/favicon.ico`.
    by_path: Option<NoWake>,
    /// Whether `User-Agent` is a listed agent; `None` when not looked at
    /// (no need while the container runs, unless activity ignores agents).
    listed_agent: Option<bool>,
    activity_ignores_agents: bool,
}

impl Visitor {
    /// Whether the request records activity on its container.
    pub fn counts_as_activity(&self) -> bool {
        !self.activity_ignores_agents
            || (self.by_path.is_none() && self.listed_agent == Some(false))
    }
}

/// Shared by every proxy thread; its limiters are the only shared state
/// a request may write, and only one that would start a wake (or names an
/// unknown host) does.
pub struct WakeFilter {
    agents: AgentMatcher,
    activity_ignores_agents: bool,
    wakes_per_client: Option<ClientLimiter>,
    unknown_hosts_per_client: Option<ClientLimiter>,
    wakes_started: Option<HostLimiter>,
    trusted_proxies: TrustedProxies,
    /// Requests answered without a wake, by [`NoWake`].
    answered: [Counter; 3],
    /// Requests refused, by [`Limit`].
    refused: [Counter; 3],
}

impl WakeFilter {
    pub fn new(config: WakeFilterConfig, metrics: &Metrics) -> Self {
        let answered = [NoWake::Agent, NoWake::Robots, NoWake::Favicon]
            .map(|reason| metrics.no_wake_answer_counter(reason.as_str()));
        Self {
            agents: AgentMatcher::new(&config.no_wake_agents),
            activity_ignores_agents: config.activity_ignores_agents,
            wakes_per_client: ClientLimiter::new(config.wake_rate, config.wake_burst),
            unknown_hosts_per_client: ClientLimiter::new(
                config.unknown_host_rate,
                config.unknown_host_burst,
            ),
            wakes_started: HostLimiter::new(config.max_wake_rate),
            trusted_proxies: config.trusted_proxies,
            answered,
            refused: Limit::ALL.map(|limit| metrics.rate_limited_counter(limit.as_str())),
        }
    }

    /// Looks at a request once its container is known; for a running
    /// container this is all the filter costs (a path compare and, when
    /// activity ignores agents, one scan of the start of `User-Agent`).
    pub fn visitor(&self, method: &Method, path: &str, headers: &HeaderMap) -> Visitor {
        let by_path = NoWake::of_path(method, path);
        let look = self.activity_ignores_agents && by_path.is_none();
        Visitor {
            by_path,
            listed_agent: look.then(|| self.agents.matches(headers)),
            activity_ignores_agents: self.activity_ignores_agents,
        }
    }

    /// For a request that would start a wake (else at once `None`):
    /// dormant's own answer when it must not wake the container, an error
    /// when a rate limit refuses it, or `None` to go on and wake it.
    pub fn before_wake(
        &self,
        route: &Route,
        status: &RouteStatus,
        visitor: Visitor,
        parts: &Parts,
        peer: SocketAddr,
        trusted: bool,
    ) -> Result<Option<Response<Full<Bytes>>>, ProxyError> {
        if !starts_a_wake(route, status) {
            return Ok(None);
        }
        let no_wake = visitor.by_path.or_else(|| {
            let listed = visitor
                .listed_agent
                .unwrap_or_else(|| self.agents.matches(&parts.headers));
            listed.then_some(NoWake::Agent)
        });
        if let Some(reason) = no_wake {
            self.answered[reason as usize].inc();
            return Ok(Some(
                reason.answer(route.name(), accepts_html(&parts.headers)),
            ));
        }
        if let Some(limiter) = &self.wakes_per_client {
            let client = self.client(peer, trusted, &parts.headers);
            limiter
                .check(client)
                .map_err(|after| self.refuse(Limit::Wake, after))?;
        }
        // The client's limit first: a client past its own rate must not use
        // up the host's. (One refused by the host's cap has spent a token of
        // its own: a retry during a host-wide flood costs it that much.)
        if let Some(limiter) = &self.wakes_started {
            limiter
                .check()
                .map_err(|after| self.refuse(Limit::HostWakes, after))?;
        }
        Ok(None)
    }

    /// Passes on why a request found no container, unless it names an
    /// unknown host once too often for its client's rate.
    pub fn unknown_host(
        &self,
        error: ProxyError,
        peer: SocketAddr,
        trusted: bool,
        headers: &HeaderMap,
    ) -> ProxyError {
        let unknown = matches!(
            error,
            ProxyError::UnknownContainer { .. } | ProxyError::NotOurHost { .. }
        );
        match &self.unknown_hosts_per_client {
            Some(limiter) if unknown => match limiter.check(self.client(peer, trusted, headers)) {
                Ok(()) => error,
                Err(after) => self.refuse(Limit::UnknownHost, after),
            },
            _ => error,
        }
    }

    fn client(&self, peer: SocketAddr, trusted: bool, headers: &HeaderMap) -> IpAddr {
        client_ip(peer, trusted, &self.trusted_proxies, headers)
    }

    fn refuse(&self, limit: Limit, retry_after: Duration) -> ProxyError {
        self.refused[limit as usize].inc();
        ProxyError::RateLimited { limit, retry_after }
    }
}

/// Whether a request for `route`, in `status`, would start a wake (or a
/// restore). One for a container running, napping, on its way up, or backing off
/// after a failed wake starts nothing (it is served, joins the wake under
/// way, or is refused at once), so neither the bot answer nor the limits
/// apply to it: a page's many requests while its container wakes are one
/// wake, not many.
fn starts_a_wake(route: &Route, status: &RouteStatus) -> bool {
    let on_its_way = match status.state {
        ContainerState::Running => status.upstream.is_some(),
        ContainerState::Creating
        | ContainerState::Napping
        | ContainerState::Starting
        | ContainerState::Restoring
        | ContainerState::Deleted => true,
        _ => false,
    };
    let backing_off = status.retry_at.is_some_and(|at| at > Instant::now());
    !on_its_way && !backing_off && !route.wake_in_flight()
}
