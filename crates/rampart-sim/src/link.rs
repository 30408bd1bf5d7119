//! A device's connection to the update server, one per device session (a pass of the agent:
//! reports, poll, verify, download), so 10,000 devices never hold 10,000 idle connections.
//!
//! The real link ([`ServerLink`]) is the agent's own client: the TLS connector of
//! `rampart_agent::tls::device_agent` with the device's own certificate and key (mutual TLS),
//! `rampart_agent::server_client::ServerClient` for reports, `verify_assigned` for the director and
//! image-repository verification, and `rampart_agent::source::Fetch` for ranged artifact
//! downloads. Unit tests put an in-memory server behind [`Connect`].

use std::io::Read;
use std::path::Path;

use rampart_protocol::{DeviceFacts, ReportStatus};
use rampart_tuf_client::store::MetadataStore;

use rampart_agent::attest::AttestationServer;
use rampart_agent::director::verify_assigned;
use rampart_agent::evidence::EvidenceServer;
use rampart_agent::server_client::ServerClient;
use rampart_agent::source::{Fetch, Refusal, Verified};
use rampart_agent::tls::{ClientKey, device_agent};
use rampart_boot::flow::Reason;
use rampart_pki::Zeroizing;
use rampart_tuf_client::fetch::MinRate;

/// A device's mutual-TLS identity: its id, certificate and key, PEM.
pub(crate) struct Identity {
    pub(crate) id: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: Zeroizing<String>,
}

/// How a device treats an assignment: the agent's own type and parser.
pub use rampart_agent::server_client::UpdateKind;

/// What the server assigns, and its poll answer: the agent's own types (parsed by the
/// agent's own `parse_poll_answer`).
pub(crate) use rampart_agent::server_client::{Assignment, Poll as PollAnswer};

/// Why verifying an assignment failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifyError {
    pub(crate) reason: Reason,
    /// A refusal of what the server sent (reported `verification_failed`), not an outage.
    pub(crate) verification: bool,
    pub(crate) message: String,
}

/// One device session with the server.
pub(crate) trait Session: Send {
    fn poll(&mut self, facts: &DeviceFacts) -> Result<PollAnswer, String>;
    /// The director and image-repository verification of the assignment (`None`: the director
    /// lists nothing any more).
    fn verify(
        &mut self,
        store: &dyn MetadataStore,
        state_dir: &Path,
        hardware_id: &str,
        assignment: &Assignment,
        now_unix: i64,
    ) -> Result<Option<Verified>, VerifyError>;
    /// Opens the artifact from `offset` (the offset it really starts at: 0 when the server
    /// sends the whole file).
    fn open(&mut self, v: &Verified, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Refusal>;
    /// The minimum transfer rate downloads must keep.
    fn min_rate(&self) -> MinRate;
    /// Sends one report; `Ok` once the server stored it.
    fn report(
        &mut self,
        id: &str,
        status: ReportStatus,
        assignment: Option<&str>,
        progress: Option<u8>,
        details: serde_json::Value,
    ) -> Result<(), String>;
    /// The server's attestation routes (`None`: this link does not attest).
    fn attestation(&self) -> Option<&dyn AttestationServer>;
    /// The server's evidence upload routes (`None`: this link takes no evidence).
    fn evidence(&self) -> Option<&dyn EvidenceServer> {
        None
    }
    /// Acts on a signed quarantine instruction as the agent does (`rampart_agent::quarantine`),
    /// its containment hook simulated; whether it was acted on and acknowledged now.
    fn quarantine(
        &mut self,
        store: &dyn MetadataStore,
        state_dir: &Path,
        instruction: &rampart_protocol::SignedQuarantine,
        now_unix: i64,
    ) -> Result<bool, String>;
}

/// Opens device sessions.
pub(crate) trait Connect: Send + Sync {
    fn connect(&self, device: &Identity) -> Result<Box<dyn Session>, String>;
}

/// The real update server, over mutual TLS with each device's own key.
pub(crate) struct ServerLink {
    pub(crate) url: String,
    pub(crate) server_ca_pem: Vec<u8>,
}

impl Connect for ServerLink {
    fn connect(&self, device: &Identity) -> Result<Box<dyn Session>, String> {
        // The agent's connector: a rustls client handshake with this device's certificate and
        // key, the server CA as the only root. Built per session: cheap next to the handshake,
        // and nothing per device stays in memory but its PEM.
        let key = ClientKey::Pem(device.key_pem.as_bytes().to_vec());
        let (fetcher, id) = device_agent(&self.server_ca_pem, device.cert_pem.as_bytes(), &key)
            .map_err(|e| e.to_string())?;
        Ok(Box::new(ServerSession {
            client: ServerClient::from_fetcher(&self.url, fetcher, id),
        }))
    }
}

struct ServerSession {
    client: ServerClient,
}

impl Session for ServerSession {
    fn poll(&mut self, facts: &DeviceFacts) -> Result<PollAnswer, String> {
        self.client.poll_with(facts).map_err(|e| e.to_string())
    }

    fn verify(
        &mut self,
        store: &dyn MetadataStore,
        state_dir: &Path,
        hardware_id: &str,
        assignment: &Assignment,
        now_unix: i64,
    ) -> Result<Option<Verified>, VerifyError> {
        match verify_assigned(store, state_dir, &self.client, hardware_id, now_unix) {
            Ok(Some(v)) => Verified::from_assignment(v, &assignment.id)
                .map(Some)
                .map_err(|r| VerifyError {
                    reason: r.reason,
                    verification: true,
                    message: r.detail,
                }),
            Ok(None) => Ok(None),
            Err(e) => Err(VerifyError {
                reason: Reason::from(&e),
                verification: e.is_verification_failure(),
                message: e.to_string(),
            }),
        }
    }

    fn open(&mut self, v: &Verified, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Refusal> {
        Fetch::server(&self.client).open(&v.url, offset, &v.release)
    }

    fn min_rate(&self) -> MinRate {
        self.client.min_rate()
    }

    fn report(
        &mut self,
        id: &str,
        status: ReportStatus,
        assignment: Option<&str>,
        progress: Option<u8>,
        details: serde_json::Value,
    ) -> Result<(), String> {
        self.client
            .send_report(id, status, assignment, progress, details)
            .map_err(|e| e.to_string())
    }

    fn attestation(&self) -> Option<&dyn AttestationServer> {
        Some(&self.client)
    }

    fn evidence(&self) -> Option<&dyn EvidenceServer> {
        Some(&self.client)
    }
    fn quarantine(
        &mut self,
        store: &dyn MetadataStore,
        state_dir: &Path,
        instruction: &rampart_protocol::SignedQuarantine,
        now_unix: i64,
    ) -> Result<bool, String> {
        rampart_agent::quarantine::handle(
            state_dir,
            store,
            &self.client,
            instruction,
            now_unix,
            |_| {
                (
                    rampart_protocol::HookOutcome::Succeeded,
                    "simulated containment".into(),
                )
            },
        )
        .map(|acted| acted.is_some())
    }
}
