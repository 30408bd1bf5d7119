//! Limits checked on a JSON document's bytes before any parser recurses into it. serde_json
//! recurses once per nesting level; a document of a few megabytes of `[` would otherwise be
//! refused only by serde_json's own recursion limit, with a message that says nothing useful,
//! and each level would be paid for first.

/// The document nests deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// The allowed depth.
    pub max_depth: usize,
    /// Byte offset of the bracket that went over it.
    pub offset: usize,
}

/// Scans `bytes` as JSON text and fails at the first `[` or `{` that opens level
/// `max_depth + 1` (the top-level value is level 1). Brackets inside strings do not count.
/// It does not validate the JSON (the parser does that after): it only bounds the nesting the
/// parser will meet, so it runs in one pass with no allocation.
pub fn check_depth(bytes: &[u8], max_depth: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &byte) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(TooDeep { max_depth, offset });
                }
            }
            // Unbalanced closers are the parser's to refuse; saturate so they cannot hide
            // later openers.
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_levels_and_ignores_brackets_in_strings() {
        assert_eq!(check_depth(br#"{"a":[1,{"b":2}]}"#, 3), Ok(()));
        assert_eq!(
            check_depth(br#"{"a":[1,{"b":[]}]}"#, 3),
            Err(TooDeep {
                max_depth: 3,
                offset: 13
            })
        );
        assert_eq!(check_depth(br#"{"a":"[[[[[[\"[[[["}"#, 1), Ok(()));
        assert!(check_depth(&[b'['; 100], 99).is_err());
        assert!(check_depth(&[b'['; 99], 99).is_ok());
    }

    #[test]
    fn unbalanced_closers_do_not_hide_later_openers() {
        assert!(check_depth(b"]]]]]][[[", 2).is_err());
    }
}
