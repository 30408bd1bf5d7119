//! `rampart audit ...`: the offline checks of the tamper-evident audit log (verify, against
//! signed heads too; export; the current head).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::shared::database::{audit_jsonl_from_db, block_on};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify an exported audit log (JSON Lines) or the server's stored one: any edited,
    /// removed, duplicated or reordered record fails, naming it. With --anchor-key, also against
    /// the signed audit heads (stored with the log, given with --head FILE, found in the
    /// transparency log with --log-url): a history rewritten with recomputed hashes, or cut
    /// short, fails, naming the first bad or missing record.
    Verify {
        /// An exported log (JSON Lines); or give --db to check the server's stored log.
        #[arg(required_unless_present = "db", conflicts_with = "db")]
        file: Option<PathBuf>,
        /// The server's database (sqlite://PATH or postgres://...).
        #[arg(long)]
        db: Option<String>,
        /// The audit key's verifier key (`name+id+base64`, printed by `rampart server` and by
        /// `rampart log vkey AUDIT_KEY`), or a file holding it. Repeatable (earlier keys).
        #[arg(long = "anchor-key", value_name = "KEY")]
        anchor_keys: Vec<String>,
        /// A signed audit head (from `rampart audit head` or GET /api/v1/audit/head), kept off
        /// the server; repeatable. With --count instead: a head hash (hex) published earlier.
        #[arg(long = "head", value_name = "FILE")]
        heads: Vec<String>,
        /// With a hex --head: the number of records it covers.
        #[arg(long, requires = "heads")]
        count: Option<u64>,
        /// A transparency log the server appends its heads to (`--audit-log-url`); every head
        /// in it signed by --anchor-key is checked. Needs --log-policy.
        #[arg(long, requires_all = ["log_policy", "anchor_keys"])]
        log_url: Option<String>,
        /// The log's witness policy (log key, witnesses, quorum).
        #[arg(long, requires = "log_url")]
        log_policy: Option<PathBuf>,
        /// With --anchor-key: records written over more than this many seconds after the newest
        /// signed head fail the check (the server signs a head every 300 s by default, so a
        /// longer unsigned tail means newer heads were removed). Raise it with a longer
        /// `--audit-anchor-interval`.
        #[arg(long, default_value_t = 900, requires = "anchor_keys")]
        max_unanchored_secs: i64,
    },
    /// Print the newest signed audit head stored with the server's log (a signed note), to keep
    /// a copy off the server for `rampart audit verify --head FILE`.
    Head {
        /// The server's database (sqlite://PATH or postgres://...).
        #[arg(long)]
        db: String,
        /// Write it to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Convert an exported audit log (JSON Lines) to CSV or a JSON array on stdout.
    Export {
        /// An exported log (JSON Lines); or give --db to read the server's stored log.
        #[arg(required_unless_present = "db", conflicts_with = "db")]
        file: Option<PathBuf>,
        /// The server's database (sqlite://PATH or postgres://...).
        #[arg(long)]
        db: Option<String>,
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

fn read_records(
    file: Option<&Path>,
    db: Option<&str>,
) -> anyhow::Result<Vec<rampart_audit::AuditRecord>> {
    let (bytes, source) = match (file, db) {
        (Some(file), _) => (
            std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
            file.display().to_string(),
        ),
        (None, Some(url)) => (audit_jsonl_from_db(url)?, "the stored audit log".to_owned()),
        (None, None) => bail!("give an exported log file or --db URL"),
    };
    rampart_audit::parse_jsonl(bytes)
        .with_context(|| {
            format!("{source} does not parse as an audit log: not an audit export (JSON Lines), or damaged or tampered with")
        })
}

/// `--anchor-key`: a verifier key, or a file holding one.
pub(crate) fn read_anchor_key(value: &str) -> anyhow::Result<rampart_log::note::Verifier> {
    let text = match std::fs::read_to_string(value) {
        Ok(text) => text,
        Err(_) => value.to_owned(),
    };
    rampart_log::note::Verifier::parse(text.trim()).with_context(|| {
        format!(
            "--anchor-key {value:?} is not a verifier key (name+id+base64) or a file holding one; print it with `rampart log vkey AUDIT_KEY`"
        )
    })
}

/// The audit heads in a transparency log that `keys` signed, each named by its entry, after
/// checking the log's checkpoint against its witness policy and the tiles against the
/// checkpoint.
fn heads_from_log(
    url: &str,
    policy: &Path,
    keys: &[rampart_log::note::Verifier],
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use rampart_tlog::tiles::{HttpSource, LogSource as _, TreeReader};
    let policy_text = std::fs::read_to_string(policy)
        .with_context(|| format!("reading the witness policy {}", policy.display()))?;
    let policy = rampart_log::policy::WitnessPolicy::parse(&policy_text)
        .with_context(|| format!("{} is not a witness policy", policy.display()))?;
    let source = HttpSource::new(url);
    let checkpoint = rampart_log::note::Note::parse(
        &source
            .read("checkpoint")
            .with_context(|| format!("reading the checkpoint of {url}"))?,
    )
    .context("the log's checkpoint is not a signed note")?;
    let checkpoint = policy
        .verify_checkpoint(&checkpoint)
        .context("the log's checkpoint does not verify against the witness policy")?;
    let mut reader = TreeReader::new(&source, checkpoint.size);
    if checkpoint.size > 0 && reader.root()? != checkpoint.root {
        bail!("the log's tiles do not hash to its checkpoint's root: the log is inconsistent");
    }
    let width = rampart_log::tiles::TILE_WIDTH;
    let mut heads = Vec::new();
    for bundle in 0..checkpoint.size.div_ceil(width) {
        for (k, entry) in reader.entries(bundle)?.into_iter().enumerate() {
            let index = bundle * width + k as u64;
            if index >= checkpoint.size {
                break;
            }
            if rampart_log::merkle::leaf_hash(&entry) != reader.node(0, index)? {
                bail!(
                    "entry {index} of {url} does not match its leaf hash: the log is inconsistent"
                );
            }
            let is_head = rampart_log::note::Note::parse(&entry).is_ok_and(|note| {
                note.text.starts_with(rampart_audit::HEAD_HEADER)
                    && !note.verified_by(keys).is_empty()
            });
            if is_head {
                heads.push((format!("the head in entry {index} of {url}"), entry));
            }
        }
    }
    Ok(heads)
}

/// `rampart audit verify --anchor-key`: the chain against every signed head found.
fn verify_anchored(
    file: Option<&Path>,
    db: Option<&str>,
    anchor_keys: &[String],
    head_files: &[String],
    log: Option<(&str, &Path)>,
    max_unanchored_secs: i64,
) -> anyhow::Result<()> {
    let keys = anchor_keys
        .iter()
        .map(|k| read_anchor_key(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut given = Vec::new();
    for path in head_files {
        let note = std::fs::read(path).with_context(|| format!("reading the head {path}"))?;
        given.push((path.clone(), note));
    }
    let mut from_log = None;
    if let Some((url, policy)) = log {
        let found = heads_from_log(url, policy, &keys)?;
        if found.is_empty() {
            eprintln!("note: {url} holds no audit head signed by the audit key");
        }
        from_log = Some(found.len());
        given.extend(found);
    }
    let check = match (file, db) {
        (None, Some(url)) => {
            let url = url.to_owned();
            block_on(async move {
                let db = crate::shared::database::connect_existing(&url).await?;
                let check =
                    rampart_server::audit_anchor::verify_stored_log(&db, &keys, &given).await;
                db.close().await;
                anyhow::Ok(check)
            })??
            .context("AUDIT LOG TAMPERED")?
        }
        _ => {
            let records = read_records(file, db)?;
            let mut heads = Vec::new();
            for (name, note) in &given {
                heads.push(
                    rampart_server::audit_anchor::signed_by_any(note, &keys)
                        .with_context(|| format!("AUDIT LOG TAMPERED: {name}"))?,
                );
            }
            let newest = *heads.iter().max_by_key(|h| h.size).context(
                "no signed audit head to check an exported log against: give --head FILE or --log-url URL",
            )?;
            let chain = rampart_audit::verify_against_heads(&records, &heads)
                .context("AUDIT LOG TAMPERED")?;
            rampart_server::audit_anchor::AnchoredCheck {
                chain,
                heads: heads.len(),
                newest,
            }
        }
    };
    // Heads stored with the log can be deleted with it: a long tail of records after the newest
    // head means newer heads are missing.
    let records = read_records(file, db)?;
    if let Some(last) = records.last()
        && check.chain.count > check.newest.size
        && last.time - check.newest.time > max_unanchored_secs
    {
        bail!(
            "AUDIT LOG TAMPERED: {} records were written over {} s after the newest signed head (covering {} records, signed {}), more than --max-unanchored-secs {}: the server signs heads every few minutes, so newer heads were removed; compare with a head kept off the server (--head FILE, --log-url)",
            check.chain.count - check.newest.size,
            last.time - check.newest.time,
            check.newest.size,
            rampart_audit::rfc3339_from_unix(check.newest.time)
                .unwrap_or_else(|| check.newest.time.to_string()),
            max_unanchored_secs
        );
    }
    if head_files.is_empty() && log.is_none() {
        eprintln!(
            "warning: every head came from the database being verified; whoever can rewrite it can also delete its newest heads together with the records they cover. Keep heads off the server (`rampart audit head --out FILE` regularly, or `rampart server --audit-log-url`) and give them with --head or --log-url."
        );
    }
    println!(
        "ok: {} records, head {}; consistent with {} signed audit head(s){}, the newest covering {} records (signed {})",
        check.chain.count,
        hex::encode(check.chain.head),
        check.heads,
        from_log.map_or(String::new(), |n| format!(
            " ({n} from the transparency log)"
        )),
        check.newest.size,
        rampart_audit::rfc3339_from_unix(check.newest.time)
            .unwrap_or_else(|| check.newest.time.to_string())
    );
    Ok(())
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify {
            file,
            db,
            anchor_keys,
            heads,
            count,
            log_url,
            log_policy,
            max_unanchored_secs,
        } => {
            if !anchor_keys.is_empty() {
                let log = log_url.as_deref().zip(log_policy.as_deref());
                return verify_anchored(
                    file.as_deref(),
                    db.as_deref(),
                    &anchor_keys,
                    &heads,
                    log,
                    max_unanchored_secs,
                );
            }
            let expected = match (heads.as_slice(), count) {
                ([h], Some(c)) => {
                    let h: [u8; 32] = hex::decode(h)
                        .ok()
                        .and_then(|v| v.try_into().ok())
                        .context("--head with --count must be 64 hex characters")?;
                    Some((h, c))
                }
                ([], None) => None,
                (_, Some(_)) => bail!("--count goes with exactly one hex --head"),
                (_, None) => bail!(
                    "--head FILE is a signed audit head: give the audit key with --anchor-key KEY to check it"
                ),
            };
            let records = read_records(file.as_deref(), db.as_deref())?;
            let v =
                rampart_audit::verify_against(&records, expected).context("AUDIT LOG TAMPERED")?;
            println!("ok: {} records, head {}", v.count, hex::encode(v.head));
            if db.is_some() && expected.is_none() {
                eprintln!(
                    "note: without --anchor-key this checks the chain only; a history rewritten with recomputed hashes, or cut short, also passes"
                );
            }
        }
        AuditCommand::Head { db, out } => {
            let head = block_on(async move {
                let db = crate::shared::database::connect_existing(&db).await?;
                let head = db.latest_audit_head().await;
                db.close().await;
                anyhow::Ok(head?)
            })??
            .context(
                "no audit head has been signed yet: the server signs one when it runs with an audit key (`rampart server --audit-key FILE`)",
            )?;
            match out {
                Some(path) => {
                    rampart_tuf_client::store::write_atomic(&path, head.note.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "wrote the signed head over {} records to {}",
                        head.tree_size,
                        path.display()
                    );
                }
                None => print!("{}", head.note),
            }
        }
        AuditCommand::Export { file, db, format } => {
            let records = read_records(file.as_deref(), db.as_deref())?;
            match format.as_str() {
                "jsonl" => print!("{}", rampart_audit::to_jsonl(&records)),
                "csv" => print!("{}", rampart_audit::to_csv(&records)),
                "json" => println!("{}", serde_json::to_string_pretty(&records)?),
                other => bail!("unknown --format {other:?}: use csv, json or jsonl"),
            }
        }
    }
    Ok(())
}
