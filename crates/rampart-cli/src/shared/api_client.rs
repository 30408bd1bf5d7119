//! A management-API client for the CLI: HTTPS with the server's CA, a bearer token, JSON.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

/// The API's path prefix; every request path starts with it.
const API_PREFIX: &str = "/api/v1";

/// Bytes escaped in a path segment or query value: all but RFC 3986's unreserved characters,
/// and `.` too, so that no id can be the segment `..` that a client would resolve upwards.
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// An id or filter as one URL path segment or query value: it cannot change the path or add
/// parameters (the server then answers that no such thing exists).
pub fn path_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, ESCAPED).to_string()
}

/// Where the management API is and how to authenticate.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// Management API base URL, e.g. https://127.0.0.1:8444.
    #[arg(long, env = "RAMPART_API_URL")]
    api: String,
    /// Bearer token (`rampart token create`).
    #[arg(long, env = "RAMPART_API_TOKEN", hide_env_values = true)]
    token: String,
    /// The CA certificate (PEM) that signed the server's certificate.
    #[arg(long, env = "RAMPART_API_CA")]
    ca: PathBuf,
}

impl ApiArgs {
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        ApiClient::from_ca_file(&self.api, &self.token, &self.ca)
    }
}

/// The management API where a command can also work elsewhere (`rampart token --db`): the
/// same options and variables as [`ApiArgs`], none of them required.
#[derive(Args, Clone)]
pub struct OptionalApiArgs {
    /// Management API base URL, e.g. https://127.0.0.1:8444.
    #[arg(long, env = "RAMPART_API_URL")]
    api: Option<String>,
    /// Bearer token (`rampart token create`).
    #[arg(long, env = "RAMPART_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The CA certificate (PEM) that signed the server's certificate.
    #[arg(long, env = "RAMPART_API_CA")]
    ca: Option<PathBuf>,
}

impl OptionalApiArgs {
    /// Whether the API was named (by option or variable).
    pub fn given(&self) -> bool {
        self.api.is_some()
    }

    /// The client, once the URL, token and CA are all given.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        let (Some(api), Some(token), Some(ca)) = (&self.api, &self.token, &self.ca) else {
            anyhow::bail!(
                "the management API needs --api URL, --token TOKEN and --ca CA.pem (or RAMPART_API_URL, RAMPART_API_TOKEN and RAMPART_API_CA)"
            );
        };
        ApiClient::from_ca_file(api, token, ca)
    }
}

/// The management API and how to print its answer: a table for people, or with `--json` the
/// API's JSON for scripts.
#[derive(Args, Clone)]
pub struct ApiOutput {
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

impl ApiOutput {
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        self.api.client()
    }

    /// Prints `v` as JSON with `--json`, else as `human` renders it.
    pub fn print(&self, v: &Value, human: impl FnOnce(&Value) -> String) -> anyhow::Result<()> {
        if self.json {
            crate::shared::table::print_json(v)
        } else {
            print!("{}", human(v));
            Ok(())
        }
    }
}

/// An operator's HTTPS client for the management API.
pub struct ApiClient {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl ApiClient {
    /// `base` is `https://HOST:PORT`, or the `https://HOST:PORT/api/v1/` the server prints at
    /// start (see [`base_url`]); `ca_der` the certificate that signed the server's.
    pub fn new(base: &str, token: &str, ca_der: &[u8]) -> ApiClient {
        ApiClient {
            agent: ureq::Agent::config_builder()
                .tls_config(tls_trusting(ca_der))
                .http_status_as_error(false)
                .timeout_global(Some(std::time::Duration::from_secs(60)))
                .build()
                .into(),
            base: base_url(base),
            token: token.to_owned(),
        }
    }

    /// From a PEM CA certificate file.
    pub fn from_ca_file(base: &str, token: &str, ca: &Path) -> anyhow::Result<ApiClient> {
        let pem = std::fs::read(ca).with_context(|| {
            format!(
                "reading the server's CA certificate {} (--ca, RAMPART_API_CA)",
                ca.display()
            )
        })?;
        let der = pem::parse(&pem)
            .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
        Ok(ApiClient::new(base, token, der.contents()))
    }

    /// One request; returns the status and the body (JSON, or the text as a JSON string).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, text) = self.call_text(method, path, body)?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub fn call_text(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let started = std::time::Instant::now();
        let mut response = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("authorization", &auth)
                .call(),
            ("PUT", body) => self
                .agent
                .put(&url)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .send(body.unwrap_or(json!({})).to_string().as_bytes()),
            (_, body) => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .send(body.unwrap_or(json!({})).to_string().as_bytes()),
        }
        .map_err(|e| request_error(method, &url, e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()?;
        // `--log-level debug`: each call, as the server logs each request.
        rampart_server::log::debug(
            "api call",
            json!({"method": method, "url": url, "status": status, "bytes": text.len(),
                   "millis": started.elapsed().as_millis()}),
        );
        Ok((status, text))
    }

    /// A call that must succeed (2xx); otherwise the server's error explains why.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, body)?;
        if !(200..300).contains(&status) {
            let detail = value["detail"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            anyhow::bail!(
                "{method} {}{path}: {status} {}: {detail}",
                self.base,
                value["error"].as_str().unwrap_or("")
            );
        }
        Ok(value)
    }
}

/// TLS (rustls) that trusts only `ca_der`, the certificate that signed the server's: for every
/// client of a Rampart server's management listener (this API client, the console's login in
/// the tests and benchmarks).
pub fn tls_trusting(ca_der: &[u8]) -> ureq::tls::TlsConfig {
    ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[
            ureq::tls::Certificate::from_der(ca_der).to_owned(),
        ]))
        .build()
}

/// The server's base URL from what an operator gives: `https://HOST:PORT`, with or without a
/// trailing `/`, or the URL the server prints (`https://HOST:PORT/api/v1/`). The API prefix is
/// dropped because every request path carries it: kept, it would double into a 404.
pub fn base_url(given: &str) -> String {
    let trimmed = given.trim().trim_end_matches('/');
    trimmed
        .strip_suffix(API_PREFIX)
        .unwrap_or(trimmed)
        .to_owned()
}

/// A failed request, naming its URL. A plain `http://` URL that met a server answering
/// something other than HTTP (the TLS listener's alert) is told to use `https://`.
fn request_error(method: &str, url: &str, e: ureq::Error) -> anyhow::Error {
    let not_http = matches!(e, ureq::Error::Protocol(_))
        || matches!(&e, ureq::Error::Io(io) if matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::InvalidData
        ));
    match url.strip_prefix("http://") {
        Some(rest) if not_http => anyhow::anyhow!(
            "{method} {url}: the server did not answer in plain HTTP: this is an HTTPS endpoint: use https://{}",
            rest.split_once(API_PREFIX).map_or(rest, |(host, _)| host)
        ),
        _ => anyhow::Error::new(e).context(format!("{method} {url}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(path_segment("GHSA-abc_1~"), "GHSA-abc_1~");
        assert_eq!(path_segment("a/b?c&d=e f"), "a%2Fb%3Fc%26d%3De%20f");
        assert_eq!(path_segment(".."), "%2E%2E");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn the_printed_api_url_and_the_bare_base_are_one_base() {
        for given in [
            "https://127.0.0.1:8444",
            "https://127.0.0.1:8444/",
            "https://127.0.0.1:8444/api/v1",
            "https://127.0.0.1:8444/api/v1/",
            " https://127.0.0.1:8444/api/v1/ ",
        ] {
            assert_eq!(base_url(given), "https://127.0.0.1:8444", "{given:?}");
        }
        // A server behind a path prefix keeps it.
        assert_eq!(
            base_url("https://example.com/rampart/api/v1/"),
            "https://example.com/rampart"
        );
    }
}
