//! Resource amounts: what a task asks for and what a worker offers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// An amount of each kind of resource. CPU is in millicores (1000 = one core), so that
/// fractional cores are exact integers and arithmetic never rounds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields, expecting = "resources: an object")]
pub struct Resources {
    /// CPU in millicores: `1500` is one and a half cores.
    pub cpu_milli: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Scratch disk in bytes.
    pub disk_bytes: u64,
    /// Whole GPUs.
    pub gpus: u32,
    /// Named custom resources (`licenses`, `fpga`, ...) as plain counts.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, u64>,
}

impl Resources {
    pub fn cpus(cpu_milli: u32) -> Resources {
        Resources {
            cpu_milli,
            ..Resources::default()
        }
    }

    /// True when `self` is at most `other` in every dimension (a missing custom
    /// resource on `other` counts as zero).
    pub fn fits_in(&self, other: &Resources) -> bool {
        self.cpu_milli <= other.cpu_milli
            && self.memory_bytes <= other.memory_bytes
            && self.disk_bytes <= other.disk_bytes
            && self.gpus <= other.gpus
            && self
                .custom
                .iter()
                .all(|(k, v)| *v <= other.custom.get(k).copied().unwrap_or(0))
    }

    /// True when `self` fits in what `capacity` has left once `allocated` is taken.
    pub fn fits_beside(&self, allocated: &Resources, capacity: &Resources) -> bool {
        let left = |cap: u64, used: u64, want: u64| want <= cap.saturating_sub(used);
        left(
            capacity.cpu_milli as u64,
            allocated.cpu_milli as u64,
            self.cpu_milli as u64,
        ) && left(
            capacity.memory_bytes,
            allocated.memory_bytes,
            self.memory_bytes,
        ) && left(capacity.disk_bytes, allocated.disk_bytes, self.disk_bytes)
            && left(
                capacity.gpus as u64,
                allocated.gpus as u64,
                self.gpus as u64,
            )
            && self.custom.iter().all(|(k, v)| {
                left(
                    capacity.custom.get(k).copied().unwrap_or(0),
                    allocated.custom.get(k).copied().unwrap_or(0),
                    *v,
                )
            })
    }

    /// Adds `other` (saturating).
    pub fn add(&mut self, other: &Resources) {
        self.cpu_milli = self.cpu_milli.saturating_add(other.cpu_milli);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.disk_bytes = self.disk_bytes.saturating_add(other.disk_bytes);
        self.gpus = self.gpus.saturating_add(other.gpus);
        for (k, v) in &other.custom {
            let e = self.custom.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Takes `other` away (saturating; custom entries that reach zero are dropped).
    pub fn sub(&mut self, other: &Resources) {
        self.cpu_milli = self.cpu_milli.saturating_sub(other.cpu_milli);
        self.memory_bytes = self.memory_bytes.saturating_sub(other.memory_bytes);
        self.disk_bytes = self.disk_bytes.saturating_sub(other.disk_bytes);
        self.gpus = self.gpus.saturating_sub(other.gpus);
        for (k, v) in &other.custom {
            if let Some(e) = self.custom.get_mut(k) {
                *e = e.saturating_sub(*v);
                if *e == 0 {
                    self.custom.remove(k);
                }
            }
        }
    }

    pub fn is_zero(&self) -> bool {
        self.cpu_milli == 0
            && self.memory_bytes == 0
            && self.disk_bytes == 0
            && self.gpus == 0
            && self.custom.values().all(|v| *v == 0)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![format!("{} cpu", format_cpus(self.cpu_milli))];
        if self.memory_bytes > 0 {
            parts.push(format!("{} memory", format_bytes(self.memory_bytes)));
        }
        if self.disk_bytes > 0 {
            parts.push(format!("{} disk", format_bytes(self.disk_bytes)));
        }
        if self.gpus > 0 {
            parts.push(format!("{} gpu", self.gpus));
        }
        for (k, v) in &self.custom {
            parts.push(format!("{v} {k}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// Formats millicores as cores: `2`, `0.5`, `1.25`.
pub fn format_cpus(milli: u32) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        let s = format!("{}.{:03}", milli / 1000, milli % 1000);
        s.trim_end_matches('0').to_string()
    }
}

/// Formats bytes with binary units: `512 MiB`, `64 GiB`, `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || (value.fract() == 0.0) {
        format!("{} {}", value as u64, UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseResourceError {
    #[error("{0:?} is not a number of cores (examples: 1, 0.5, 250m)")]
    BadCpus(String),
    #[error("{0:?} is not a size (examples: 512M, 2GiB, 1.5G, 1048576)")]
    BadBytes(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parses a CPU amount into millicores: `2`, `0.5`, `1.25`, or `250m`.
pub fn parse_cpus(text: &str) -> Result<u32, ParseResourceError> {
    let t = text.trim();
    let bad = || ParseResourceError::BadCpus(text.to_string());
    if let Some(m) = t.strip_suffix('m') {
        let v: u64 = m.parse().map_err(|_| bad())?;
        return u32::try_from(v).map_err(|_| ParseResourceError::Overflow(text.to_string()));
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let frac_milli: u64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    let total = int
        .checked_mul(1000)
        .and_then(|v| v.checked_add(frac_milli))
        .ok_or_else(|| ParseResourceError::Overflow(text.to_string()))?;
    u32::try_from(total).map_err(|_| ParseResourceError::Overflow(text.to_string()))
}

/// Parses a size: a plain byte count, or a number with a unit. `K`, `M`, `G`, `T` and
/// their `i`/`iB` forms are all binary (1024-based), as memory sizes usually mean.
pub fn parse_bytes(text: &str) -> Result<u64, ParseResourceError> {
    let t = text.trim();
    let bad = || ParseResourceError::BadBytes(text.to_string());
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => 1 << 10,
        "m" | "mb" | "mi" | "mib" => 1 << 20,
        "g" | "gb" | "gi" | "gib" => 1 << 30,
        "t" | "tb" | "ti" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    if let Some((int, frac)) = num.split_once('.') {
        if frac.contains('.') || frac.len() > 6 {
            return Err(bad());
        }
        let int: u64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let frac_digits: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad())?
        };
        let scale = 10u64.pow(frac.len() as u32);
        let whole = int
            .checked_mul(mult)
            .ok_or_else(|| ParseResourceError::Overflow(text.to_string()))?;
        let part = (frac_digits as u128 * mult as u128 / scale as u128) as u64;
        whole
            .checked_add(part)
            .ok_or_else(|| ParseResourceError::Overflow(text.to_string()))
    } else {
        let v: u64 = num.parse().map_err(|_| bad())?;
        v.checked_mul(mult)
            .ok_or_else(|| ParseResourceError::Overflow(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_parse_to_millicores() {
        assert_eq!(parse_cpus("2"), Ok(2000));
        assert_eq!(parse_cpus("0.5"), Ok(500));
        assert_eq!(parse_cpus(".25"), Ok(250));
        assert_eq!(parse_cpus("1.125"), Ok(1125));
        assert_eq!(parse_cpus("250m"), Ok(250));
        assert!(parse_cpus("1.0001").is_err());
        assert!(parse_cpus("abc").is_err());
        assert!(parse_cpus("").is_err());
        assert!(parse_cpus("-1").is_err());
        assert!(matches!(
            parse_cpus("99999999999"),
            Err(ParseResourceError::Overflow(_))
        ));
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("64 gb"), Ok(64 << 30));
        assert!(parse_bytes("12X").is_err());
        assert!(parse_bytes("G").is_err());
        assert!(matches!(
            parse_bytes("99999999999T"),
            Err(ParseResourceError::Overflow(_))
        ));
    }

    #[test]
    fn fits_in_checks_every_dimension() {
        let mut worker = Resources {
            cpu_milli: 4000,
            memory_bytes: 8 << 30,
            ..Default::default()
        };
        worker.custom.insert("license".into(), 2);
        let mut task = Resources::cpus(1000);
        assert!(task.fits_in(&worker));
        task.custom.insert("license".into(), 3);
        assert!(!task.fits_in(&worker));
        task.custom.insert("license".into(), 1);
        task.gpus = 1;
        assert!(!task.fits_in(&worker));
    }

    #[test]
    fn display_is_readable() {
        let r = Resources {
            cpu_milli: 1500,
            memory_bytes: 64 << 30,
            ..Default::default()
        };
        assert_eq!(r.to_string(), "1.5 cpu, 64 GiB memory");
        assert_eq!(format_bytes(1536 << 20), "1.5 GiB");
    }
}
