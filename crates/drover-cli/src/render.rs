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

pub fn ago(t: Option<Millis>) -> String {
    match t {
        None => "-".into(),
        Some(t) => format!("{} ago", format_duration_ms(now_ms().saturating_sub(t.0))),
    }
}

pub fn state(s: TaskState) -> String {
    s.as_str().replace('_', " ")
}
