//! Release provenance on the command line: `rampart release verify-provenance`,
//! `rampart release sign-provenance`, and how `rampart release add --provenance` turns its files
//! into what the repository stores. The checks are `rampart_vuln::provenance`'s; signing is
//! `rampart_keys`' (key files and PKCS#11 tokens alike). See docs/decisions/0042-provenance-on-release.md.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::shared::files::read_bounded;
use anyhow::{Context, bail};
use rampart_repo::ProvenanceInput;
use rampart_vuln::provenance::{
    self, Envelope, IN_TOTO_PAYLOAD_TYPE, MAX_ENVELOPE_BYTES, ProvenanceDocument, ProvenanceError,
    ProvenancePolicy, ProvenanceVerdict, STATEMENT_V1, Statement,
};

/// Reads and checks a provenance policy file.
pub fn read_policy(path: &Path) -> anyhow::Result<ProvenancePolicy> {
    let bytes = read_bounded(path, provenance::MAX_POLICY_BYTES, "provenance policy")?;
    ProvenancePolicy::from_toml(&bytes).with_context(|| format!("policy {}", path.display()))
}

/// Hex SHA-256 of a file, read in chunks (images can be large).
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish()))
}

/// The envelopes of the given files (each an envelope or a bundle), with a label each
/// (`FILE` or `FILE line N`) to name them in errors.
struct Envelopes {
    envelopes: Vec<Envelope>,
    labels: Vec<String>,
}

impl Envelopes {
    /// Verifies every envelope against `policy` for `image_sha256`; errors name the file.
    fn verify(
        &self,
        policy: &ProvenancePolicy,
        image_sha256: &str,
    ) -> anyhow::Result<ProvenanceVerdict> {
        let lines: Vec<String> = self.envelopes.iter().map(Envelope::to_line).collect();
        provenance::verify(policy, &lines, image_sha256).map_err(|e| {
            let legend = self
                .labels
                .iter()
                .enumerate()
                .map(|(i, l)| format!("{i} = {l}"))
                .collect::<Vec<_>>()
                .join(", ");
            match &e {
                ProvenanceError::Envelope { index, .. } => {
                    anyhow::anyhow!("{e} (envelope {index} is {})", self.labels[*index])
                }
                _ => anyhow::anyhow!("{e} (envelopes: {legend})"),
            }
        })
    }

    fn label(&self, index: usize) -> &str {
        &self.labels[index]
    }
}

/// Reads files that must all hold DSSE envelopes.
fn read_envelopes(files: &[PathBuf]) -> anyhow::Result<Envelopes> {
    let mut out = Envelopes {
        envelopes: Vec::new(),
        labels: Vec::new(),
    };
    for path in files {
        let bytes = read_bounded(path, MAX_ENVELOPE_BYTES, "provenance document")?;
        match provenance::read_document(&bytes)
            .with_context(|| format!("provenance {}", path.display()))?
        {
            ProvenanceDocument::Statement => bail!(
                "provenance {} is a bare in-toto statement: it is unsigned. With a provenance policy give DSSE envelopes signed by the builders (`rampart release sign-provenance`)",
                path.display()
            ),
            ProvenanceDocument::Envelopes(list) => {
                let many = list.len() > 1;
                for (line, e) in list.into_iter().enumerate() {
                    out.labels.push(if many {
                        format!("{} envelope {}", path.display(), line + 1)
                    } else {
                        path.display().to_string()
                    });
                    out.envelopes.push(e);
                }
            }
        }
    }
    Ok(out)
}

fn print_verdict(verdict: &ProvenanceVerdict, envelopes: &Envelopes) {
    println!(
        "provenance verified: {} of {} required independent builder(s) vouch for sha256 {}",
        verdict.builders.len(),
        verdict.required_builders,
        verdict.image_sha256
    );
    for b in &verdict.builders {
        println!(
            "  builder {} (key {}) built {}@{} as {}{}",
            b.builder_id,
            b.key_id,
            b.source.repository,
            b.source.git_ref,
            b.build_type,
            b.invocation_id
                .as_deref()
                .map(|i| format!(", run {i}"))
                .unwrap_or_default()
        );
    }
    for i in &verdict.repeated {
        eprintln!(
            "note: {} is from a builder already counted; it does not count again",
            envelopes.label(*i)
        );
    }
    for d in &verdict.disagreeing {
        eprintln!(
            "warning: builder {} ({}) rebuilt another digest ({:?}): its provenance is not attached",
            d.builder_id,
            envelopes.label(d.envelope),
            d.named
        );
    }
}

/// What `rampart release add --provenance FILE... [--provenance-policy POLICY]` stores, checked
/// before anything is written when a policy is given:
/// - with a policy: DSSE envelopes only, verified; the ones vouching for the image are stored
///   as a bundle;
/// - without: one bare statement (stored as it is, as before), or envelopes stored as a bundle
///   with their signatures unchecked (said on standard error). The repository checks either
///   names the image.
pub fn prepare_for_release(
    image: &Path,
    files: &[PathBuf],
    policy: Option<&Path>,
) -> anyhow::Result<Option<ProvenanceInput>> {
    if files.is_empty() {
        if policy.is_some() {
            bail!("--provenance-policy needs provenance to check: add --provenance FILE...");
        }
        return Ok(None);
    }
    if let Some(policy_path) = policy {
        let policy = read_policy(policy_path)?;
        let envelopes = read_envelopes(files)?;
        let image_sha256 = sha256_file(image)?;
        let verdict = envelopes.verify(&policy, &image_sha256)?;
        print_verdict(&verdict, &envelopes);
        let vouching: Vec<Envelope> = verdict
            .vouching_envelopes()
            .into_iter()
            .map(|i| envelopes.envelopes[i].clone())
            .collect();
        return Ok(Some(ProvenanceInput::Bundle(provenance::bundle(&vouching))));
    }
    let mut statements = Vec::new();
    let mut envelopes = Vec::new();
    for path in files {
        let bytes = read_bounded(path, MAX_ENVELOPE_BYTES, "provenance document")?;
        match provenance::read_document(&bytes)
            .with_context(|| format!("provenance {}", path.display()))?
        {
            ProvenanceDocument::Statement => statements.push(path.clone()),
            ProvenanceDocument::Envelopes(list) => envelopes.extend(list),
        }
    }
    match (statements.len(), envelopes.is_empty()) {
        (1, true) => Ok(Some(ProvenanceInput::Statement(statements.remove(0)))),
        (0, false) => {
            if envelopes.len() > provenance::MAX_ENVELOPES {
                bail!(
                    "{} envelopes given, over the limit of {}",
                    envelopes.len(),
                    provenance::MAX_ENVELOPES
                );
            }
            eprintln!(
                "warning: provenance signatures not verified (no --provenance-policy); the envelopes are attached as given"
            );
            Ok(Some(ProvenanceInput::Bundle(provenance::bundle(
                &envelopes,
            ))))
        }
        _ => bail!(
            "give either one bare in-toto statement or DSSE envelopes to --provenance, not {} statement(s) and {} envelope(s)",
            statements.len(),
            envelopes.len()
        ),
    }
}

/// `rampart release verify-provenance`.
pub fn verify_command(
    policy: &Path,
    image: Option<&Path>,
    sha256: Option<&str>,
    files: &[PathBuf],
    json: bool,
) -> anyhow::Result<()> {
    let policy = read_policy(policy)?;
    let image_sha256 = match (image, sha256) {
        (Some(path), None) => sha256_file(path)?,
        (None, Some(hex)) => hex.to_string(),
        _ => bail!("give the image as --image FILE or its digest as --sha256 HEX"),
    };
    let envelopes = read_envelopes(files)?;
    let verdict = envelopes.verify(&policy, &image_sha256)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print_verdict(&verdict, &envelopes);
    }
    Ok(())
}

/// `rampart release sign-provenance`: a DSSE envelope over an in-toto statement v1 with SLSA v1
/// provenance, signed by the builder's key.
pub fn sign_command(
    key: &str,
    builder_id: &str,
    statement_path: &Path,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let bytes = read_bounded(statement_path, MAX_ENVELOPE_BYTES, "provenance statement")?;
    let statement = Statement::parse(&bytes)
        .with_context(|| format!("statement {}", statement_path.display()))?;
    if statement.statement_type != STATEMENT_V1 {
        bail!(
            "{} has _type {:?}; sign only in-toto Statement v1 ({STATEMENT_V1})",
            statement_path.display(),
            statement.statement_type
        );
    }
    let slsa = statement
        .slsa_provenance()
        .with_context(|| format!("statement {}", statement_path.display()))?;
    if slsa.run_details.builder.id != builder_id {
        bail!(
            "{} names builder {:?} in runDetails.builder.id, not --builder-id {builder_id:?}: a builder signs only its own builds",
            statement_path.display(),
            slsa.run_details.builder.id
        );
    }
    let (envelope, key_id) = sign_envelope(key, IN_TOTO_PAYLOAD_TYPE, &bytes)?;
    let line = envelope.to_line() + "\n";
    match out {
        Some(path) => {
            std::fs::write(path, &line).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} signed by key {key_id} for builder {builder_id}",
                path.display(),
            );
        }
        None => print!("{line}"),
    }
    Ok(())
}

/// A DSSE envelope over `payload` of `payload_type`, signed by the key `key` names (a key file
/// or a PKCS#11 token key, through `rampart_keys`), with the signer's key id. Provenance and
/// vendor VEX (`rampart risk vex sign`) are signed here alike.
pub fn sign_envelope(
    key: &str,
    payload_type: &str,
    payload: &[u8],
) -> anyhow::Result<(Envelope, String)> {
    let signer = rampart_keys::open_signer(key).with_context(|| format!("opening key {key}"))?;
    let key_id = signer.key_id();
    let envelope = Envelope::sign(payload_type, payload, &key_id, |m| signer.sign(m))?;
    Ok((envelope, key_id))
}
