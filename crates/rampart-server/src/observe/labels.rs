//! What the counters count, by label: failed authentications by kind and API, audit anchoring
//! failures by reason, and the device listener's connections by outcome. They live here, below
//! the rooms that count them, so the metrics depend on no room.

use std::sync::atomic::{AtomicU64, Ordering};

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// A DDI `TargetToken` that is not the controller's (or target tokens are off).
    DdiTargetToken,
    /// A DDI `GatewayToken` that is not the tenant's (or gateway tokens are off), or one used for
    /// a device a certificate enrolled.
    DdiGatewayToken,
    /// A DDI client certificate for another device, refused by the tenant, or used for a device
    /// a token enrolled.
    DdiCertificate,
    /// A DDI request with no usable credential, or for an unknown tenant.
    DdiOther,
    /// A management API request with a missing, malformed, unknown or revoked bearer token.
    ManagementToken,
    /// A device certificate on the native device API for a device row a token enrolled.
    CertificateEnrolment,
    /// A web console login with an unknown or revoked API token.
    ConsoleLogin,
}

impl FailureKind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [FailureKind; 7] = [
        FailureKind::DdiTargetToken,
        FailureKind::DdiGatewayToken,
        FailureKind::DdiCertificate,
        FailureKind::DdiOther,
        FailureKind::ManagementToken,
        FailureKind::CertificateEnrolment,
        FailureKind::ConsoleLogin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::DdiTargetToken => "ddi_target_token",
            FailureKind::DdiGatewayToken => "ddi_gateway_token",
            FailureKind::DdiCertificate => "ddi_certificate",
            FailureKind::DdiOther => "ddi_other",
            FailureKind::ManagementToken => "management_token",
            FailureKind::CertificateEnrolment => "certificate_enrolment",
            FailureKind::ConsoleLogin => "console_login",
        }
    }
}

/// The API a source failed on (each has its own budget per source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    Ddi,
    Management,
}

impl Api {
    pub const ALL: [Api; 2] = [Api::Ddi, Api::Management];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::Ddi => "ddi",
            Api::Management => "management",
        }
    }
}

/// Why an anchoring attempt signed or published nothing (the label of
/// `rampart_audit_anchor_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorFailure {
    /// The log no longer extends the last signed head: rewritten or truncated.
    Tampered = 0,
    /// The database could not be read or written, or signing failed.
    Storage = 1,
    /// The transparency log did not take the head (retried at the next interval).
    TransparencyLog = 2,
}

impl AnchorFailure {
    pub const ALL: [AnchorFailure; 3] = [
        AnchorFailure::Tampered,
        AnchorFailure::Storage,
        AnchorFailure::TransparencyLog,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AnchorFailure::Tampered => "reason=\"tampered\"",
            AnchorFailure::Storage => "reason=\"storage\"",
            AnchorFailure::TransparencyLog => "reason=\"transparency_log\"",
        }
    }
}

/// Which check refused an attestation step (the label of `rampart_attestation_failures_total`;
/// the reason a person reads is in the audit record and the security event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationCheck {
    /// The quote's nonce was unknown, used before or expired (a replay).
    Nonce = 0,
    /// The quote structure, signature, AK, PCR selection or PCR digest.
    Quote = 1,
    /// The TPM's reset, restart or clock counters went backwards.
    Counters = 2,
    /// The event log does not replay to the quoted PCRs, or its measurements are not the
    /// release the device runs.
    Measurements = 3,
    /// Enrolment: an EK neither certified nor approved, a bad AK, a wrong activation secret.
    Enrolment = 4,
}

impl AttestationCheck {
    pub const ALL: [AttestationCheck; 5] = [
        AttestationCheck::Nonce,
        AttestationCheck::Quote,
        AttestationCheck::Counters,
        AttestationCheck::Measurements,
        AttestationCheck::Enrolment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttestationCheck::Nonce => "nonce",
            AttestationCheck::Quote => "quote",
            AttestationCheck::Counters => "counters",
            AttestationCheck::Measurements => "measurements",
            AttestationCheck::Enrolment => "enrolment",
        }
    }
}

/// Connection-level counters of the device API's mutual-TLS listener.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// Connections that completed the handshake with a device identity.
    pub accepted: AtomicU64,
    /// Refused: the TLS handshake failed (no client certificate, unknown CA,
    /// expired or revoked certificate, not TLS at all, peer went away).
    pub handshake_failed: AtomicU64,
    /// Refused: the handshake did not finish within the deadline.
    pub handshake_timeout: AtomicU64,
    /// Refused: the verified certificate names no valid device id.
    pub no_device_identity: AtomicU64,
    /// `accept(2)` errors other than per-connection ones (e.g. out of file
    /// descriptors); the listener backs off for a second after each.
    pub accept_errors: AtomicU64,
    /// Refused before the handshake: the source already held its per-source cap.
    pub source_cap: AtomicU64,
}

impl ConnectionCounters {
    /// All refused connections, whatever the reason.
    pub fn refused(&self) -> u64 {
        self.handshake_failed.load(Ordering::Relaxed)
            + self.handshake_timeout.load(Ordering::Relaxed)
            + self.no_device_identity.load(Ordering::Relaxed)
            + self.source_cap.load(Ordering::Relaxed)
    }
}
