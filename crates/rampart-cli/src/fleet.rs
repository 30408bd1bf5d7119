//! `rampart ca ...`, `rampart device provision` and `rampart audit ...`: device identity for
//! factories and tests, and the offline audit-log checks.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Subcommand;
use rampart_pki::CertificateAuthority;

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create a manufacturer CA in DIR (ca.pem, ca.key with mode 0600, an empty CRL).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Rampart manufacturer CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue the update server's TLS certificate (DNS names and IP addresses).
    ServerCert {
        #[arg(long)]
        ca: PathBuf,
        /// A DNS name or IP address (repeat).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Revoke a certificate by serial (hex) and write a new CRL (crl.pem) for the server.
    Revoke {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        serial: String,
    },
}

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Issue a device key and certificate (OUT/ID.pem, OUT/ID.key with mode 0600).
    Provision {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
}

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

fn load_ca(dir: &Path) -> anyhow::Result<CertificateAuthority> {
    let cert = std::fs::read_to_string(dir.join("ca.pem"))
        .with_context(|| format!("reading {}/ca.pem", dir.display()))?;
    let key = std::fs::read_to_string(dir.join("ca.key"))
        .with_context(|| format!("reading {}/ca.key", dir.display()))?;
    Ok(CertificateAuthority::load(&cert, &key)?)
}

/// Writes the CRL for the serials listed in DIR/revoked (one `serial unix-time` a line).
fn write_crl(ca: &CertificateAuthority, dir: &Path) -> anyhow::Result<usize> {
    let list = std::fs::read_to_string(dir.join("revoked")).unwrap_or_default();
    let mut revoked = Vec::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (serial, t) = line
            .split_once(' ')
            .context("malformed line in the revoked list")?;
        let t: u64 = t
            .trim()
            .parse()
            .context("malformed time in the revoked list")?;
        revoked.push((
            serial.to_string(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(t),
        ));
    }
    let number = revoked.len() as u64 + 1;
    let now = SystemTime::now();
    let crl = ca.crl(
        &revoked,
        now,
        now + Duration::from_secs(30 * 86_400),
        number,
    )?;
    rampart_tuf_client::store::write_atomic(&dir.join("crl.pem"), crl.as_bytes())?;
    Ok(revoked.len())
}

pub fn ca_command(cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init { dir, name, days } => {
            if dir.join("ca.key").exists() {
                bail!(
                    "{} already holds a CA; refusing to overwrite its key",
                    dir.display()
                );
            }
            std::fs::create_dir_all(&dir)?;
            let ca = CertificateAuthority::generate(&name, days)?;
            rampart_pki::write_private_key_pem(&dir.join("ca.key"), &ca.key_pem())?;
            rampart_tuf_client::store::write_atomic(&dir.join("ca.pem"), ca.cert_pem().as_bytes())?;
            write_crl(&ca, &dir)?;
            println!(
                "created CA {name:?} in {} (serial {})",
                dir.display(),
                ca.serial()
            );
        }
        CaCommand::ServerCert {
            ca,
            names,
            out,
            days,
        } => {
            let ca = load_ca(&ca)?;
            let issued = ca.issue_server(&names, days)?;
            std::fs::create_dir_all(&out)?;
            rampart_pki::write_private_key_pem(&out.join("server.key"), &issued.key_pem)?;
            rampart_tuf_client::store::write_atomic(
                &out.join("server.pem"),
                issued.cert_pem.as_bytes(),
            )?;
            println!(
                "issued server certificate for {names:?} (serial {})",
                issued.serial
            );
        }
        CaCommand::Revoke { ca: dir, serial } => {
            let ca = load_ca(&dir)?;
            let serial = serial
                .trim()
                .trim_start_matches("0x")
                .replace(':', "")
                .to_ascii_lowercase();
            if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("--serial must be the certificate serial in hex");
            }
            let mut list = std::fs::read_to_string(dir.join("revoked")).unwrap_or_default();
            if list
                .lines()
                .any(|l| l.split(' ').next() == Some(serial.as_str()))
            {
                bail!("serial {serial} is already revoked");
            }
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)?
                .as_secs();
            list.push_str(&format!("{serial} {now}\n"));
            rampart_tuf_client::store::write_atomic(&dir.join("revoked"), list.as_bytes())?;
            let n = write_crl(&ca, &dir)?;
            println!(
                "revoked {serial}; {}/crl.pem now lists {n} certificate(s): reload the server",
                dir.display()
            );
        }
    }
    Ok(())
}

pub fn device_command(cmd: DeviceCommand) -> anyhow::Result<()> {
    let DeviceCommand::Provision { ca, id, out, days } = cmd;
    let ca = load_ca(&ca)?;
    let issued = ca.issue_device(&id, days)?;
    std::fs::create_dir_all(&out)?;
    rampart_pki::write_private_key_pem(&out.join(format!("{id}.key")), &issued.key_pem)?;
    rampart_tuf_client::store::write_atomic(
        &out.join(format!("{id}.pem")),
        issued.cert_pem.as_bytes(),
    )?;
    println!(
        "provisioned device {id} (certificate serial {})",
        issued.serial
    );
    Ok(())
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
        (None, Some(url)) => (
            crate::server::audit_jsonl_from_db(url)?,
            "the stored audit log".to_owned(),
        ),
        (None, None) => bail!("give an exported log file or --db URL"),
    };
    rampart_audit::parse_jsonl(bytes)
        .with_context(|| {
            format!("{source} does not parse as an audit log: not an audit export (JSON Lines), or damaged or tampered with")
        })
}

/// Name of the audit keys `rampart server` creates (the signed notes' key name).
pub const AUDIT_KEY_NAME: &str = "rampart-audit";

/// Where `rampart server` keeps its audit key by default: `PATH.audit-key` next to a
/// `sqlite://PATH` database; `None` for PostgreSQL and in-memory databases (give --audit-key).
pub fn default_audit_key(db_url: &str) -> Option<PathBuf> {
    let rest = db_url
        .strip_prefix("sqlite://")
        .or_else(|| db_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.audit-key")))
}

/// Reads the audit key at `path`, or creates it (mode 0600) if it does not exist. A key file
/// others may read is refused: whoever holds the key can sign a rewritten history.
pub fn load_or_create_audit_key(path: &Path) -> anyhow::Result<rampart_log::note::NoteSigner> {
    use ring::rand::SecureRandom as _;
    if !path.exists() {
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let key = rampart_log::note::NoteSigner::from_seed(AUDIT_KEY_NAME, seed)?;
        if create_private_once(path, format!("{}\n", key.signer_key_string()).as_bytes())
            .with_context(|| format!("creating the audit key {}", path.display()))?
        {
            return Ok(key);
        }
        // Another server created it at the same moment: both use that one.
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading the audit key {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "the audit key {} may be read by other users (mode {:o}): run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the audit key {}", path.display()))?;
    rampart_log::note::NoteSigner::parse_signer_key(text.trim()).with_context(|| {
        format!(
            "{} is not an audit key (a signed-note key from `rampart log keygen`)",
            path.display()
        )
    })
}

/// Writes `bytes` to a new owner-only file at `path`, whole (written and synced under a
/// temporary name, then linked in place); `false` if `path` already exists, which is then left
/// as it is.
fn create_private_once(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-audit-key-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

/// The audit anchoring of `rampart server`: the key (given, or the default next to a SQLite
/// database), the interval, and the transparency log heads are appended to.
pub fn audit_anchor_config(
    db_url: &str,
    key: Option<&Path>,
    interval_secs: u64,
    log: Option<(&str, &Path)>,
) -> anyhow::Result<Option<rampart_server::audit_anchor::AuditAnchorConfig>> {
    let Some(path) = key
        .map(Path::to_path_buf)
        .or_else(|| default_audit_key(db_url))
    else {
        if log.is_some() {
            bail!("--audit-log-url needs an audit key to sign the heads: give --audit-key FILE");
        }
        return Ok(None);
    };
    if interval_secs == 0 {
        bail!("--audit-anchor-interval must be at least 1 second");
    }
    let log = match log {
        Some((url, policy)) => {
            let text = std::fs::read_to_string(policy)
                .with_context(|| format!("reading the witness policy {}", policy.display()))?;
            Some(rampart_server::audit_anchor::AuditLogTarget {
                url: url.to_owned(),
                policy: rampart_log::policy::WitnessPolicy::parse(&text)
                    .with_context(|| format!("{} is not a witness policy", policy.display()))?,
            })
        }
        None => None,
    };
    Ok(Some(rampart_server::audit_anchor::AuditAnchorConfig {
        key: std::sync::Arc::new(load_or_create_audit_key(&path)?),
        interval: Duration::from_secs(interval_secs),
        log,
    }))
}

/// Runs `future` on a runtime of its own (the audit commands talk to the database directly).
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future))
}

/// `--anchor-key`: a verifier key, or a file holding one.
fn read_anchor_key(value: &str) -> anyhow::Result<rampart_log::note::Verifier> {
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
                let db = crate::server::connect_existing(&url).await?;
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

pub fn audit_command(cmd: AuditCommand) -> anyhow::Result<()> {
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
                let db = crate::server::connect_existing(&db).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_audit_key_sits_next_to_a_sqlite_database_only() {
        assert_eq!(
            default_audit_key("sqlite:///var/lib/rampart/server.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/rampart/server.db.audit-key"))
        );
        assert_eq!(
            default_audit_key("sqlite:server.db"),
            Some(PathBuf::from("server.db.audit-key"))
        );
        assert_eq!(default_audit_key("sqlite::memory:"), None);
        assert_eq!(default_audit_key("postgres://rampart@db/fleet"), None);
    }

    #[test]
    fn an_audit_key_is_created_owner_only_and_one_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let created = load_or_create_audit_key(&path).unwrap();
        let loaded = load_or_create_audit_key(&path).unwrap();
        assert_eq!(created.verifier_key_string(), loaded.verifier_key_string());
        // A second server starting at the same moment never replaces the key.
        assert!(!create_private_once(&path, b"another key\n").unwrap());
        assert_eq!(
            load_or_create_audit_key(&path)
                .unwrap()
                .verifier_key_string(),
            created.verifier_key_string()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_or_create_audit_key(&path).unwrap_err().to_string();
            assert!(
                e.contains("may be read by other users") && e.contains("chmod 600"),
                "{e}"
            );
        }
        // PostgreSQL without --audit-key signs nothing, and refuses a log it could not feed.
        let none = audit_anchor_config("postgres://rampart@db/fleet", None, 300, None).unwrap();
        assert!(none.is_none());
        let e = audit_anchor_config(
            "postgres://rampart@db/fleet",
            None,
            300,
            Some(("https://log.example", Path::new("policy.txt"))),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("--audit-key FILE"), "{e}");
    }
}
