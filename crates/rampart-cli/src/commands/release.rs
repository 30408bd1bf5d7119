//! `rampart release add`: a firmware image as a signed target (logged in the transparency log when
//! the repository says so), then published.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use rampart_repo::{ReleaseRequest, Repository};

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
        /// in-toto provenance statement to attach (its subject must name the image).
        #[arg(long)]
        provenance: Option<PathBuf>,
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
}

pub fn run(cmd: ReleaseCommand) -> anyhow::Result<()> {
    let open = opener();
    let ReleaseCommand::Add {
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
    } = cmd;
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
