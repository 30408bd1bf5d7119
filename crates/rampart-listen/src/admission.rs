//! How many connections each listener holds, and from whom: the one admission rule every
//! listener (the update server's device, DDI, management and metrics listeners, the
//! transparency log and its witnesses) applies before it spends anything on a client.
//!
//! A client that opens connections and then sends nothing, or sends its request head one byte
//! at a time, costs the server a file descriptor per connection and nothing else. Three bounds
//! keep that from locking anybody out:
//!
//! * a **per-listener cap** ([`ListenerCaps::max_connections`]): handshakes in progress and
//!   established connections together; beyond it, new connections wait in the kernel backlog;
//! * a **per-source cap** ([`ListenerCaps::max_per_source`]): connections from one IPv4
//!   address or one IPv6 /64 beyond it are closed at once, so one client (or one attacker)
//!   cannot take the listener's slots from everybody else;
//! * **shedding**: a connection is *unproven* until it has sent a whole request head (its
//!   handshake and its first head are what a slow client stretches). When a new connection
//!   arrives at a full listener, the oldest unproven connection is closed to make room
//!   ([`Admission::make_room`]), so a few sources together cannot hold the listener either: a
//!   legitimate client proves itself in milliseconds, long before it becomes the oldest;
//! * **the process's open-file limit**: [`fit_file_limit`] raises the soft limit to the hard
//!   one at start and checks that every listener's cap fits inside it, with room for the
//!   database, artifacts and outgoing connections. Defaults that do not fit are scaled down
//!   (with a warning); caps an operator chose that do not fit refuse to start, naming the
//!   numbers and what to change.
//!
//! Time bounds (handshake deadline, request-head deadline, idle connections) live with the
//! listeners and [`crate::serve`]; this module only counts.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Deadline for a whole request head (request line and headers), counted from the moment the
/// server starts waiting for it: on a new connection, and after each response on a kept-alive
/// one (so it is also the keep-alive idle timeout).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors kept free for everything that is not an incoming connection: the database
/// pool, SQLite's WAL, artifact files being streamed, webhook and object-store connections.
pub const RESERVED_FILES: u64 = 256;

/// The connection bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerCaps {
    /// Connections open at once, handshakes in progress included.
    pub max_connections: usize,
    /// Connections open at once from one source (an IPv4 address, an IPv6 /64).
    pub max_per_source: usize,
}

/// The bounds of every listener of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The device API (mutual TLS). Many devices may share a NAT address, hence the
    /// generous per-source cap; their handshakes are also bounded by the handshake deadline.
    pub device: ListenerCaps,
    /// The hawkBit DDI API.
    pub ddi: ListenerCaps,
    /// The management API: a few operators and their scripts.
    pub management: ListenerCaps,
    /// The Prometheus listener: a few scrapers.
    pub metrics: ListenerCaps,
    /// See [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// When the caps do not fit the open-file limit: `true` scales the two device-facing caps
    /// down (the defaults are sized for a large fleet, not for a small machine); `false`
    /// refuses to start (the operator chose these numbers).
    pub scale_to_file_limit: bool,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            device: ListenerCaps {
                max_connections: 4096,
                max_per_source: 256,
            },
            ddi: ListenerCaps {
                max_connections: 4096,
                max_per_source: 256,
            },
            management: ListenerCaps {
                max_connections: 256,
                max_per_source: 32,
            },
            metrics: ListenerCaps {
                max_connections: 64,
                max_per_source: 16,
            },
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            scale_to_file_limit: true,
        }
    }
}

/// Which listeners are enabled, for [`ConnectionConfig::fit`].
#[derive(Debug, Clone, Copy)]
pub struct EnabledListeners {
    pub ddi: bool,
    pub management: bool,
    pub metrics: bool,
}

/// Why a connection configuration cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error("{listener}: {what} must be at least 1")]
    Zero {
        listener: &'static str,
        what: &'static str,
    },
    #[error(
        "{listener}: the per-source cap ({per_source}) is above the listener's cap ({total}); lower it"
    )]
    PerSourceAboveTotal {
        listener: &'static str,
        per_source: usize,
        total: usize,
    },
    #[error(
        "the listeners may hold {needed} connections, plus {reserved} files the server needs for itself, but this process may open only {limit} files: lower the caps (`rampart server --connection-cap`) or raise the limit (`ulimit -n`, systemd's LimitNOFILE=)"
    )]
    DoesNotFit {
        needed: u64,
        reserved: u64,
        limit: u64,
    },
}

impl ConnectionConfig {
    /// Checks the caps against each other and against `file_limit` (the soft open-file limit
    /// after [`raise_file_limit`]); returns the caps to use, scaled down when allowed.
    pub fn fit(
        &self,
        enabled: EnabledListeners,
        file_limit: u64,
    ) -> Result<ConnectionConfig, CapacityError> {
        for (listener, caps) in [
            ("device listener", self.device),
            ("DDI listener", self.ddi),
            ("management listener", self.management),
            ("metrics listener", self.metrics),
        ] {
            if caps.max_connections == 0 {
                return Err(CapacityError::Zero {
                    listener,
                    what: "max_connections",
                });
            }
            if caps.max_per_source == 0 {
                return Err(CapacityError::Zero {
                    listener,
                    what: "max_per_source",
                });
            }
            if caps.max_per_source > caps.max_connections {
                return Err(CapacityError::PerSourceAboveTotal {
                    listener,
                    per_source: caps.max_per_source,
                    total: caps.max_connections,
                });
            }
        }
        let cap = |caps: ListenerCaps, on: bool| if on { caps.max_connections as u64 } else { 0 };
        let fixed = cap(self.management, enabled.management) + cap(self.metrics, enabled.metrics);
        let scalable = cap(self.device, true) + cap(self.ddi, enabled.ddi);
        let needed = fixed + scalable;
        if needed + RESERVED_FILES <= file_limit {
            return Ok(self.clone());
        }
        let refuse = CapacityError::DoesNotFit {
            needed,
            reserved: RESERVED_FILES,
            limit: file_limit,
        };
        if !self.scale_to_file_limit {
            return Err(refuse);
        }
        // The device-facing listeners give up what the machine cannot hold; each keeps at
        // least 16 connections, or the configuration is refused.
        let room = file_limit.saturating_sub(RESERVED_FILES + fixed);
        // Both caps shrink by the same factor: a per-source cap left as it was could exceed
        // the lowered total and let one source take the whole listener again.
        let scale = |caps: ListenerCaps| -> ListenerCaps {
            let shrink = |n: usize| (n as u64 * room / scalable) as usize;
            let max = shrink(caps.max_connections);
            ListenerCaps {
                max_connections: max,
                max_per_source: shrink(caps.max_per_source).clamp(1, max.max(1)),
            }
        };
        let scaled = ConnectionConfig {
            device: scale(self.device),
            ddi: scale(self.ddi),
            ..self.clone()
        };
        if scaled.device.max_connections < 16 || (enabled.ddi && scaled.ddi.max_connections < 16) {
            return Err(refuse);
        }
        Ok(scaled)
    }
}

/// Raises the soft open-file limit to the hard limit and returns the soft limit in force.
pub fn raise_file_limit() -> std::io::Result<u64> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft < hard {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// Counters of one listener's admission, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct AdmissionCounters {
    /// Connections closed at once because their source held its cap.
    pub refused_per_source: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Unproven connections closed to make room for a new one at a full listener.
    pub shed: AtomicU64,
}

/// Whether a connection has proven itself, and the signal that closes it when it is shed.
#[derive(Debug, Default)]
struct StandingState {
    proven: AtomicBool,
    shed: AtomicBool,
    notify: Notify,
}

type Unproven = Arc<Mutex<BTreeMap<u64, Arc<StandingState>>>>;

/// A connection's standing, held by whatever serves it: [`Standing::prove`] once it has sent a
/// whole request head, [`Standing::shed`] resolves when the listener closes it to make room.
#[derive(Debug, Clone)]
pub struct Standing {
    id: u64,
    state: Arc<StandingState>,
    unproven: Unproven,
}

impl Standing {
    /// The connection sent a whole request head: it is never shed from now on.
    pub fn prove(&self) {
        if !self.state.proven.swap(true, Ordering::AcqRel) {
            lock(&self.unproven).remove(&self.id);
        }
    }

    /// Whether the listener chose this connection to make room.
    pub fn is_shed(&self) -> bool {
        self.state.shed.load(Ordering::Acquire)
    }

    /// Resolves once the listener chose this connection to make room.
    pub async fn shed(&self) {
        loop {
            let notified = self.state.notify.notified();
            if self.is_shed() {
                return;
            }
            notified.await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The admission state of one listener: its slots and who holds them.
#[derive(Debug, Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_source: usize,
    counters: Arc<AdmissionCounters>,
    /// Unproven connections, oldest first.
    unproven: Unproven,
    next_id: Arc<AtomicU64>,
}

/// Held by a connection for as long as it is open: its listener slot and its source's count.
#[derive(Debug)]
pub struct Ticket {
    _slot: OwnedSemaphorePermit,
    source: IpAddr,
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    counters: Arc<AdmissionCounters>,
    standing: Standing,
}

impl Ticket {
    /// The connection's standing, for whatever serves it.
    pub fn standing(&self) -> Standing {
        self.standing.clone()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = sources.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                sources.remove(&self.source);
            }
        }
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        lock(&self.standing.unproven).remove(&self.standing.id);
    }
}

impl Admission {
    pub fn new(caps: ListenerCaps, counters: Arc<AdmissionCounters>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(caps.max_connections.max(1))),
            sources: Arc::new(Mutex::new(HashMap::new())),
            max_per_source: caps.max_per_source.max(1),
            counters,
            unproven: Arc::new(Mutex::new(BTreeMap::new())),
            next_id: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A free listener slot, if there is one now.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Whether a connection from `peer` would be refused for its source's cap.
    pub fn source_is_full(&self, peer: SocketAddr) -> bool {
        let full = lock(&self.sources)
            .get(&source_of(peer.ip()))
            .is_some_and(|&count| count >= self.max_per_source);
        if full {
            self.counters
                .refused_per_source
                .fetch_add(1, Ordering::Relaxed);
        }
        full
    }

    /// The listener is full and a connection is waiting: closes the oldest connection that has
    /// not sent a whole request head yet (its slot comes free once it is gone). `false` when
    /// every connection has proven itself; the newcomer then waits for a slot.
    pub fn make_room(&self) -> bool {
        let oldest = {
            let mut unproven = lock(&self.unproven);
            let Some((&id, _)) = unproven.iter().next() else {
                return false;
            };
            unproven.remove(&id)
        };
        match oldest {
            Some(state) => {
                state.shed.store(true, Ordering::Release);
                state.notify.notify_waiters();
                self.counters.shed.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Waits for a free listener slot. Call before `accept`, so that a full listener leaves
    /// new connections in the kernel backlog instead of taking file descriptors.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the admission semaphore is never closed")
    }

    /// Admits a connection from `peer` holding `slot`, or refuses it (the caller closes it)
    /// when its source already holds its cap.
    pub fn admit(&self, slot: OwnedSemaphorePermit, peer: SocketAddr) -> Option<Ticket> {
        let source = source_of(peer.ip());
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let count = sources.entry(source).or_insert(0);
        if *count >= self.max_per_source {
            drop(sources);
            self.counters
                .refused_per_source
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *count += 1;
        drop(sources);
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(StandingState::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.unproven).insert(id, state.clone());
        Some(Ticket {
            standing: Standing {
                id,
                state,
                unproven: self.unproven.clone(),
            },
            _slot: slot,
            source,
            sources: self.sources.clone(),
            counters: self.counters.clone(),
        })
    }
}

/// The unit a per-source cap counts: an IPv4 address (also when written as an IPv4-mapped
/// IPv6 address), or an IPv6 /64, the block one subscriber usually holds.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: EnabledListeners = EnabledListeners {
        ddi: true,
        management: true,
        metrics: true,
    };

    #[test]
    fn defaults_fit_a_large_file_limit_unchanged() {
        let config = ConnectionConfig::default();
        assert_eq!(config.fit(ALL, 1 << 20).unwrap(), config);
    }

    #[test]
    fn defaults_are_scaled_down_to_fit_a_small_file_limit() {
        let fitted = ConnectionConfig::default().fit(ALL, 1024).unwrap();
        let total = fitted.device.max_connections
            + fitted.ddi.max_connections
            + fitted.management.max_connections
            + fitted.metrics.max_connections;
        assert!(total as u64 + RESERVED_FILES <= 1024, "{fitted:?}");
        assert!(fitted.device.max_connections >= 16);
        // The per-source cap shrinks with the total, so one source still gets only a share.
        for caps in [fitted.device, fitted.ddi] {
            assert!(caps.max_per_source >= 1);
            assert!(
                caps.max_per_source * 8 <= caps.max_connections,
                "one source may hold {} of {}",
                caps.max_per_source,
                caps.max_connections
            );
        }
        // The operators' listeners keep their caps.
        assert_eq!(fitted.management, ConnectionConfig::default().management);
    }

    #[test]
    fn chosen_caps_that_do_not_fit_are_refused_with_the_numbers() {
        let config = ConnectionConfig {
            scale_to_file_limit: false,
            ..ConnectionConfig::default()
        };
        let err = config.fit(ALL, 1024).unwrap_err();
        assert_eq!(
            err,
            CapacityError::DoesNotFit {
                needed: 4096 + 4096 + 256 + 64,
                reserved: RESERVED_FILES,
                limit: 1024
            }
        );
        assert!(err.to_string().contains("ulimit -n"));
        // A disabled listener needs no files.
        let only_device = EnabledListeners {
            ddi: false,
            management: false,
            metrics: false,
        };
        assert!(config.fit(only_device, 8192).is_ok());
    }

    #[test]
    fn inconsistent_caps_are_refused() {
        let mut config = ConnectionConfig::default();
        config.management.max_per_source = 1000;
        assert!(matches!(
            config.fit(ALL, 1 << 20),
            Err(CapacityError::PerSourceAboveTotal { .. })
        ));
        config.management.max_per_source = 0;
        assert!(matches!(
            config.fit(ALL, 1 << 20),
            Err(CapacityError::Zero { .. })
        ));
    }

    #[test]
    fn a_source_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(source_of(v4), v4);
        assert_eq!(source_of("::ffff:192.0.2.7".parse().unwrap()), v4);
        assert_eq!(
            source_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn a_full_listener_sheds_its_oldest_unproven_connection_never_a_proven_one() {
        let counters = Arc::new(AdmissionCounters::default());
        let admission = Admission::new(
            ListenerCaps {
                max_connections: 3,
                max_per_source: 3,
            },
            counters.clone(),
        );
        let peer = |i: u8| SocketAddr::from(([127, 0, 0, i], 1000));
        let proven = admission.admit(admission.slot().await, peer(1)).unwrap();
        proven.standing().prove();
        let oldest = admission.admit(admission.slot().await, peer(2)).unwrap();
        let newer = admission.admit(admission.slot().await, peer(3)).unwrap();
        assert!(admission.try_slot().is_none());
        // Room is made by the oldest connection that has not proven itself.
        assert!(admission.make_room());
        assert!(oldest.standing().is_shed());
        tokio::time::timeout(std::time::Duration::from_secs(5), oldest.standing().shed())
            .await
            .expect("the shed signal resolves");
        assert!(!newer.standing().is_shed() && !proven.standing().is_shed());
        drop(oldest);
        assert!(admission.try_slot().is_some());
        // Once the rest have proven themselves, nothing is shed.
        newer.standing().prove();
        assert!(!admission.make_room());
        assert_eq!(counters.shed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_source_holding_its_cap_is_refused_and_others_are_not() {
        let counters = Arc::new(AdmissionCounters::default());
        let admission = Admission::new(
            ListenerCaps {
                max_connections: 10,
                max_per_source: 2,
            },
            counters.clone(),
        );
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:1000".parse().unwrap();
        let first = admission.admit(admission.slot().await, a).unwrap();
        let _second = admission.admit(admission.slot().await, a).unwrap();
        assert!(admission.admit(admission.slot().await, a).is_none());
        assert!(admission.admit(admission.slot().await, b).is_some());
        assert_eq!(counters.refused_per_source.load(Ordering::Relaxed), 1);
        // A closed connection gives its source's place back.
        drop(first);
        assert!(admission.admit(admission.slot().await, a).is_some());
    }
}
