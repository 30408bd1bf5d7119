//! NVD CVE API 2.0 documents for `rampart risk sbom-check --nvd` and `rampart risk import
//! --nvd`: files or directories of them, each bounded (`rampart_vuln::nvd`'s limits first) and
//! all together bounded; the import sends their records in batches to `POST /api/v1/risk/nvd`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use rampart_vuln::nvd::{CpeIndex, MAX_NVD_BYTES, NvdAdvisory, parse_nvd_document};
use serde_json::{Value, json};

use crate::shared::api_client::ApiClient;

/// The most bytes of NVD documents one command reads in all (every CVE NVD has published is
/// about 2 GB as API pages; firmware pipelines take the products they ship).
pub const MAX_NVD_TOTAL_BYTES: u64 = 1024 * 1024 * 1024;
/// The most NVD files one command reads.
pub const MAX_NVD_FILES: usize = 10_000;
/// The route's limits (`operator::risk_nvd`): records per body and body bytes.
const ROUTE_MAX_RECORDS: usize = 2_000;
const ROUTE_MAX_BODY: usize = 1024 * 1024;
/// `{"vulnerabilities":[` and `]}`.
const BODY_FRAME: usize = 32;

/// The NVD files `paths` name: each file as given, each directory's `*.json` files, sorted.
pub fn nvd_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).with_context(|| {
            format!(
                "reading {}: give an NVD CVE API 2.0 JSON document or a directory of them",
                path.display()
            )
        })?;
        if metadata.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(path)
                .with_context(|| format!("listing the NVD directory {}", path.display()))?
            {
                let entry = entry.with_context(|| format!("listing {}", path.display()))?;
                let file = entry.path();
                if file.extension().is_some_and(|e| e == "json") && file.is_file() {
                    found.push(file);
                }
            }
            if found.is_empty() {
                bail!(
                    "{} holds no *.json NVD documents: give NVD CVE API 2.0 pages",
                    path.display()
                );
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
        if files.len() > MAX_NVD_FILES {
            bail!(
                "more than {MAX_NVD_FILES} NVD documents given: merge pages (up to 2,000 CVEs each) or give fewer"
            );
        }
    }
    Ok(files)
}

/// Reads one document, bounded per file and in total (`total` counts what was read so far).
fn read_document(path: &Path, total: &mut u64) -> anyhow::Result<Vec<u8>> {
    let length = std::fs::metadata(path)
        .with_context(|| format!("reading the NVD document {}", path.display()))?
        .len();
    if length > MAX_NVD_BYTES as u64 {
        bail!(
            "the NVD document {} is {length} bytes, larger than the {MAX_NVD_BYTES}-byte limit: fetch the API's pages (at most 2,000 CVEs each) instead of a yearly feed",
            path.display()
        );
    }
    *total += length;
    if *total > MAX_NVD_TOTAL_BYTES {
        bail!(
            "the NVD documents given are larger than {MAX_NVD_TOTAL_BYTES} bytes in all: give only the products your firmware ships (NVD's API filters by cpeName or keyword)"
        );
    }
    crate::shared::files::read_bounded(path, MAX_NVD_BYTES, "NVD document")
}

/// Every document's records, each document parsed with its limits first; a document that is
/// not an NVD CVE API 2.0 document fails the command, naming it.
pub fn load_records(paths: &[PathBuf]) -> anyhow::Result<Vec<NvdAdvisory>> {
    let mut total = 0;
    let mut records = Vec::new();
    for path in nvd_files(paths)? {
        let bytes = read_document(&path, &mut total)?;
        let parsed = parse_nvd_document(&bytes).with_context(|| {
            format!(
                "NVD document {}: fix or remove it and run again",
                path.display()
            )
        })?;
        records.extend(parsed);
    }
    Ok(records)
}

/// The CPE index of the documents' records (withdrawn ones left out).
pub fn load_index(paths: &[PathBuf]) -> anyhow::Result<CpeIndex> {
    Ok(CpeIndex::build(load_records(paths)?))
}

/// Sends every document's records to the server in batches.
pub fn import(client: &ApiClient, paths: &[PathBuf]) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut total = 0;
    let (mut read, mut batches) = (0usize, 0usize);
    let mut counts = [0u64; 4];
    let mut batch: Vec<Value> = Vec::new();
    let mut batch_bytes = 0usize;
    // The route refuses an id given twice in one body: a repeated CVE starts a new batch.
    let mut batch_ids: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut send = |batch: &mut Vec<Value>,
                    batch_bytes: &mut usize,
                    batch_ids: &mut std::collections::HashSet<String>|
     -> anyhow::Result<()> {
        let records = std::mem::take(batch);
        let n = records.len();
        *batch_bytes = 0;
        batch_ids.clear();
        let answer = client
            .ok(
                "POST",
                "/api/v1/risk/nvd",
                Some(json!({"vulnerabilities": records})),
            )
            .with_context(|| format!("importing a batch of {n} NVD records"))?;
        for (count, key) in counts
            .iter_mut()
            .zip(["added", "replaced", "unchanged", "withdrawn"])
        {
            *count += answer[key].as_u64().unwrap_or(0);
        }
        batches += 1;
        Ok(())
    };
    for path in nvd_files(paths)? {
        let bytes = read_document(&path, &mut total)?;
        // The limits (size, depth, counts, fields) first, naming the file.
        let parsed = parse_nvd_document(&bytes).with_context(|| {
            format!(
                "NVD document {}: fix or remove it and run again",
                path.display()
            )
        })?;
        let document: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("NVD document {}", path.display()))?;
        let Some(Value::Array(items)) = document.get("vulnerabilities").cloned() else {
            bail!(
                "NVD document {} has no vulnerabilities array",
                path.display()
            );
        };
        for (item, record) in items.into_iter().zip(&parsed) {
            let size = item.to_string().len();
            if BODY_FRAME + size > ROUTE_MAX_BODY {
                bail!(
                    "NVD record {} in {} is {size} bytes, more than the server takes in one request ({ROUTE_MAX_BODY} bytes): leave it out or trim its configurations",
                    record.id,
                    path.display()
                );
            }
            if batch.len() == ROUTE_MAX_RECORDS
                || BODY_FRAME + batch_bytes + batch.len() + size > ROUTE_MAX_BODY
                || batch_ids.contains(&record.id)
            {
                send(&mut batch, &mut batch_bytes, &mut batch_ids)?;
            }
            batch_ids.insert(record.id.clone());
            batch_bytes += size;
            batch.push(item);
            read += 1;
        }
    }
    if read == 0 {
        bail!("the NVD documents given hold no CVE records");
    }
    if !batch.is_empty() {
        send(&mut batch, &mut batch_bytes, &mut batch_ids)?;
    }
    let [added, replaced, unchanged, withdrawn] = counts;
    println!(
        "{read} NVD records imported in {batches} batch(es) ({:.0} s): {added} added, {replaced} changed, {unchanged} unchanged, {withdrawn} withdrawn",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
