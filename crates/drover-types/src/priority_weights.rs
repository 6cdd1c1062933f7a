//! The weights of the multifactor queue policy, how they are written on the command
//! line (`age=1,priority=1000,label:business_value=10`), and the effective priority
//! they give a task.
//!
//! A task's effective priority is a weighted sum of factors:
//!
//! | factor | value | unit |
//! |---|---|---|
//! | `priority` | the task's `priority` | level |
//! | `age` | time since the task first became ready | second (ms precision) |
//! | `fairshare` | CPU its owner's placed tasks reserve now, *subtracted* | core (millicore precision) |
//! | `size` | CPU the task requests; a positive weight favors big tasks, a negative one small ones | core (millicore precision) |
//! | `label:NAME` | the task's label `NAME` read as a decimal number (3 decimals kept; missing or not a number: 0) | as written |
//!
//! Everything is integer arithmetic in thousandths of a point (no floating point:
//! every replica orders the same way), so that ages in milliseconds and CPU in
//! millicores count exactly; the number shown is that sum divided by 1000, rounded
//! down.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// At most this many `label:NAME` weights (each costs a label lookup per queued task).
pub const MAX_LABEL_WEIGHTS: usize = 16;
/// A label's value is clamped to ± this many units, so that no sum can overflow.
pub const MAX_LABEL_VALUE: i64 = 1_000_000_000_000;

/// Weights of the multifactor queue policy. In JSON:
/// `{"priority": 1000, "age": 1, "labels": {"business_value": 10}}`; a weight left out is 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "priority weights: an object"
)]
pub struct MultifactorWeights {
    /// Points per level of the task's `priority`.
    pub priority: i32,
    /// Points per second the task has been ready (counted to the millisecond).
    pub age: i32,
    /// Points taken off per CPU core the task owner's placed tasks reserve now.
    #[cfg_attr(feature = "openapi", schema(maximum = 4294967295_u64))]
    pub fairshare: u32,
    /// Points per CPU core the task asks for: positive favors big tasks, negative small.
    pub size: i32,
    /// Points per unit of a numeric task label, by label name (not a number: 0).
    pub labels: BTreeMap<String, i32>,
}

/// Why a `--priority-weights` text does not parse. Each names the term at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriorityWeightsError {
    #[error("no weights given: write e.g. age=1,priority=1000,label:business_value=10")]
    Empty,
    #[error("{term:?}: expected FACTOR=WEIGHT")]
    NoWeight { term: String },
    #[error("{term:?}: the weight must be a whole number that fits 32 bits")]
    BadWeight { term: String },
    #[error("{term:?}: the fairshare weight cannot be negative")]
    NegativeFairshare { term: String },
    #[error("{term:?}: unknown factor {name:?}; use priority, age, fairshare, size or label:NAME")]
    UnknownFactor { term: String, name: String },
    #[error("{term:?}: label:NAME needs a label name")]
    NoLabelName { term: String },
    #[error("{term:?}: {name} is given twice")]
    Repeated { term: String, name: String },
    #[error("at most {MAX_LABEL_WEIGHTS} label weights")]
    TooManyLabels,
}

impl MultifactorWeights {
    /// Reads `FACTOR=WEIGHT,...` (factors: priority, age, fairshare, size, label:NAME).
    pub fn parse(text: &str) -> Result<MultifactorWeights, PriorityWeightsError> {
        let mut w = MultifactorWeights::default();
        let mut seen: Vec<String> = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let owned = || term.to_string();
            let (name, weight) = term
                .split_once('=')
                .ok_or_else(|| PriorityWeightsError::NoWeight { term: owned() })?;
            let name = name.trim();
            let weight: i64 = weight
                .trim()
                .parse()
                .map_err(|_| PriorityWeightsError::BadWeight { term: owned() })?;
            if seen.iter().any(|s| s == name) {
                return Err(PriorityWeightsError::Repeated {
                    term: owned(),
                    name: name.to_string(),
                });
            }
            seen.push(name.to_string());
            let signed = || {
                i32::try_from(weight).map_err(|_| PriorityWeightsError::BadWeight { term: owned() })
            };
            match name {
                "priority" => w.priority = signed()?,
                "age" => w.age = signed()?,
                "size" => w.size = signed()?,
                "fairshare" | "fair_share" | "fair-share" => {
                    if weight < 0 {
                        return Err(PriorityWeightsError::NegativeFairshare { term: owned() });
                    }
                    w.fairshare = u32::try_from(weight)
                        .map_err(|_| PriorityWeightsError::BadWeight { term: owned() })?;
                }
                _ => match name.strip_prefix("label:") {
                    Some(label) if !label.trim().is_empty() => {
                        w.labels.insert(label.trim().to_string(), signed()?);
                        if w.labels.len() > MAX_LABEL_WEIGHTS {
                            return Err(PriorityWeightsError::TooManyLabels);
                        }
                    }
                    Some(_) => return Err(PriorityWeightsError::NoLabelName { term: owned() }),
                    None => {
                        return Err(PriorityWeightsError::UnknownFactor {
                            term: owned(),
                            name: name.to_string(),
                        });
                    }
                },
            }
        }
        if seen.is_empty() {
            return Err(PriorityWeightsError::Empty);
        }
        Ok(w)
    }

    /// The part of a task's effective priority that does not change while it waits
    /// (priority, size, labels), in thousandths of a point. At most about 2^85 in
    /// magnitude: priority 2^31 × weight 2^31 × 1000, plus 16 labels of 10^15
    /// thousandths × 2^31.
    pub fn static_milli(&self, t: &FactorInput<'_>) -> i128 {
        let mut sum = 1000 * self.priority as i128 * t.priority as i128
            + self.size as i128 * t.cpu_milli as i128;
        for (name, weight) in &self.labels {
            sum += *weight as i128 * label_milli(t.labels.get(name).map(String::as_str)) as i128;
        }
        sum
    }

    /// The effective priority of a task with each term, as of `t.waited_ms`.
    pub fn explain(&self, t: &FactorInput<'_>) -> EffectivePriority {
        let mut terms = Vec::new();
        let mut push = |factor: String, weight: i64, value_milli: i64| {
            if weight != 0 {
                terms.push(PriorityTerm {
                    factor,
                    weight,
                    value_milli,
                });
            }
        };
        push(
            "priority".into(),
            self.priority as i64,
            1000 * t.priority as i64,
        );
        push(
            "age".into(),
            self.age as i64,
            t.waited_ms.min(i64::MAX as u64) as i64,
        );
        push(
            "fairshare".into(),
            -(self.fairshare as i64),
            t.owner_cpu_milli.min(i64::MAX as u64) as i64,
        );
        push("size".into(), self.size as i64, t.cpu_milli as i64);
        for (name, weight) in &self.labels {
            push(
                format!("label:{name}"),
                *weight as i64,
                label_milli(t.labels.get(name).map(String::as_str)),
            );
        }
        let milli: i128 = terms
            .iter()
            .map(|t| t.weight as i128 * t.value_milli as i128)
            .sum();
        EffectivePriority {
            value: milli
                .div_euclid(1000)
                .clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            terms,
        }
    }

    /// Writes the weights back as `FACTOR=WEIGHT,...` (zero weights left out).
    pub fn to_text(&self) -> String {
        let mut parts = Vec::new();
        for (name, w) in [
            ("priority", self.priority as i64),
            ("age", self.age as i64),
            ("fairshare", self.fairshare as i64),
            ("size", self.size as i64),
        ] {
            if w != 0 {
                parts.push(format!("{name}={w}"));
            }
        }
        for (name, w) in &self.labels {
            parts.push(format!("label:{name}={w}"));
        }
        if parts.is_empty() {
            "(all weights 0)".into()
        } else {
            parts.join(",")
        }
    }
}

/// What the effective priority of a task is computed from.
#[derive(Clone, Copy, Debug)]
pub struct FactorInput<'a> {
    pub priority: i32,
    /// Since the task first became ready (kept across retries).
    pub waited_ms: u64,
    /// CPU the task asks for.
    pub cpu_milli: u32,
    pub labels: &'a BTreeMap<String, String>,
    /// CPU the placed tasks of the task's owner reserve now.
    pub owner_cpu_milli: u64,
}

/// A label's value in thousandths: `12`, `-3.5`, `+0.125` (digits past the third
/// decimal are dropped, toward zero). Anything else, or no label, is 0; the value is
/// clamped to ±[`MAX_LABEL_VALUE`].
pub fn label_milli(text: Option<&str>) -> i64 {
    let Some(text) = text.map(str::trim) else {
        return 0;
    };
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !all_digits(whole) || !all_digits(frac) {
        return 0;
    }
    let cap = MAX_LABEL_VALUE as i128 * 1000;
    let mut milli: i128 = 0;
    for b in whole.bytes() {
        milli = (milli * 10 + (b - b'0') as i128).min(cap);
    }
    milli *= 1000;
    let mut scale = 100;
    for b in frac.bytes().take(3) {
        milli += (b - b'0') as i128 * scale;
        scale /= 10;
    }
    let milli = milli.min(cap) as i64;
    if negative { -milli } else { milli }
}

/// A task's effective priority under the multifactor policy and how it is made up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EffectivePriority {
    /// The sum of `weight × value` over the terms, rounded down to a whole point.
    pub value: i64,
    /// The factors with a non-zero weight.
    pub terms: Vec<PriorityTerm>,
}

/// One factor of an effective priority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriorityTerm {
    /// `priority`, `age`, `fairshare`, `size` or `label:NAME`.
    pub factor: String,
    /// The configured weight; negative for `fairshare`, which is a penalty.
    pub weight: i64,
    /// The factor's value in thousandths (levels, seconds, cores or label units).
    pub value_milli: i64,
}

impl fmt::Display for EffectivePriority {
    /// `12,345 = 1000×priority(3) + 1×age(42s) - 10×fairshare(2cpu)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", grouped(self.value))?;
        if self.terms.is_empty() {
            return f.write_str(" (every weight is 0)");
        }
        for (i, t) in self.terms.iter().enumerate() {
            let sign = match (i, t.weight < 0) {
                (0, false) => " = ",
                (0, true) => " = -",
                (_, false) => " + ",
                (_, true) => " - ",
            };
            let unit = match t.factor.as_str() {
                "age" => "s",
                "fairshare" | "size" => "cpu",
                _ => "",
            };
            write!(
                f,
                "{sign}{}×{}({}{unit})",
                t.weight.unsigned_abs(),
                t.factor,
                decimal(t.value_milli)
            )?;
        }
        Ok(())
    }
}

/// `1234567` → `1,234,567`.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Thousandths as a decimal without trailing zeros: 42500 → `42.5`.
fn decimal(milli: i64) -> String {
    let whole = grouped(milli / 1000);
    let frac = (milli % 1000).unsigned_abs();
    let sign = if milli < 0 && milli > -1000 { "-" } else { "" };
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let f = format!("{frac:03}");
        format!("{sign}{whole}.{}", f.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_form_reads_and_names_bad_terms() {
        let w = MultifactorWeights::parse("age=1, priority=1000,label:business_value=10").unwrap();
        assert_eq!(
            w,
            MultifactorWeights {
                priority: 1000,
                age: 1,
                labels: [("business_value".to_string(), 10)].into(),
                ..MultifactorWeights::default()
            }
        );
        assert_eq!(w.to_text(), "priority=1000,age=1,label:business_value=10");
        let err = |t: &str| MultifactorWeights::parse(t).unwrap_err().to_string();
        assert_eq!(
            err("age=1,agee=2"),
            "\"agee=2\": unknown factor \"agee\"; use priority, age, fairshare, size or label:NAME"
        );
        assert_eq!(err("age"), "\"age\": expected FACTOR=WEIGHT");
        assert_eq!(
            err("age=x"),
            "\"age=x\": the weight must be a whole number that fits 32 bits"
        );
        assert_eq!(err("age=1,age=2"), "\"age=2\": age is given twice");
        assert_eq!(
            err("label:=2"),
            "\"label:=2\": label:NAME needs a label name"
        );
        assert_eq!(
            err("fairshare=-1"),
            "\"fairshare=-1\": the fairshare weight cannot be negative"
        );
        assert!(err(" , ").starts_with("no weights given"));
    }

    #[test]
    fn labels_read_as_decimals_or_zero() {
        let cases = [
            (Some("12"), 12_000),
            (Some("-3.5"), -3_500),
            (Some("+0.1259"), 125),
            (Some(".5"), 500),
            (Some("7."), 7_000),
            (Some("high"), 0),
            (Some("1e3"), 0),
            (Some(""), 0),
            (Some("-"), 0),
            (Some("."), 0),
            (None, 0),
            (Some("99999999999999999999"), MAX_LABEL_VALUE * 1000),
        ];
        for (text, want) in cases {
            assert_eq!(label_milli(text), want, "{text:?}");
        }
    }

    #[test]
    fn explain_sums_the_terms_and_shows_them() {
        let w = MultifactorWeights::parse("priority=1000,age=1,fairshare=10,label:bv=10").unwrap();
        let labels: BTreeMap<String, String> = [("bv".to_string(), "2.5".to_string())].into();
        let e = w.explain(&FactorInput {
            priority: 3,
            waited_ms: 42_500,
            cpu_milli: 1000,
            labels: &labels,
            owner_cpu_milli: 2000,
        });
        // 3000 + 42.5 - 20 + 25 = 3047.5 → 3047.
        assert_eq!(e.value, 3047);
        assert_eq!(
            e.to_string(),
            "3,047 = 1000×priority(3) + 1×age(42.5s) - 10×fairshare(2cpu) + 10×label:bv(2.5)"
        );
    }
}
