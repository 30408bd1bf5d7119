//! The fleet simulator: thousands of virtual devices in one process, each running the device
//! agent's update flow against the real update server over mutual TLS.
//!
//! # Why it is built this way
//!
//! The point is to exercise the server (director, image repository, device API, campaigns)
//! with devices that behave exactly as deployed agents do, at fleet scale, with the faults
//! real fleets have. So everything that decides what a device does, or whether it accepts
//! what the server sends, is the agent's own code; only the hardware is simulated.
//!
//! **The agent's real code**, called as it is:
//!
//! * mutual TLS with each device's own certificate (issued from the manufacturer CA) and key,
//!   through the agent's TLS connector (`rampart_agent::tls::device_agent`) and
//!   `rampart_agent::server_client::ServerClient` for polls and reports;
//! * `rampart_agent::director::verify_assigned`: the director's metadata for this device, the
//!   image repository's TUF metadata, their agreement, the hardware id, anti-rollback, and the
//!   transparency-log proof when the device is provisioned with a log policy; per-device state
//!   for it lives in a small state directory on disk, as on a device;
//! * `rampart_agent::source::Fetch` for the artifact (ranged requests when resuming), and
//!   `rampart_core::verify::StreamingCheck`, the agent's length and hash check, with the same
//!   refusals and reason codes ([`rampart_boot::flow::Reason`]);
//! * the agent's own device, `rampart_agent::device::Device`, for the whole install and boot
//!   flow: the start of every boot ([`rampart_boot::flow::on_start`] and its actions: commit,
//!   rollback, the bootloader's fallback, an unexpected slot), the checks before an install,
//!   the resumable stream into the inactive slot (`rampart_agent::install`, a byte budget per
//!   tick on slow links), the length and hash check, activation, staging a `download_only`
//!   release and activating it later without downloading it again, the anti-rollback counter,
//!   and the reports it queues, with the same JSON shapes and reason codes
//!   ([`rampart_boot::flow::Reason`]);
//! * the A/B slot model [`rampart_boot::ab::AbState`] (boot order, boot counters, the
//!   bootloader's fallback), behind the agent's bootloader interface;
//! * the daemon's facts, poll interval, jitter and backoff (`rampart_agent::daemon`).
//!
//! **Simulated**: the agent's platform (`rampart_agent::platform::Platform`): the slots (in
//! memory, keeping a length and a SHA-256 state instead of bytes, so 10,000 devices fit in
//! memory), the bootloader environment (in memory, each change atomic), the state file (the
//! state as last saved), and the boot (slot and boot id); reboots (a boot event a moment
//! later), the health check (fault rules decide), and the faults: health-check failures and
//! images that never come up per release and hardware, power cuts at any write step of the
//! install and boot flow (the fault plan of the in-memory write layer, `power.rs`), slow links,
//! offline periods, and battery conditions. A power cut drops everything but what the agent
//! persisted, so the next power-on really starts from it and the agent's start must converge.
//!
//! Around the agent's device, the simulator keeps only a thin policy of the daemon's pass,
//! driven by events instead of a loop: a session per pass, the poll, the assignment's `type`
//! (a `soft` one waits while the battery is low and the device is off mains), verification
//! and best-effort reports.
//!
//! # Scale
//!
//! Devices are events in a time-ordered queue served by a bounded pool of worker threads
//! ([`FleetSpec::workers`], blocking HTTPS calls): 10,000 devices need 10,000 small state
//! machines, not 10,000 threads. A device holds a connection only during a session (one agent
//! pass: reports, poll, verify, download), never while it waits for its next poll; slow links
//! read their share of bytes per tick and yield the worker in between. When the workers cannot
//! keep up (the server answers slowly), due polls wait, but power-ons and slices of downloads in
//! flight go first, so a device's own timeline (boot, download rate) is not stretched by other
//! devices' polls.
//!
//! Each device needs about 10 small files in its state directory, which the agent's code
//! replaces durably (write, fsync, rename); at 10,000 devices that fsync traffic is a fair share
//! of the simulator's CPU, so for large runs put [`FleetSpec::state_root`] on a tmpfs
//! (`/dev/shm/...`).
//!
//! # Use
//!
//! ```no_run
//! use std::time::Duration;
//! use rampart_sim::{Fleet, FleetSpec, InitialFirmware};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = rampart_pki::CertificateAuthority::load(
//!     &std::fs::read_to_string("ca/ca.pem")?,
//!     &std::fs::read_to_string("ca/ca.key")?,
//! )?;
//! let mut spec = FleetSpec::new(
//!     "https://127.0.0.1:8443",
//!     std::fs::read("ca/ca.pem")?,                 // the server's CA
//!     std::fs::read("repo/metadata/1.root.json")?, // the image repository root devices pin
//!     std::fs::read("director/1.root.json")?,      // the director root devices pin
//!     InitialFirmware {
//!         target: "1.0.0/fw.img".into(),
//!         version: "1.0.0".into(),
//!         security_version: 1,
//!         sha256: "ab".repeat(32),
//!         length: 1 << 20,
//!     },
//! );
//! spec.devices = 1000;
//! spec.models = "board-a=70,board-b=30".parse()?;
//! spec.regions = "eu=50,us=50".parse()?;
//! spec.faults.health.push("3.0.0:board-a=0.9".parse()?);
//! spec.faults.crash_rate = 0.01;
//! spec.timing.poll_interval = Some(Duration::from_secs(5));
//! let fleet = Fleet::build(spec, &ca)?;
//! let handle = fleet.start();
//! // ... assign a release through the management API ...
//! let stats = handle.wait_until(Duration::from_secs(120), |s| s.on_version("2.0.0") == 1000);
//! println!("{}", handle.stop());
//! # let _ = stats;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod compromise;
mod device;
mod fleet;
mod hw;
mod link;
mod platform;
mod power;
mod rng;
mod spec;
mod stats;

pub use compromise::{
    Compromise, CompromiseKind, CompromiseRecord, FORGED_VERSION, GameDay, StolenRelease,
    percentile,
};
pub use fleet::{DeviceInfo, DeviceStatus, Fleet, FleetHandle};
pub use link::UpdateKind;
pub use spec::{
    FaultRule, Faults, FleetSpec, InitialFirmware, LogTrust, Timing, Weights, parse_probability,
    parse_tags,
};
pub use stats::{Activity, Stats};

/// Why a fleet could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The spec is inconsistent (the message names the field).
    #[error("invalid fleet spec: {0}")]
    Spec(String),
    /// A compact form (weights, fault rule, tags) does not parse.
    #[error("invalid {what} {input:?}: {reason}")]
    Parse {
        what: &'static str,
        input: String,
        reason: String,
    },
    /// A trust anchor the devices are provisioned with does not verify.
    #[error("{0}")]
    Trust(String),
    /// The server CA or a device identity is unusable for mutual TLS.
    #[error("device TLS identity: {0}")]
    Tls(String),
    #[error("issuing the certificate of {device}: {source}")]
    Certificate {
        device: String,
        #[source]
        source: rampart_pki::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests;
