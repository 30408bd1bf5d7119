//! The syslog sink: alerts as RFC 5424 messages to one receiver, over UDP (one datagram per
//! message) or TCP (octet-counting frames, RFC 6587 section 3.4.1, on one kept connection).
//!
//! A TCP attempt that cannot connect or write is an error the engine retries with backoff. UDP
//! has no acknowledgement: a datagram handed to the network counts as delivered (a receiver
//! that is down is only noticed by the ICMP errors a connected socket reports to later sends).
//! Syslog has no acknowledgement over TCP either: a message written to the connection counts as
//! delivered, and a connection whose receiver has closed it is noticed and replaced before the
//! next write.

use std::time::Duration;

use rampart_incident::alert::Alert;
use rampart_notify::syslog::{
    MAX_MESSAGE, SdElement, SyslogMessage, SyslogSeverity, octet_counted, timestamp,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpStream, UdpSocket};

/// The structured-data element every alert carries; 32473 is the enterprise number RFC 5612
/// reserves for documentation and examples, used until Rampart has its own.
pub const SD_ID: &str = "incident@32473";
/// APP-NAME of every message.
pub const APP_NAME: &str = "rampart";

/// How messages reach the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Where the syslog sink sends: `udp://HOST:PORT` or `tcp://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for SyslogTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "give the syslog receiver as udp://HOST:PORT or tcp://HOST:PORT (e.g. tcp://siem.example.com:601)";
        let (transport, rest) = if let Some(rest) = s.strip_prefix("udp://") {
            (Transport::Udp, rest)
        } else if let Some(rest) = s.strip_prefix("tcp://") {
            (Transport::Tcp, rest)
        } else if s.starts_with("tls://") {
            return Err(format!(
                "syslog over TLS (RFC 5425) is not built in: {usage}, through a local TLS relay if the network needs one"
            ));
        } else {
            return Err(format!("{s:?} is not a syslog receiver: {usage}"));
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} has no port: {usage}"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?} has no valid port (1 to 65535): {usage}"))?;
        if host.is_empty() || host.len() > 253 || host.contains(['/', ' ', '@']) {
            return Err(format!("{s:?} has no valid host: {usage}"));
        }
        Ok(SyslogTarget {
            transport,
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The syslog severity of an alert.
fn severity(alert: &Alert) -> SyslogSeverity {
    match alert.severity.syslog_code() {
        1 => SyslogSeverity::Alert,
        2 => SyslogSeverity::Critical,
        4 => SyslogSeverity::Warning,
        _ => SyslogSeverity::Notice,
    }
}

/// An alert as one RFC 5424 message: MSGID `incident.alert` (or `incident.update`), the
/// `incident@32473` element with the incident id, severity, dedupe key, detector, state and
/// device count, and as MSG the alert's JSON when the whole message fits in [`MAX_MESSAGE`]
/// bytes, else its one-line summary.
pub fn message(
    alert: &Alert,
    facility: u8,
    hostname: Option<&str>,
    now_ms: i64,
) -> Result<Vec<u8>, rampart_notify::syslog::SyslogError> {
    let incident = &alert.incident;
    let mut params = vec![
        ("id".to_owned(), incident.id.clone()),
        ("alert".to_owned(), alert.id.clone()),
        ("severity".to_owned(), alert.severity.as_str().to_owned()),
        ("dedupe".to_owned(), alert.dedupe_key.clone()),
        ("detector".to_owned(), incident.detector.as_str().to_owned()),
        ("state".to_owned(), incident.state.as_str().to_owned()),
        ("devices".to_owned(), incident.device_count.to_string()),
    ];
    if alert.update {
        params.push(("repeats".to_owned(), alert.repeats.to_string()));
    }
    let mut m = SyslogMessage {
        facility,
        severity: severity(alert),
        timestamp: Some(timestamp(now_ms)),
        hostname: hostname.map(str::to_owned),
        app_name: Some(APP_NAME.to_owned()),
        procid: Some(std::process::id().to_string()),
        msgid: Some(
            if alert.update {
                "incident.update"
            } else {
                "incident.alert"
            }
            .to_owned(),
        ),
        structured_data: vec![SdElement {
            id: SD_ID.to_owned(),
            params,
        }],
        msg: serde_json::to_string(alert).unwrap_or_default(),
    };
    let whole = m.to_bytes(usize::MAX)?;
    if whole.len() <= MAX_MESSAGE {
        return Ok(whole);
    }
    m.msg = alert.summary();
    m.to_bytes(MAX_MESSAGE)
}

/// The host's name as a syslog HOSTNAME (printable US-ASCII, at most 255), if it has one.
pub fn local_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| {
            !name.is_empty()
                && name.len() <= 255
                && name != "-"
                && name.bytes().all(|b| (33..=126).contains(&b))
        })
}

/// One receiver and, for TCP, the connection kept to it.
pub struct SyslogSink {
    target: SyslogTarget,
    attempt_timeout: Duration,
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
}

impl SyslogSink {
    pub fn new(target: SyslogTarget, attempt_timeout: Duration) -> Self {
        Self {
            target,
            attempt_timeout,
            tcp: None,
            udp: None,
        }
    }

    pub fn target(&self) -> &SyslogTarget {
        &self.target
    }

    /// Sends one message within the attempt timeout; on any error the connection is dropped
    /// so the next attempt starts afresh.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), String> {
        let timeout = self.attempt_timeout;
        let result = match tokio::time::timeout(timeout, self.send_unbounded(message)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no progress within {:.1} s (the attempt timeout)",
                timeout.as_secs_f64()
            )),
        };
        if result.is_err() {
            self.tcp = None;
            self.udp = None;
        }
        result.map_err(|e| format!("syslog to {}: {e}", self.target))
    }

    async fn send_unbounded(&mut self, message: &[u8]) -> Result<(), String> {
        let address = (self.target.host.as_str(), self.target.port);
        match self.target.transport {
            Transport::Udp => {
                if self.udp.is_none() {
                    let peer = tokio::net::lookup_host(address)
                        .await
                        .map_err(|e| format!("resolving {}: {e}", self.target.host))?
                        .next()
                        .ok_or_else(|| format!("{} resolves to no address", self.target.host))?;
                    let local = if peer.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    let socket = UdpSocket::bind(local)
                        .await
                        .map_err(|e| format!("opening a UDP socket: {e}"))?;
                    socket
                        .connect(peer)
                        .await
                        .map_err(|e| format!("connecting the UDP socket: {e}"))?;
                    self.udp = Some(socket);
                }
                let socket = self.udp.as_ref().ok_or("no UDP socket")?;
                socket
                    .send(message)
                    .await
                    .map_err(|e| format!("sending the datagram: {e}"))?;
            }
            Transport::Tcp => {
                // A receiver never writes; a readable connection was closed (or broke).
                if let Some(stream) = &self.tcp {
                    let mut probe = [0u8; 64];
                    match stream.try_read(&mut probe) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        _ => self.tcp = None,
                    }
                }
                if self.tcp.is_none() {
                    let stream = TcpStream::connect(address)
                        .await
                        .map_err(|e| format!("could not connect: {e}"))?;
                    let _ = stream.set_nodelay(true);
                    self.tcp = Some(stream);
                }
                let stream = self.tcp.as_mut().ok_or("no TCP connection")?;
                stream
                    .write_all(&octet_counted(message))
                    .await
                    .map_err(|e| format!("writing the message: {e}"))?;
                stream
                    .flush()
                    .await
                    .map_err(|e| format!("writing the message: {e}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_clear_errors() {
        let t: SyslogTarget = "tcp://siem.example.com:601".parse().unwrap();
        assert_eq!(
            (t.transport, t.host.as_str(), t.port),
            (Transport::Tcp, "siem.example.com", 601)
        );
        let t: SyslogTarget = "udp://[::1]:514".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.to_string()),
            ("::1", "udp://[::1]:514".into())
        );
        for bad in [
            "siem:514",
            "tcp://siem",
            "tcp://:514",
            "udp://h:0",
            "udp://h:99999",
        ] {
            let e = bad.parse::<SyslogTarget>().unwrap_err();
            assert!(e.contains("udp://HOST:PORT"), "{bad}: {e}");
        }
        assert!(
            "tls://siem:6514"
                .parse::<SyslogTarget>()
                .unwrap_err()
                .contains("not built in")
        );
    }
}
