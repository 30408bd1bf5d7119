//! Reading the files a command is given: within a size limit, with errors that name the file.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

/// The whole of `path`, `what` it is (`"SBOM"`, `"the quote message"`) named in errors; more
/// than `max` bytes is an error, found after reading at most `max + 1` of them (a file that
/// grows, or a device that never ends, costs no more).
pub fn read_bounded(path: &Path, max: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("opening {what} {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    if bytes.len() > max {
        bail!(
            "{what} {} is larger than the {max}-byte limit: is it the right file?",
            path.display()
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_naming_it_and_one_at_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        std::fs::write(&path, [b'x'; 10]).unwrap();
        assert_eq!(read_bounded(&path, 10, "SBOM").unwrap().len(), 10);
        let error = read_bounded(&path, 9, "SBOM").unwrap_err().to_string();
        assert!(
            error.contains("SBOM") && error.contains("doc.json") && error.contains("9-byte"),
            "{error}"
        );
        let missing = read_bounded(&dir.path().join("nope"), 9, "SBOM").unwrap_err();
        assert!(
            format!("{missing:#}").contains("opening SBOM"),
            "{missing:#}"
        );
    }
}
