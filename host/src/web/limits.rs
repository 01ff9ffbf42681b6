//! How often one address may try credentials (sign in, set up, register, use a reset link):
//! a few times a second, with a burst, per peer (an IPv6 peer by its /64, which one machine
//! usually holds whole). What it remembers is pruned every minute, so its memory is bounded by
//! the peers seen in the last minutes. Behind a reverse proxy every request comes from the
//! proxy, and the limit is shared; each name's own limit (in the database) still holds.

use super::AppError;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests one signed-in caller (a token, a user's sessions) may have in flight at once,
/// unless `server.max_in_flight` says otherwise: room for a service's thousand concurrent
/// RPCs, not for a flood without end.
pub const MAX_IN_FLIGHT: usize = 1_024;
/// Refused requests of one caller written to the audit log per minute; past it they are
/// only counted, so a token holder cannot grow the log without bound.
const REFUSALS_AUDITED_PER_MINUTE: u32 = 10;

/// Credential attempts per peer: a burst, then one a second.
const BURST: u32 = 30;

pub struct PeerLimits {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// One check a second for a name under attack (past its failures in the database) from
    /// an address that has not failed for it: the guessers, from however many addresses,
    /// are slowed to that pace, while its owner can still sign in from a fresh address.
    names: DefaultKeyedRateLimiter<String>,
    /// Each signed-in caller's requests in flight, by the audit log's name for them.
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// How many each caller may have.
    max_in_flight: usize,
    /// How many of a caller's refused requests are audited.
    refusals: DefaultKeyedRateLimiter<String>,
    /// Each `http` connection's ingress limits, by connection name.
    ingress: Mutex<HashMap<String, Arc<IngressLimiter>>>,
}

/// One `http` connection's ingress limits, per caller: messages and bytes a second.
struct IngressLimiter {
    /// The settings it was made with: other settings make a new one.
    per_second: u32,
    bytes_per_second: u32,
    messages: DefaultKeyedRateLimiter<String>,
    bytes: DefaultKeyedRateLimiter<String>,
}

impl IngressLimiter {
    fn new(per_second: u32, bytes_per_second: u32) -> IngressLimiter {
        // A second's worth at once, refilled evenly.
        let quota = |n: u32| Quota::per_second(NonZeroU32::new(n.max(1)).expect("at least one"));
        IngressLimiter {
            per_second,
            bytes_per_second,
            messages: RateLimiter::keyed(quota(per_second)),
            bytes: RateLimiter::keyed(quota(bytes_per_second)),
        }
    }
}

/// A 429 for ingress, saying which limit and when to try again.
fn ingress_refusal(what: &str, setting: &str, wait: std::time::Duration) -> AppError {
    let retry_after_s = wait.as_secs() + 1;
    AppError::TooManyRequests {
        message: format!(
            "this caller sends more {what} a second than this address takes (the connection's {setting}); try again in {retry_after_s} s"
        ),
        retry_after_s,
    }
}

impl Default for PeerLimits {
    fn default() -> Self {
        let quota = Quota::per_second(NonZeroU32::new(1).expect("one"))
            .allow_burst(NonZeroU32::new(BURST).expect("a burst"));
        PeerLimits {
            limiter: RateLimiter::keyed(quota),
            names: RateLimiter::keyed(Quota::per_second(NonZeroU32::new(1).expect("one"))),
            in_flight: Mutex::new(HashMap::new()),
            max_in_flight: MAX_IN_FLIGHT,
            refusals: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(REFUSALS_AUDITED_PER_MINUTE).expect("non-zero"),
            )),
            ingress: Mutex::new(HashMap::new()),
        }
    }
}

impl PeerLimits {
    /// Lets one credential attempt from `peer` through, or refuses it (429 with when to try
    /// again). A request without a known peer (an in-process test) is let through.
    pub fn check(&self, peer: Option<IpAddr>) -> Result<(), AppError> {
        let Some(peer) = peer else { return Ok(()) };
        self.limiter.check_key(&peer_key(peer)).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let retry_after_s = wait.as_secs() + 1;
            AppError::TooManyRequests {
                message: format!(
                    "too many sign-in attempts from this address; try again in {retry_after_s} s"
                ),
                retry_after_s,
            }
        })
    }

    /// Lets one check of the name whose digest is `name_digest` through, or refuses it (429,
    /// in a second): the pace of a name under attack.
    pub fn pace_name(&self, name_digest: &str) -> Result<(), AppError> {
        self.names
            .check_key(&name_digest.to_owned())
            .map_err(|_| AppError::TooManyRequests {
                message: "this name is being tried from many addresses; try again in 1 s".into(),
                retry_after_s: 1,
            })
    }

    /// The same limits with `max` requests in flight per caller.
    pub fn with_in_flight(max: usize) -> PeerLimits {
        PeerLimits {
            max_in_flight: max.max(1),
            ..PeerLimits::default()
        }
    }

    /// Lets one more request of `caller` be in flight, for as long as the permit lives, or
    /// refuses it (429): one token cannot hold the host's every worker and connection.
    pub fn in_flight(&self, caller: &str) -> Result<OwnedSemaphorePermit, AppError> {
        let max = self.max_in_flight;
        let semaphore = {
            let mut callers = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if callers.len() >= 4_096 {
                callers.retain(|_, s| s.available_permits() < max);
            }
            callers
                .entry(caller.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(max)))
                .clone()
        };
        semaphore
            .try_acquire_owned()
            .map_err(|_| AppError::TooManyRequests {
                message: format!(
                    "{max} requests of this caller are in flight already (server.max_in_flight); wait for some to finish"
                ),
                retry_after_s: 1,
            })
    }

    /// The limiter of ingress on `connection`, made anew when its settings changed.
    fn ingress_limiter(
        &self,
        connection: &str,
        per_second: u32,
        bytes_per_second: u32,
    ) -> Arc<IngressLimiter> {
        let mut limiters = self.ingress.lock().unwrap_or_else(|p| p.into_inner());
        match limiters.get(connection) {
            Some(limiter)
                if limiter.per_second == per_second
                    && limiter.bytes_per_second == bytes_per_second =>
            {
                limiter.clone()
            }
            _ => {
                let limiter = Arc::new(IngressLimiter::new(per_second, bytes_per_second));
                limiters.insert(connection.to_owned(), limiter.clone());
                limiter
            }
        }
    }

    /// Lets one more message of `source` into `connection`'s ingress, or refuses it (429):
    /// at most `per_second` a second per caller, a second's worth at once. Checked before
    /// the body is read.
    pub fn ingress_message(
        &self,
        connection: &str,
        (per_second, bytes_per_second): (u32, u32),
        source: &str,
    ) -> Result<(), AppError> {
        let limiter = self.ingress_limiter(connection, per_second, bytes_per_second);
        limiter
            .messages
            .check_key(&source.to_owned())
            .map_err(|not_until| {
                let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
                ingress_refusal(
                    "messages",
                    "ingress_per_second",
                    not_until.wait_time_from(now),
                )
            })
    }

    /// Counts `bytes` of `source`'s message against `connection`'s ingress volume, or
    /// refuses it (429): at most `bytes_per_second` a second per caller (a message larger
    /// than a second's worth counts as a second's worth).
    pub fn ingress_bytes(
        &self,
        connection: &str,
        (per_second, bytes_per_second): (u32, u32),
        source: &str,
        bytes: usize,
    ) -> Result<(), AppError> {
        let limiter = self.ingress_limiter(connection, per_second, bytes_per_second);
        let cells = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, bytes_per_second.max(1));
        let cells = NonZeroU32::new(cells).expect("at least one");
        match limiter.bytes.check_key_n(&source.to_owned(), cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
                Err(ingress_refusal(
                    "bytes",
                    "ingress_bytes_per_second",
                    not_until.wait_time_from(now),
                ))
            }
            // Never: the cells are clamped to the burst.
            Err(_) => Err(ingress_refusal(
                "bytes",
                "ingress_bytes_per_second",
                std::time::Duration::from_secs(1),
            )),
        }
    }

    /// Whether a refused request of `caller` goes to the audit log (a few a minute do).
    pub fn audit_refusal(&self, caller: &str) -> bool {
        self.refusals.check_key(&caller.to_owned()).is_ok()
    }

    /// Forgets peers and names whose limit has refilled (called every minute by the host).
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.names.retain_recent();
        self.names.shrink_to_fit();
        self.refusals.retain_recent();
        self.refusals.shrink_to_fit();
        for limiter in self
            .ingress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            limiter.messages.retain_recent();
            limiter.messages.shrink_to_fit();
            limiter.bytes.retain_recent();
            limiter.bytes.shrink_to_fit();
        }
        let max = self.max_in_flight;
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.available_permits() < max);
    }

    /// Peers remembered now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// An IPv4 peer as it is; an IPv6 one by its /64 (a mapped IPv4 address as that address).
pub(crate) fn peer_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_a_burst_then_is_refused_and_others_are_not() {
        let limits = PeerLimits::default();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..BURST {
            limits.check(Some(peer)).unwrap();
        }
        assert!(matches!(
            limits.check(Some(peer)),
            Err(AppError::TooManyRequests { .. })
        ));
        limits.check(Some("192.0.2.2".parse().unwrap())).unwrap();
        limits.check(None).unwrap();
    }

    #[test]
    fn an_ipv6_peer_is_limited_by_its_64() {
        let limits = PeerLimits::default();
        for i in 0..BURST {
            let peer: IpAddr = format!("2001:db8::{:x}", i + 1).parse().unwrap();
            limits.check(Some(peer)).unwrap();
        }
        let another: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        assert!(limits.check(Some(another)).is_err());
        assert_eq!(limits.len(), 1);
    }
}
