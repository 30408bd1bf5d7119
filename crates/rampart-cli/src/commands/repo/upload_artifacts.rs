//! `rampart repo upload-artifacts`: copies an image repository's `targets/` to an S3-compatible
//! object store, for `rampart server --repo DIR --artifacts s3://BUCKET/PREFIX`.
//!
//! Every file `targets/<path>` becomes the object `<prefix>/targets/<path>`. Objects that
//! already exist with the same size are skipped, so running it again after a release uploads
//! only the new files (artifact names carry their hash, so a same-named, same-sized object is
//! the same file; and the server and devices check lengths and hashes against the signed
//! metadata anyway). Large files are uploaded in streamed parts, never read whole into memory.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rampart_server::artifact_store::ObjectStoreArtifacts;

/// A file below `targets/`.
struct Artifact {
    /// Path below `targets/`, with `/` separators.
    name: String,
    file: PathBuf,
    size: u64,
}

/// Every regular file below `targets`, sorted by name.
fn artifacts(targets: &Path) -> anyhow::Result<Vec<Artifact>> {
    let mut out = Vec::new();
    let mut pending = vec![targets.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .with_context(|| format!("reading {}", path.display()))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let rel = path.strip_prefix(targets).unwrap_or(&path);
                let Some(name) = rel.to_str() else {
                    bail!(
                        "{} is not a UTF-8 name and cannot be an object name; rename it (target paths are UTF-8)",
                        path.display()
                    );
                };
                let name = name.replace(std::path::MAIN_SEPARATOR, "/");
                let size = entry
                    .metadata()
                    .with_context(|| format!("reading {}", path.display()))?
                    .len();
                out.push(Artifact {
                    name,
                    file: path,
                    size,
                });
            } else {
                eprintln!(
                    "skipping {}: not a regular file or directory",
                    path.display()
                );
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Uploads `repo`'s `targets/` to `to` (`s3://BUCKET[/PREFIX]`; endpoint and credentials from
/// the `AWS_*` environment variables).
pub fn upload(repo: &Path, to: &str) -> anyhow::Result<()> {
    if !repo.join("metadata/1.root.json").is_file() {
        bail!(
            "{} is not an image repository (no metadata/1.root.json); give the directory `rampart repo init` created",
            repo.display()
        );
    }
    let targets = repo.join("targets");
    if !targets.is_dir() {
        bail!(
            "{} has no targets/ directory; add a release with `rampart release add` first",
            repo.display()
        );
    }
    let files = artifacts(&targets)?;
    let store = ObjectStoreArtifacts::from_url(to, std::iter::empty::<(&str, &str)>())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        store.check().await?;
        let total: u64 = files.iter().map(|f| f.size).sum();
        println!(
            "{} file(s), {total} bytes in {} -> {}",
            files.len(),
            targets.display(),
            store.location("")
        );
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
                .context("progress template")?
                .progress_chars("=> "),
        );
        let (mut uploaded, mut uploaded_bytes, mut skipped) = (0usize, 0u64, 0usize);
        for artifact in &files {
            let existing = store.size(&artifact.name).await?;
            if existing == Some(artifact.size) {
                bar.inc(artifact.size);
                bar.suspend(|| println!("exists   {} ({} bytes)", artifact.name, artifact.size));
                skipped += 1;
                continue;
            }
            bar.set_message(artifact.name.clone());
            let sent = store
                .upload(&artifact.name, &artifact.file, &|n| bar.inc(n))
                .await?;
            bar.suspend(|| match existing {
                Some(old) => println!(
                    "replaced {} ({sent} bytes; the object had {old})",
                    artifact.name
                ),
                None => println!("uploaded {} ({sent} bytes)", artifact.name),
            });
            uploaded += 1;
            uploaded_bytes += sent;
        }
        bar.finish_and_clear();
        println!(
            "done: {uploaded} uploaded ({uploaded_bytes} bytes), {skipped} already there, in {}",
            store.url()
        );
        anyhow::Ok(())
    })
}
