//! One update session through the update server: poll ([`crate::server_client`]), verify what
//! the director assigns ([`crate::director`]), and download the assigned artifact from
//! `/device/v1/repo/targets/`, resuming a partial download (`<out>.part`) with `Range` and
//! `If-Range`, and verifying the whole file's length and hashes before renaming it to `<out>`.
//! Verification failures and the download are reported to the server.
//!
//! Installing into a slot is not done here: it stops at a verified artifact on disk (the
//! daemon installs through `crate::device`).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use rampart_core::TufError;
use rampart_core::metadata::TargetFile;
use rampart_core::verify::StreamingCheck;
use rampart_protocol::ReportStatus;
use rampart_tuf_client::FetchError;
use rampart_tuf_client::fetch::copy_limited;

use crate::director::verify_assigned;
use crate::disk::Disk;
use crate::server_client::{ServerClient, UpdateError, io_error};

/// What [`update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The server assigns nothing to this device.
    NothingAssigned,
    /// The assigned artifact was verified and is at `path`.
    Downloaded {
        target: String,
        version: String,
        director_version: u64,
        path: PathBuf,
        /// Bytes of an earlier partial download that were kept (0: downloaded from the start).
        resumed_from: u64,
        /// Whether a verified copy was already at `path` (nothing downloaded).
        already_present: bool,
    },
}

/// One update session: poll, verify director and image repository, check agreement, and
/// download the assigned artifact to `out` (see the module documentation). Verification
/// failures are also reported to the server as `verification_failed`. The director and
/// image-repository state is kept through a [`Disk`].
pub fn update(
    state: &Path,
    client: &ServerClient,
    hardware_id: &str,
    out: &Path,
    now_unix: i64,
) -> Result<UpdateOutcome, UpdateError> {
    let disk = Disk::new();
    let Some(assignment) = client.poll()? else {
        return Ok(UpdateOutcome::NothingAssigned);
    };
    let result = update_assigned(&disk, state, client, hardware_id, out, now_unix);
    match &result {
        Ok(UpdateOutcome::Downloaded { .. }) => client.report(
            &assignment.id,
            ReportStatus::Downloaded,
            serde_json::json!({"target": assignment.target}),
        ),
        Err(e) if e.is_verification_failure() => client.report(
            &assignment.id,
            ReportStatus::VerificationFailed,
            serde_json::json!({"target": assignment.target, "error": e.to_string()}),
        ),
        _ => {}
    }
    result
}

fn update_assigned(
    disk: &Disk,
    state: &Path,
    client: &ServerClient,
    hardware_id: &str,
    out: &Path,
    now_unix: i64,
) -> Result<UpdateOutcome, UpdateError> {
    let Some(v) = verify_assigned(disk, state, client, hardware_id, now_unix)? else {
        // The director lists nothing (the assignment was cancelled after the poll).
        return Ok(UpdateOutcome::NothingAssigned);
    };
    let (resumed_from, already_present) =
        download_resumable(client, &v.url, &v.target, &v.info, out)?;
    Ok(UpdateOutcome::Downloaded {
        target: v.target,
        version: v.release.version,
        director_version: v.director_version,
        path: out.to_path_buf(),
        resumed_from,
        already_present,
    })
}

/// Feeds the first `limit` bytes of `path` to `check` (a verified copy, or a partial download).
fn hash_file(path: &Path, check: &mut StreamingCheck) -> Result<u64, UpdateError> {
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf).map_err(io_error(path))?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        if check.update(&buf[..n]).is_err() {
            return Ok(total);
        }
    }
}

/// Whether `path` already holds the verified artifact.
fn already_verified(path: &Path, target: &str, info: &TargetFile) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if meta.len() != info.length {
        return false;
    }
    let Ok(mut check) = StreamingCheck::new(target, info.length, &info.hashes) else {
        return false;
    };
    hash_file(path, &mut check).is_ok() && check.finish().is_ok()
}

/// Downloads `url` to `out` through `<out>.part`, resuming what the partial file holds. The
/// whole file's length and hashes are checked before it is renamed to `out`; a partial file
/// that fails the check is removed. Returns the bytes resumed from and whether `out` was
/// already complete.
fn download_resumable(
    client: &ServerClient,
    url: &str,
    target: &str,
    info: &TargetFile,
    out: &Path,
) -> Result<(u64, bool), UpdateError> {
    if already_verified(out, target, info) {
        return Ok((0, true));
    }
    let mut part_name = out.file_name().unwrap_or_default().to_os_string();
    part_name.push(".part");
    let part = out.with_file_name(part_name);
    let refused = |source| UpdateError::Download {
        target: target.to_owned(),
        source,
    };
    let mut check = StreamingCheck::new(target, info.length, &info.hashes).map_err(refused)?;
    let mut have = match std::fs::metadata(&part) {
        Ok(meta) if meta.len() <= info.length => meta.len(),
        Ok(_) => {
            std::fs::remove_file(&part).map_err(io_error(&part))?;
            0
        }
        Err(_) => 0,
    };
    if have > 0 {
        hash_file(&part, &mut check)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)
        .map_err(io_error(&part))?;
    let resumed_from = have;
    if have < info.length {
        let etag = format!(
            "\"{}\"",
            info.hashes.values().next().map_or("", String::as_str)
        );
        let mut request = client.fetcher().agent().get(url);
        if have > 0 {
            request = request
                .header("range", format!("bytes={have}-"))
                .header("if-range", etag);
        }
        let response = request.call().map_err(|e| client.server_error(url, e))?;
        let status = response.status().as_u16();
        match status {
            206 if have > 0 => {
                let content_range = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let expected = format!("bytes {have}-{}/{}", info.length - 1, info.length);
                if content_range != expected {
                    return Err(client.server_error(
                        url,
                        format!("answered Content-Range {content_range:?}, not {expected:?}"),
                    ));
                }
            }
            200 => {
                if have > 0 {
                    // The server sent the whole file (it changed, or ignores ranges).
                    file.set_len(0).map_err(io_error(&part))?;
                    check =
                        StreamingCheck::new(target, info.length, &info.hashes).map_err(refused)?;
                    have = 0;
                }
            }
            other => {
                return Err(client.server_error(url, format!("HTTP status {other}")));
            }
        }
        let mut rejected: Option<TufError> = None;
        let copied = copy_limited(
            url,
            response.into_body().into_reader(),
            info.length - have,
            client.fetcher().min_rate(),
            &mut |chunk| {
                check.update(chunk).map_err(|e| {
                    rejected = Some(e);
                    std::io::Error::other("refused")
                })?;
                file.write_all(chunk)
            },
        );
        if let Some(e) = rejected {
            drop(file);
            let _ = std::fs::remove_file(&part);
            return Err(refused(e));
        }
        copied.map_err(|e: FetchError| client.server_error(url, e))?;
    }
    file.sync_all().map_err(io_error(&part))?;
    drop(file);
    if let Err(e) = check.finish() {
        let _ = std::fs::remove_file(&part);
        return Err(refused(e));
    }
    std::fs::rename(&part, out).map_err(io_error(out))?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((resumed_from, false))
}
