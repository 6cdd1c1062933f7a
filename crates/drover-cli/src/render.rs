//! Printing for people (tables, times) and for scripts (`--json`).

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use drover_types::{Millis, TaskState, format_duration_ms};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY);
    t.set_header(header.to_vec());
    t
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// "12:04:31 (3.2s ago)"
pub fn when(t: Option<Millis>) -> String {
    match t {
        None => "-".into(),
        Some(t) => {
            let ago = now_ms().saturating_sub(t.0);
            format!("{t} ({} ago)", format_duration_ms(ago))
        }
    }
}

/// A date and time in UTC, `2026-12-07 11:40:05Z`: for times days away (a token's
/// expiry), where the time of day alone would mislead.
pub fn when_utc(t: Millis) -> String {
    let secs = t.0 / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

pub fn ago(t: Option<Millis>) -> String {
    match t {
        None => "-".into(),
        Some(t) => format!("{} ago", format_duration_ms(now_ms().saturating_sub(t.0))),
    }
}

pub fn state(s: TaskState) -> String {
    s.as_str().replace('_', " ")
}

/// A command as a shell would take it: `echo 'a b'`, or `sh -c 'echo A; echo B >&2'`
/// for a shell command (the worker runs `/bin/sh -c` with the words joined by spaces).
pub fn command_line(command: &[String], shell: bool) -> String {
    let quote_all = |words: &[&str]| {
        shlex::try_join(words.iter().copied()).unwrap_or_else(|_| {
            // Only a NUL byte defeats quoting; show it escaped instead.
            words
                .iter()
                .map(|w| format!("{w:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    if shell {
        let script = command.join(" ");
        quote_all(&["sh", "-c", &script])
    } else {
        let words: Vec<&str> = command.iter().map(String::as_str).collect();
        quote_all(&words)
    }
}

/// At most this many lines of a result are shown to people…
pub const PREVIEW_LINES: usize = 5;
/// …and at most this many characters.
pub const PREVIEW_CHARS: usize = 200;

/// The start of a task's result for people: at most [`PREVIEW_LINES`] lines and
/// [`PREVIEW_CHARS`] characters, control characters escaped; when that is not all of
/// it, a last line with its size and the command that prints it whole.
pub fn result_preview(result: &str, task: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut chars = 0;
    let mut cut = false;
    for (i, line) in result.lines().enumerate() {
        if i == PREVIEW_LINES || chars >= PREVIEW_CHARS {
            cut = true;
            break;
        }
        let mut shown = String::new();
        for c in line.chars() {
            if chars >= PREVIEW_CHARS {
                cut = true;
                break;
            }
            if c.is_control() && c != '\t' {
                shown.extend(c.escape_default());
            } else {
                shown.push(c);
            }
            chars += 1;
        }
        lines.push(shown);
        if cut {
            break;
        }
    }
    if cut {
        lines.push(format!(
            "… ({} in all; `drover logs {task}` prints the whole output)",
            drover_types::format_bytes(result.len() as u64)
        ));
    }
    lines
}

/// Turns raw output into JSON lines, `{"stream":"stdout","offset":N,"data":"…"}` per
/// chunk: `offset` is the byte offset of the chunk's first byte in the stream, `data`
/// its text. A UTF-8 character split between two chunks is kept whole in the later one;
/// bytes that are not UTF-8 become U+FFFD (plain `drover logs` gives the raw bytes).
#[derive(Debug)]
pub struct JsonLines {
    stream: &'static str,
    offset: u64,
    carry: Vec<u8>,
}

impl JsonLines {
    pub fn new(stderr: bool) -> JsonLines {
        JsonLines {
            stream: if stderr { "stderr" } else { "stdout" },
            offset: 0,
            carry: Vec::new(),
        }
    }

    /// The JSON line for these bytes (None while they only start a character).
    pub fn push(&mut self, bytes: &[u8]) -> Option<String> {
        self.carry.extend_from_slice(bytes);
        let complete = match std::str::from_utf8(&self.carry) {
            Ok(_) => self.carry.len(),
            // An incomplete character at the end waits for the next chunk.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => incomplete_tail_start(&self.carry),
        };
        if complete == 0 {
            return None;
        }
        let rest = self.carry.split_off(complete);
        let data = std::mem::replace(&mut self.carry, rest);
        Some(self.line(&data))
    }

    /// Whatever is left at the end (an incomplete character), as a last line.
    pub fn finish(&mut self) -> Option<String> {
        if self.carry.is_empty() {
            return None;
        }
        let data = std::mem::take(&mut self.carry);
        Some(self.line(&data))
    }

    fn line(&mut self, data: &[u8]) -> String {
        let line = serde_json::json!({
            "stream": self.stream,
            "offset": self.offset,
            "data": String::from_utf8_lossy(data),
        })
        .to_string();
        self.offset += data.len() as u64;
        line
    }
}

/// Where a trailing, possibly incomplete UTF-8 sequence starts (the length when there
/// is none): at most 3 bytes back, at a lead byte whose sequence runs past the end.
fn incomplete_tail_start(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=3.min(n) {
        let b = bytes[n - back];
        let need = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            0x80..=0xBF => continue,
            _ => return n,
        };
        return if need > back { n - back } else { n };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_civil() {
        assert_eq!(when_utc(Millis(0)), "1970-01-01 00:00:00Z");
        assert_eq!(when_utc(Millis(951_782_400_000)), "2000-02-29 00:00:00Z");
        assert_eq!(when_utc(Millis(1_796_643_605_000)), "2026-12-07 11:40:05Z");
    }

    #[test]
    fn commands_are_quoted_as_a_shell_takes_them() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&words(&["echo A; echo B >&2"]), true),
            "sh -c 'echo A; echo B >&2'"
        );
        assert_eq!(
            command_line(&words(&["printf", "%s\n", "a b", "it's"]), false),
            r#"printf '%s
' 'a b' "it's""#
        );
        assert_eq!(
            command_line(&words(&["echo", "hello"]), false),
            "echo hello"
        );
    }

    #[test]
    fn a_result_preview_is_bounded_and_says_how_to_get_the_rest() {
        assert_eq!(result_preview("42\n", "7"), vec!["42"]);
        let long: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let p = result_preview(&long, "7");
        assert_eq!(p.len(), PREVIEW_LINES + 1, "{p:?}");
        assert!(p.last().unwrap().contains("drover logs 7"), "{p:?}");
        assert!(p.last().unwrap().contains("KiB"), "{p:?}");
        let wide = "x".repeat(64 << 10);
        let p = result_preview(&wide, "key");
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].chars().count(), PREVIEW_CHARS);
        assert!(p[1].contains("64 KiB in all"), "{p:?}");
        assert_eq!(result_preview("a\u{1b}[31mb", "1"), vec!["a\\u{1b}[31mb"]);
    }

    #[test]
    fn json_lines_keep_characters_whole_and_count_bytes() {
        let mut j = JsonLines::new(false);
        let text = "héllo ✓\n".as_bytes();
        // Split inside the 3-byte check mark.
        let (a, b) = text.split_at(text.len() - 2);
        let first: serde_json::Value = serde_json::from_str(&j.push(a).unwrap()).unwrap();
        assert_eq!(first["data"], "héllo ");
        assert_eq!(first["offset"], 0);
        assert_eq!(first["stream"], "stdout");
        let second: serde_json::Value = serde_json::from_str(&j.push(b).unwrap()).unwrap();
        assert_eq!(second["data"], "✓\n");
        assert_eq!(second["offset"], "héllo ".len());
        assert!(j.finish().is_none());
        // Invalid bytes are replaced, offsets still count them.
        let mut j = JsonLines::new(true);
        let v: serde_json::Value = serde_json::from_str(&j.push(b"a\xffb").unwrap()).unwrap();
        assert_eq!(v["data"], "a\u{fffd}b");
        assert_eq!(v["stream"], "stderr");
        let v: serde_json::Value = serde_json::from_str(&j.push(b"c").unwrap()).unwrap();
        assert_eq!(v["offset"], 3);
        // A lone lead byte at the very end comes out at finish.
        assert!(j.push(b"\xe2").is_none());
        let v: serde_json::Value = serde_json::from_str(&j.finish().unwrap()).unwrap();
        assert_eq!(v["offset"], 4);
    }
}
