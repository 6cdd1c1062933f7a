//! The nesting limit of API bodies, checked on the raw bytes before parsing.
//!
//! serde_json's own recursion limit (128) already keeps a body of a million `[` from
//! overflowing the stack, but its error ("recursion limit exceeded") names neither the
//! rule nor the limit, and the parsed tree is then walked again by the strict
//! deserializer. No Drover request needs more than a few levels (a job's task's
//! resources' custom map is four), so bodies deeper than [`MAX_JSON_DEPTH`] are refused
//! by one linear pass that allocates nothing.

/// Deepest nesting of arrays and objects accepted in a request body.
pub const MAX_JSON_DEPTH: usize = 64;

/// Where a body first nests deeper than `max`: the byte offset, or `None` if it
/// never does. Only brackets outside strings count; the JSON itself is not checked
/// here (the parser does that next).
pub fn too_deep_at(bytes: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_brackets_outside_strings_only() {
        assert_eq!(too_deep_at(b"[[[]]]", 3), None);
        assert_eq!(too_deep_at(b"[[[[]]]]", 3), Some(3));
        assert_eq!(too_deep_at(br#"{"a":"[[[[[[\"[[[["}"#, 2), None);
        assert_eq!(too_deep_at(br#"["\\", [[]]]"#, 2), Some(8));
        let deep = "[".repeat(1_000_000);
        assert_eq!(too_deep_at(deep.as_bytes(), MAX_JSON_DEPTH), Some(64));
    }
}
