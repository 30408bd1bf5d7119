//! A log client: submits entries, waits for a witnessed checkpoint, and builds the offline
//! tlog-proof a release ships with.

use std::time::{Duration, Instant};

use rampart_log::checkpoint::Checkpoint;
use rampart_log::note::{Note, NoteSigner};
use rampart_log::policy::WitnessPolicy;
use rampart_log::proof::TlogProof;
use rampart_log::statement::{ReleaseStatement, verify_logged_release};

use crate::tiles::{HttpSource, LogSource, TileReadError, TreeReader};

/// Why logging failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("log checkpoint: {0}")]
    Checkpoint(String),
    #[error(
        "no witnessed checkpoint covering entry {index} appeared within {seconds} s; last error: {last}"
    )]
    Timeout {
        index: u64,
        seconds: u64,
        last: String,
    },
    #[error(transparent)]
    Tiles(#[from] TileReadError),
    #[error("release statement: {0}")]
    Statement(String),
    #[error("the proof the log produced does not verify: {0}")]
    SelfCheck(String),
}

/// A client of one log, trusting it under `policy`.
pub struct LogClient {
    url: String,
    source: HttpSource,
    policy: WitnessPolicy,
    agent: ureq::Agent,
}

impl LogClient {
    pub fn new(url: &str, policy: WitnessPolicy) -> LogClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        LogClient {
            url: url.trim_end_matches('/').to_string(),
            source: HttpSource::new(url),
            policy,
            agent,
        }
    }

    pub fn policy(&self) -> &WitnessPolicy {
        &self.policy
    }

    /// Submits an entry; returns its index once the log has made it durable.
    pub fn add(&self, entry: &[u8]) -> Result<u64, ClientError> {
        let url = format!("{}/add", self.url);
        let http = |reason: String| ClientError::Http {
            url: url.clone(),
            reason,
        };
        let mut resp = self
            .agent
            .post(&url)
            .send(entry)
            .map_err(|e| http(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(4096)
            .read_to_string()
            .map_err(|e| http(e.to_string()))?;
        if status != 200 {
            return Err(http(format!("status {status}: {}", body.trim())));
        }
        body.trim()
            .parse()
            .map_err(|_| http(format!("answer {body:?} is not an index")))
    }

    /// The current checkpoint, verified against the policy (log key and witness quorum).
    pub fn checkpoint(&self) -> Result<(Note, Checkpoint), ClientError> {
        let bytes = self.source.read("checkpoint")?;
        let note = Note::parse(&bytes).map_err(|e| ClientError::Checkpoint(e.to_string()))?;
        let cp = self
            .policy
            .verify_checkpoint(&note)
            .map_err(|e| ClientError::Checkpoint(e.to_string()))?;
        Ok((note, cp))
    }

    /// Waits until a verified checkpoint covers entry `index`.
    pub fn wait_for(
        &self,
        index: u64,
        timeout: Duration,
    ) -> Result<(Note, Checkpoint), ClientError> {
        let start = Instant::now();
        let mut last: String;
        loop {
            match self.checkpoint() {
                Ok((note, cp)) if cp.size > index => return Ok((note, cp)),
                Ok((_, cp)) => last = format!("checkpoint size {} does not cover it yet", cp.size),
                Err(e) => last = e.to_string(),
            }
            if start.elapsed() > timeout {
                return Err(ClientError::Timeout {
                    index,
                    seconds: timeout.as_secs(),
                    last,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The inclusion proof of entry `index` in the tree of `checkpoint`.
    pub fn prove(
        &self,
        index: u64,
        note: Note,
        checkpoint: &Checkpoint,
        extra: Option<Vec<u8>>,
    ) -> Result<TlogProof, ClientError> {
        let mut reader = TreeReader::new(&self.source, checkpoint.size);
        let hashes = reader.inclusion_proof(index)?;
        Ok(TlogProof {
            extra,
            index,
            hashes,
            checkpoint: note,
        })
    }

    /// Logs a release: signs its statement with the release key, appends it, waits for a
    /// witnessed checkpoint and returns the tlog-proof (checked before it is returned).
    pub fn log_release(
        &self,
        statement: &ReleaseStatement,
        release_key: &NoteSigner,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let text = statement
            .to_text()
            .map_err(|e| ClientError::Statement(e.to_string()))?;
        let sig = release_key
            .sign(&text)
            .map_err(|e| ClientError::Statement(e.to_string()))?;
        let (entry, _) = statement
            .entry(std::slice::from_ref(&sig))
            .map_err(|e| ClientError::Statement(e.to_string()))?;
        let index = self.add(&entry)?;
        let (note, cp) = self.wait_for(index, timeout)?;
        let proof = self
            .prove(index, note, &cp, Some(sig.to_line().into_bytes()))?
            .to_bytes();
        verify_logged_release(statement, &proof, &self.policy, &release_key.verifier())
            .map_err(|e| ClientError::SelfCheck(e.to_string()))?;
        Ok(proof)
    }
}
