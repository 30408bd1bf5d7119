//! `rampart release add`: a firmware image as a signed target (logged in the transparency log when
//! the repository says so), then published; with `--provenance-policy` its provenance is verified
//! first. `verify-provenance` and `sign-provenance` are in `release_provenance`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use rampart_repo::{ReleaseRequest, Repository};

use super::release_provenance;
use crate::shared::now_unix;
use crate::shared::output::BarProgress;
use crate::shared::signing::{opener, read_note_key};

#[derive(Subcommand)]
pub enum ReleaseCommand {
    /// Add a firmware image as a signed target, then publish (unless --no-publish).
    Add {
        image: PathBuf,
        #[arg(long)]
        repo: PathBuf,
        /// Hardware compatibility id (repeat).
        #[arg(long = "hw", required = true)]
        hardware: Vec<String>,
        /// Semantic version, e.g. 1.4.0.
        #[arg(long)]
        version: String,
        /// Anti-rollback counter; never lower than an earlier release for the same hardware.
        #[arg(long)]
        security_version: u64,
        /// SBOM to attach: CycloneDX (1.2-1.6) or SPDX (2.2, 2.3) JSON, validated as matching reads it.
        #[arg(long)]
        sbom: Option<PathBuf>,
        /// Provenance to attach: DSSE envelopes (or in-toto bundles) signed by builders, or one
        /// bare in-toto statement when no --provenance-policy is given. Its subjects must name
        /// the image.
        #[arg(long, num_args = 1..)]
        provenance: Vec<PathBuf>,
        /// Provenance policy (TOML): trusted builders and keys, sources, build types and how
        /// many independent builders must agree. Verified before anything is written.
        #[arg(long)]
        provenance_policy: Option<PathBuf>,
        /// Target path (default VERSION/FILE_NAME).
        #[arg(long)]
        name: Option<String>,
        /// Delegated role to list the release in (default: top-level targets).
        #[arg(long)]
        role: Option<String>,
        /// Sign the targets role but do not publish snapshot and timestamp yet.
        #[arg(long)]
        no_publish: bool,
    },
    /// Verify provenance (DSSE envelopes with in-toto SLSA v1) against a policy for an image.
    VerifyProvenance {
        /// Provenance policy (TOML).
        #[arg(long)]
        policy: PathBuf,
        /// The image the provenance must name.
        #[arg(long, required_unless_present = "sha256", conflicts_with = "sha256")]
        image: Option<PathBuf>,
        /// The image's sha256 instead of the image.
        #[arg(long)]
        sha256: Option<String>,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
        /// DSSE envelopes or in-toto bundles (.intoto.jsonl).
        #[arg(required = true)]
        envelopes: Vec<PathBuf>,
    },
    /// Sign an in-toto statement (SLSA v1 provenance) as a builder: prints a DSSE envelope.
    SignProvenance {
        /// The builder's key: file:PATH, a key file path, or pkcs11:token=..;object=..
        #[arg(long)]
        key: String,
        /// The builder id the statement must name (runDetails.builder.id).
        #[arg(long)]
        builder_id: String,
        /// Write the envelope here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        statement: PathBuf,
    },
}

pub fn run(cmd: ReleaseCommand) -> anyhow::Result<()> {
    match cmd {
        ReleaseCommand::Add {
            image,
            repo,
            hardware,
            version,
            security_version,
            sbom,
            provenance,
            provenance_policy,
            name,
            role,
            no_publish,
        } => {
            // Verified before the repository is touched: a refusal writes nothing.
            let provenance = release_provenance::prepare_for_release(
                &image,
                &provenance,
                provenance_policy.as_deref(),
            )?;
            add(AddArgs {
                image,
                repo,
                hardware,
                version,
                security_version,
                sbom,
                provenance,
                name,
                role,
                no_publish,
            })
        }
        ReleaseCommand::VerifyProvenance {
            policy,
            image,
            sha256,
            json,
            envelopes,
        } => release_provenance::verify_command(
            &policy,
            image.as_deref(),
            sha256.as_deref(),
            &envelopes,
            json,
        ),
        ReleaseCommand::SignProvenance {
            key,
            builder_id,
            out,
            statement,
        } => release_provenance::sign_command(&key, &builder_id, &statement, out.as_deref()),
    }
}

struct AddArgs {
    image: PathBuf,
    repo: PathBuf,
    hardware: Vec<String>,
    version: String,
    security_version: u64,
    sbom: Option<PathBuf>,
    provenance: Option<rampart_repo::ProvenanceInput>,
    name: Option<String>,
    role: Option<String>,
    no_publish: bool,
}

fn add(args: AddArgs) -> anyhow::Result<()> {
    let open = opener();
    let AddArgs {
        image,
        repo,
        hardware,
        version,
        security_version,
        sbom,
        provenance,
        name,
        role,
        no_publish,
    } = args;
    let repository = Repository::open(&repo)?;
    let req = ReleaseRequest {
        image,
        target_name: name,
        hardware_ids: hardware,
        version,
        security_version,
        sbom,
        provenance,
        role,
    };
    let added = match repository.config().transparency.clone() {
        None => repository.add_releases(&[req], &open, now_unix(), &BarProgress::default())?,
        Some(t) => {
            let policy: rampart_log::policy::WitnessPolicy = t
                .policy
                .parse()
                .context("the witness policy in rampart-repo.json is malformed")?;
            let client = rampart_tlog::client::LogClient::new(&t.log_url, policy);
            let key = read_note_key(Path::new(&t.release_key))?;
            let logger = |s: &rampart_log::statement::ReleaseStatement| {
                eprintln!(
                    "recording {} in the transparency log at {} ...",
                    s.target, t.log_url
                );
                client
                    .log_release(s, &key, std::time::Duration::from_secs(120))
                    .map_err(|e| e.to_string())
            };
            repository.add_releases_logged(
                &[req],
                &open,
                now_unix(),
                &BarProgress::default(),
                Some(&logger),
            )?
        }
    };
    for a in &added {
        println!(
            "added {} ({} bytes, sha256 {}) to role {}",
            a.target_name, a.length, a.sha256, a.role
        );
    }
    if no_publish {
        println!(
            "not published: run `rampart repo publish {}` to make it visible",
            repo.display()
        );
    } else {
        let (s, t) = repository.publish(&open, now_unix())?;
        println!("published snapshot v{s}, timestamp v{t}");
    }
    Ok(())
}
