//! Delegation rules: which delegated roles may speak for a target path, and in which order.

use crate::error::TufError;
use crate::metadata::{Delegations, Targets};

/// The keys and threshold `delegations` assigns to `role`, or `None` if it does not delegate to it.
pub fn role_keys(delegations: &Delegations, role: &str) -> Option<(Vec<String>, u32)> {
    if let Some(roles) = &delegations.roles {
        return roles
            .iter()
            .find(|r| r.name == role)
            .map(|r| (r.keyids.clone(), r.threshold));
    }
    let s = delegations.succinct_roles.as_ref()?;
    let suffix = role.strip_prefix(&s.name_prefix)?.strip_prefix('-')?;
    let width = s.bit_length.div_ceil(4) as usize;
    let n = u32::from_str_radix(suffix, 16).ok()?;
    let valid = suffix.len() == width
        && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        && u64::from(n) < (1u64 << s.bit_length);
    valid.then(|| (s.keyids.clone(), s.threshold))
}

/// A child role to visit for a target path, in order, and whether it ends the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRole {
    pub name: String,
    pub terminating: bool,
}

/// The delegated roles of `targets` that are trusted for `target_path`, in priority order.
pub fn matching_children(targets: &Targets, target_path: &str) -> Vec<ChildRole> {
    let Some(d) = &targets.delegations else {
        return Vec::new();
    };
    if let Some(s) = &d.succinct_roles {
        // TAP 15: the bin is the first bit_length bits of SHA-256(target path).
        let h = ring::digest::digest(&ring::digest::SHA256, target_path.as_bytes());
        let first =
            u32::from_be_bytes([h.as_ref()[0], h.as_ref()[1], h.as_ref()[2], h.as_ref()[3]]);
        let bin = first >> (32 - s.bit_length);
        let width = s.bit_length.div_ceil(4) as usize;
        return vec![ChildRole {
            name: format!("{}-{:0width$x}", s.name_prefix, bin),
            terminating: true,
        }];
    }
    let mut out = Vec::new();
    for r in d.roles.iter().flatten() {
        let trusted = if let Some(paths) = &r.paths {
            paths.iter().any(|p| path_matches(p, target_path))
        } else if let Some(prefixes) = &r.path_hash_prefixes {
            let h = hex::encode(ring::digest::digest(
                &ring::digest::SHA256,
                target_path.as_bytes(),
            ));
            prefixes.iter().any(|p| h.starts_with(p.as_str()))
        } else {
            false
        };
        if trusted {
            out.push(ChildRole {
                name: r.name.clone(),
                terminating: r.terminating,
            });
            if r.terminating {
                break;
            }
        }
    }
    out
}

/// Matches a delegation path pattern against a target path, segment by segment: `*` and `?`
/// never cross a `/`, and pattern and path must have the same number of segments.
pub fn path_matches(pattern: &str, target_path: &str) -> bool {
    let ps: Vec<&str> = pattern.split('/').collect();
    let ts: Vec<&str> = target_path.split('/').collect();
    ps.len() == ts.len() && ps.iter().zip(&ts).all(|(p, t)| glob_segment(p, t))
}

fn glob_segment(pattern: &str, text: &str) -> bool {
    // Characters, not bytes, as Python's fnmatch (which python-tuf uses) matches them.
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative wildcard match with single-star backtracking.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => match class_match(&p[pi..], t[ti]) {
                    Some((true, len)) => {
                        pi += len;
                        ti += 1;
                        continue;
                    }
                    Some((false, _)) => {}
                    // An unclosed '[' is a literal, as in fnmatch.
                    None if t[ti] == '[' => {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                    None => {}
                },
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches one character against a `[...]` class at the start of `p`, with fnmatch's rules: a
/// `]` right after `[` or `[!` is a member, `!` negates, `a-z` is a range. Returns (matched,
/// class length), or `None` when the class is unclosed (then `[` is a literal).
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut j = 1;
    if p.get(j) == Some(&'!') {
        j += 1;
    }
    if p.get(j) == Some(&']') {
        j += 1;
    }
    while p.get(j)? != &']' {
        j += 1;
    }
    let (negate, body) = match p[1] {
        '!' => (true, &p[2..j]),
        _ => (false, &p[1..j]),
    };
    let mut found = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            found |= body[i] <= c && c <= body[i + 2];
            i += 3;
        } else {
            found |= body[i] == c;
            i += 1;
        }
    }
    Some((found != negate, j + 1))
}

/// Checks that a target path is a safe relative path: no empty, `.` or `..` segments, no
/// leading `/`, no backslashes or NUL bytes. Paths like this can be joined to a directory
/// without escaping it.
pub fn validate_target_path(path: &str) -> Result<(), TufError> {
    let bad = |reason: &str| {
        Err(TufError::BadTargetPath {
            path: path.to_string(),
            reason: reason.to_string(),
        })
    };
    if path.is_empty() {
        return bad("it is empty");
    }
    if path.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if path.starts_with('/') {
        return bad("absolute paths are not allowed");
    }
    if path.contains('\\') || path.contains('\0') {
        return bad("backslashes and NUL bytes are not allowed");
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("empty, '.' and '..' segments are not allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_do_not_cross_segments() {
        assert!(path_matches("*", "file.txt"));
        assert!(!path_matches("*", "dir/file.txt"));
        assert!(path_matches("dir/*", "dir/file.txt"));
        assert!(path_matches("*/file-?.txt", "a/file-1.txt"));
        assert!(!path_matches("*/file-?.txt", "a/file-12.txt"));
        assert!(path_matches("fw/[a-c]*.img", "fw/b-1.img"));
        assert!(!path_matches("fw/[!a-c]*.img", "fw/b-1.img"));
        assert!(path_matches("a*b*c", "axxbyyc"));
        // As Python's fnmatch: characters not bytes, ']' first in a class is a member, an
        // unclosed '[' is a literal.
        assert!(path_matches("?", "é"));
        assert!(!path_matches("??", "é"));
        assert!(path_matches("[]]x", "]x"));
        assert!(!path_matches("[!]", "a"));
        assert!(path_matches("[!]]", "a"));
        assert!(path_matches("a[b", "a[b"));
        assert!(!path_matches("a[b", "ab"));
        assert!(!path_matches("a*b*c", "axxbyy"));
    }

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        for p in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "a\\b",
            "",
            "./a",
        ] {
            assert!(validate_target_path(p).is_err(), "{p}");
        }
        validate_target_path("firmware/board-a/1.2.3.img").unwrap();
    }
}
