//! Audit anchoring: signed heads of the audit log, so a history rewritten with recomputed
//! hashes, or cut short, no longer verifies (issue 13 item 5; decision 0020).
//!
//! The server holds an audit key (an Ed25519 signed-note key, `rampart server --audit-key`) and
//! signs the head of the audit log ([`rampart_audit::AuditHead`]: record count, hash of the
//! last record, time) every [`AuditAnchorConfig::interval`] when records were added, on demand
//! (`POST /api/v1/audit/anchor`, admin or auditor, itself audited) and at shutdown. Heads are
//! stored in `audit_heads` and, with a transparency log configured, appended to it as entries,
//! so the log's witnesses vouch that each head was published. Before signing, the server
//! checks that the log still extends the last head it signed: a history rewritten behind its
//! back is refused, never blessed with a new signature.
//!
//! [`verify_stored_log`] is the offline check behind `rampart audit verify --anchor-key`: the
//! whole chain, against every head it is given (off-box copies, the transparency log) and every
//! head stored in the database, each signature checked with the audit key first.

use std::sync::Arc;
use std::time::Duration;

use rampart_audit::{AuditChain, AuditError, AuditHead, AuditRecord, VerifiedChain};
use rampart_db::{AuditLine, Db, DbError, StoredAuditHead};
use rampart_log::note::{NoteSigner, Verifier};
use serde_json::json;
use tokio::sync::{Mutex, watch};

use crate::helpers::unix_now;
use crate::observe::audit::AuditWriter;
pub use crate::observe::labels::AnchorFailure;

/// Default interval between signed heads (a head is signed only when records were added).
pub const DEFAULT_ANCHOR_INTERVAL: Duration = Duration::from_secs(300);

/// How long a transparency-log append may take before it is retried at the next interval.
const LOG_APPEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Audit records read per query while checking the log.
pub(crate) const PAGE: i64 = 10_000;

/// How the server anchors its audit log.
#[derive(Clone)]
pub struct AuditAnchorConfig {
    /// The audit key: signs the heads. Its verifier key (`rampart log vkey FILE`) is what
    /// `rampart audit verify --anchor-key` takes.
    pub key: Arc<NoteSigner>,
    /// A head is signed this often when records were added since the last one.
    pub interval: Duration,
    /// The transparency log heads are appended to, if any.
    pub log: Option<AuditLogTarget>,
}

/// A transparency log that audit heads are appended to (as any entry: `POST /add`).
#[derive(Debug, Clone)]
pub struct AuditLogTarget {
    pub url: String,
    /// The log's key and witnesses: how verifiers (`rampart audit verify --log-url`) trust it.
    pub policy: rampart_log::policy::WitnessPolicy,
}

impl std::fmt::Debug for AuditAnchorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditAnchorConfig")
            .field("key", &self.key.verifier_key_string())
            .field("interval", &self.interval)
            .field("log", &self.log.as_ref().map(|l| &l.url))
            .finish()
    }
}

/// Why no head was signed.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The stored log does not extend the last head this server signed, or is damaged: it was
    /// rewritten or truncated. Nothing is signed over it.
    #[error(
        "the audit log no longer matches the last signed head ({0}); nothing was signed: run `rampart audit verify --db URL --anchor-key KEY` and restore the log from a backup"
    )]
    Tampered(String),
    #[error("signing the audit head: {0}")]
    Sign(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A head that was signed (or the newest stored one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    pub head: AuditHead,
    /// The signed note, as stored and published.
    pub note: String,
    /// Its entry in the transparency log, once appended.
    pub log_index: Option<u64>,
}

/// Signs and publishes audit heads for one database.
pub struct AuditAnchor {
    db: Db,
    writer: AuditWriter,
    pub(crate) config: AuditAnchorConfig,
    /// The last head this process signed or checked: the history it must keep extending.
    last: Mutex<Option<SignedHead>>,
    metrics: Option<Arc<crate::observe::metrics::Metrics>>,
}

impl AuditAnchor {
    pub fn new(db: Db, writer: AuditWriter, config: AuditAnchorConfig) -> Self {
        Self {
            db,
            writer,
            config,
            last: Mutex::new(None),
            metrics: None,
        }
    }

    /// Counts signed heads and failures in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::observe::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count_failure(&self, failure: AnchorFailure) {
        if let Some(m) = &self.metrics {
            crate::observe::metrics::Metrics::inc(&m.audit_anchor_failures[failure as usize]);
        }
    }

    /// The verifier key of the audit key (`name+id+base64`), for `--anchor-key`.
    pub fn public_key(&self) -> String {
        self.config.key.verifier_key_string()
    }

    /// Signs a head over the stored log if records were added since the newest head, checking
    /// first that the log extends it. Returns the newest head either way (`None`: the log is
    /// empty). A head not yet in the transparency log is (re)submitted.
    pub async fn anchor(&self) -> Result<Option<SignedHead>, AnchorError> {
        let result = self.anchor_once().await;
        if let Err(e) = &result {
            self.count_failure(match e {
                AnchorError::Tampered(_) => AnchorFailure::Tampered,
                AnchorError::Sign(_) | AnchorError::Db(_) => AnchorFailure::Storage,
            });
        }
        result
    }

    async fn anchor_once(&self) -> Result<Option<SignedHead>, AnchorError> {
        let mut last = self.last.lock().await;
        if last.is_none() {
            *last = self.stored_base().await?;
        }
        let base = last.as_ref().map(|signed| signed.head);
        // The bulk of the log is checked while appends go on; under the lock only what was
        // appended meanwhile is read.
        let checked = self.check_extends(base.as_ref()).await?.map(|r| AuditHead {
            size: r.seq + 1,
            hash: r.hash,
            time: r.time,
        });
        {
            // Appends wait while the head is read, so the head signed is the log's head.
            let _appends = self.writer.hold().await;
            let Some(tip) = self
                .check_extends(checked.as_ref().or(base.as_ref()))
                .await?
            else {
                return Ok(None);
            };
            if base.is_none_or(|b| b.size != tip.seq + 1) {
                let head = AuditHead {
                    size: tip.seq + 1,
                    hash: tip.hash,
                    time: unix_now(),
                };
                let note = head
                    .sign(&self.config.key)
                    .map_err(|e| AnchorError::Sign(e.to_string()))?;
                let note = String::from_utf8(note)
                    .map_err(|_| AnchorError::Sign("the signed note is not UTF-8".into()))?;
                self.db
                    .insert_audit_head(&StoredAuditHead {
                        tree_size: head.size,
                        signed_at: head.time,
                        note: note.clone(),
                        log_index: None,
                    })
                    .await?;
                if let Some(m) = &self.metrics {
                    crate::observe::metrics::Metrics::inc(&m.audit_heads_signed);
                }
                crate::observe::log::info(
                    "audit head signed",
                    json!({"size": head.size, "hash": hex::encode(head.hash)}),
                );
                *last = Some(SignedHead {
                    head,
                    note,
                    log_index: None,
                });
            }
        }
        // Only heads this key signed are published: never a note someone put in the database.
        if let Some(newest) = last.as_mut()
            && newest.log_index.is_none()
            && self.config.log.is_some()
        {
            newest.log_index = self.publish(newest).await;
        }
        Ok(last.clone())
    }

    /// The newest stored head signed by this key, as the history to extend. Heads signed by
    /// another key (an earlier audit key), or not at all, are skipped; `audit verify` still
    /// checks every one of them.
    async fn stored_base(&self) -> Result<Option<SignedHead>, AnchorError> {
        let heads = self.db.audit_heads(PAGE).await?;
        Ok(newest_signed_by(&heads, &self.config.key.verifier()))
    }

    /// Checks that the stored log extends `base` (record `base.size - 1` has its hash and
    /// every later record links to the one before) and returns the last record.
    async fn check_extends(
        &self,
        base: Option<&AuditHead>,
    ) -> Result<Option<AuditRecord>, AnchorError> {
        let tampered = |e: String| AnchorError::Tampered(e);
        let start = base.map_or(0, |b| b.size - 1);
        let mut chain: Option<AuditChain> = None;
        let mut last: Option<AuditRecord> = None;
        let mut from = start;
        loop {
            let lines = self.db.audit_lines(from, PAGE).await?;
            let Some(tail) = lines.last() else { break };
            from = tail.seq + 1;
            for line in &lines {
                let record = parse_line(line).map_err(tampered)?;
                match chain.as_mut() {
                    None => {
                        if record.seq != start {
                            return Err(tampered(format!(
                                "record {start} is missing: the log continues at record {}",
                                record.seq
                            )));
                        }
                        if let Some(base) = base
                            && record.hash != base.hash
                        {
                            return Err(tampered(format!(
                                "record {} does not have the hash of the head signed over {} records",
                                record.seq, base.size
                            )));
                        }
                        chain = Some(if start == 0 {
                            // From the beginning: record 0 itself must be a genuine first record.
                            let mut fresh = AuditChain::new();
                            let rebuilt = fresh
                                .append(
                                    record.time,
                                    &record.actor,
                                    &record.action,
                                    &record.subject,
                                    record.details.clone(),
                                )
                                .map_err(|e| tampered(e.to_string()))?;
                            if rebuilt != record {
                                return Err(tampered(
                                    "record 0 is not a valid first record".into(),
                                ));
                            }
                            fresh
                        } else {
                            AuditChain::resume(Some(&record))
                                .map_err(|e| tampered(e.to_string()))?
                        });
                    }
                    Some(chain) => {
                        let rebuilt = chain
                            .append(
                                record.time,
                                &record.actor,
                                &record.action,
                                &record.subject,
                                record.details.clone(),
                            )
                            .map_err(|e| tampered(format!("record {}: {e}", record.seq)))?;
                        if rebuilt != record {
                            return Err(tampered(format!(
                                "record {} does not follow record {} (edited, removed or reordered)",
                                rebuilt.seq,
                                rebuilt.seq.saturating_sub(1)
                            )));
                        }
                    }
                }
                last = Some(record);
            }
        }
        if let (Some(base), None) = (base, &last) {
            return Err(tampered(format!(
                "history truncated: the head signed over {} records is not covered, record {} is missing",
                base.size,
                base.size - 1
            )));
        }
        Ok(last)
    }

    /// Appends the head to the transparency log; on failure it is logged and retried at the
    /// next interval.
    async fn publish(&self, head: &SignedHead) -> Option<u64> {
        let target = self.config.log.clone()?;
        let entry = head.note.clone().into_bytes();
        let size = head.head.size;
        let append = tokio::task::spawn_blocking(move || {
            rampart_tlog::client::LogClient::new(&target.url, target.policy)
                .add(&entry)
                .map_err(|e| e.to_string())
        });
        let result = match tokio::time::timeout(LOG_APPEND_TIMEOUT, append).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the append task failed".to_string()),
            Err(_) => Err(format!(
                "no answer within {}s",
                LOG_APPEND_TIMEOUT.as_secs()
            )),
        };
        match result {
            Ok(index) => {
                if let Err(e) = self.db.set_audit_head_log_index(size, index).await {
                    crate::observe::log::error(
                        "recording the transparency-log index of an audit head",
                        json!({"size": size, "index": index, "error": e.to_string()}),
                    );
                }
                Some(index)
            }
            Err(e) => {
                self.count_failure(AnchorFailure::TransparencyLog);
                crate::observe::log::error(
                    "appending the audit head to the transparency log (retried at the next interval)",
                    json!({"size": size, "error": e}),
                );
                None
            }
        }
    }

    /// Signs heads every interval until `stop`, then once more so the final state is anchored.
    pub(crate) async fn run(
        self: Arc<Self>,
        stop: watch::Receiver<bool>,
        heart: super::heartbeat::Heart,
    ) {
        let stop = crate::helpers::stopped(stop);
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.anchor_logged().await,
                () = &mut stop => break,
            }
            heart.beat(crate::helpers::unix_now());
        }
        self.anchor_logged().await;
    }

    async fn anchor_logged(&self) {
        if let Err(e) = self.anchor().await {
            crate::observe::log::error("anchoring the audit log", json!({"error": e.to_string()}));
        }
    }
}

/// The stored head covering the most records among those `key` signed.
pub(crate) fn newest_signed_by(heads: &[StoredAuditHead], key: &Verifier) -> Option<SignedHead> {
    heads.iter().rev().find_map(|stored| {
        rampart_audit::verify_signed_head(stored.note.as_bytes(), key)
            .ok()
            .filter(|head| head.size == stored.tree_size)
            .map(|head| SignedHead {
                head,
                note: stored.note.clone(),
                log_index: stored.log_index,
            })
    })
}

fn parse_line(line: &AuditLine) -> Result<AuditRecord, String> {
    let mut records = rampart_audit::parse_jsonl(line.line.as_bytes())
        .map_err(|e| format!("stored record {}: {e}", line.seq))?;
    match (records.pop(), records.is_empty()) {
        (Some(record), true) if record.seq == line.seq => Ok(record),
        _ => Err(format!(
            "row {} does not hold exactly that record",
            line.seq
        )),
    }
}

// ---- the offline check (`rampart audit verify --anchor-key`) ------------------------------

/// What [`verify_stored_log`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredCheck {
    pub chain: VerifiedChain,
    /// Heads checked (from the database and given), after their signatures.
    pub heads: usize,
    /// The head covering the most records.
    pub newest: AuditHead,
}

/// Why the stored log does not check out against its anchors.
#[derive(Debug, thiserror::Error)]
pub enum AnchorCheckError {
    #[error("{0}")]
    Chain(#[from] AuditError),
    /// A signed head (stored or given) is not validly signed by any of the audit keys.
    #[error("{source_name}: {error}")]
    Head {
        source_name: String,
        error: AuditError,
    },
    #[error(
        "no signed audit head to check against: the database holds none signed by the audit key and none was given (--head FILE, --log-url URL); keep copies with `rampart audit head --db URL`"
    )]
    NoHead,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Verifies the stored log against the heads stored with it and `given` ones (each a signed
/// note, named for error messages), every signature checked against `keys` first: a head not
/// signed by an audit key is refused. Names the first bad or missing record.
pub async fn verify_stored_log(
    db: &Db,
    keys: &[Verifier],
    given: &[(String, Vec<u8>)],
) -> Result<AnchoredCheck, AnchorCheckError> {
    let mut heads = Vec::new();
    let stored = db.audit_heads(1_000_000).await?;
    let notes = stored
        .iter()
        .map(|h| {
            (
                format!("the stored audit head over {} records", h.tree_size),
                h.note.as_bytes().to_vec(),
            )
        })
        .chain(given.iter().cloned());
    for (source_name, note) in notes {
        let head = signed_by_any(&note, keys)
            .map_err(|error| AnchorCheckError::Head { source_name, error })?;
        heads.push(head);
    }
    let newest = *heads
        .iter()
        .max_by_key(|h| h.size)
        .ok_or(AnchorCheckError::NoHead)?;
    let records = stored_records(db).await?;
    let chain = rampart_audit::verify_against_heads(&records, &heads)?;
    Ok(AnchoredCheck {
        chain,
        heads: heads.len(),
        newest,
    })
}

/// Every stored audit record, in order; a row that does not parse is named as an invalid
/// record.
pub async fn stored_records(db: &Db) -> Result<Vec<AuditRecord>, AnchorCheckError> {
    let mut records = Vec::new();
    let mut from = 0;
    loop {
        let lines = db.audit_lines(from, PAGE).await?;
        let Some(tail) = lines.last() else { break };
        from = tail.seq + 1;
        for line in &lines {
            let mut parsed = rampart_audit::parse_jsonl(line.line.as_bytes()).map_err(|e| {
                AuditError::InvalidRecord {
                    seq: line.seq,
                    field: "record",
                    reason: format!("the stored row does not parse: {e}"),
                }
            })?;
            records.append(&mut parsed);
        }
    }
    Ok(records)
}

/// The head a note vouches for if any of `keys` signed it.
pub fn signed_by_any(note: &[u8], keys: &[Verifier]) -> Result<AuditHead, AuditError> {
    let mut last_error = AuditError::HeadSignature {
        reason: "no audit key given".into(),
    };
    for key in keys {
        match rampart_audit::verify_signed_head(note, key) {
            Ok(head) => return Ok(head),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}
