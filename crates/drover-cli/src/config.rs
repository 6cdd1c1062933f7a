//! The configuration file of `drover server`, `drover worker` and `drover up`, and how
//! settings are layered: defaults < file < environment < flags.
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:7070"      # HOST:PORT, or a port alone (loopback)
//! worker_timeout = "30s"
//! heartbeat_interval = "1s"
//! node_id = 1
//! max_body = "256MiB"
//! peers = ["10.0.0.1:7070", "10.0.0.2:7070", "10.0.0.3:7070"]  # a group of servers
//!
//! [worker]
//! name = "gpu-03"
//! server = "http://coordinator:7070"
//! cpus = 8                     # or "0.5", "250m"; unset: all of the host's
//! memory = "32GiB"
//! disk = "500GiB"
//! gpus = 2
//! resources = { license = 4 }
//! labels = { zone = "eu" }
//! data_keys = ["dataset-1"]
//! kill_grace = "5s"
//! cgroups = true
//! metrics = "127.0.0.1:9101"   # serve this worker's Prometheus metrics there
//!
//! [up]
//! workers = 2                  # the host's CPUs and memory are split between them
//! cpus = 2                     # in all, for the local workers
//! memory = "4GiB"
//! ```
//!
//! The file is `--config FILE` (or `DROVER_CONFIG`), else `config.toml` in the data
//! directory when it exists. Every key can also be set by the environment variable
//! `DROVER_<SECTION>_<KEY>` (`DROVER_SERVER_WORKER_TIMEOUT=1m`) and by the command's
//! flag; maps and lists (`resources`, `labels`, `data_keys`) by the file and flags only,
//! flags replacing the file's whole map or list. Unknown sections and keys are errors,
//! and every value in the file is checked when the file is read, so a mistake is named
//! (key and file) at start, whichever command reads it. The cluster token is never read
//! from this file: it stays in the token file, `--token` or `DROVER_TOKEN`.

use anyhow::{Context, Result, anyhow, bail};
use drover_types::{parse_bytes, parse_cpus};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file looked for in the data directory when no `--config` is given.
pub const FILE_NAME: &str = "config.toml";

/// The address the server binds when told only a port, or nothing: loopback.
pub const DEFAULT_LISTEN_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What a key's value must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `HOST:PORT`, or a port alone.
    Listen,
    Duration,
    /// A size: `512M`, `2GiB`, or a number of bytes.
    Size,
    /// CPUs: `2`, `0.5`, `"250m"`.
    Cpus,
    /// A whole number, 0 or more.
    Count,
    Text,
    Bool,
    /// A table of strings.
    TextMap,
    /// A table of whole numbers.
    CountMap,
    /// An array of strings.
    TextList,
}

const SCHEMA: &[(&str, &[(&str, Kind)])] = &[
    (
        "server",
        &[
            ("listen", Kind::Listen),
            ("worker_timeout", Kind::Duration),
            ("heartbeat_interval", Kind::Duration),
            ("node_id", Kind::Count),
            ("max_body", Kind::Size),
            ("peers", Kind::TextList),
            ("events_retained", Kind::Count),
            ("snapshot_every", Kind::Count),
            ("keep_after_snapshot", Kind::Count),
            ("retain_for", Kind::Duration),
            ("retain_max", Kind::Count),
            ("token_rate", Kind::Count),
            ("token_burst", Kind::Count),
            ("token_concurrency", Kind::Count),
            ("max_result", Kind::Size),
            ("max_output", Kind::Size),
            ("max_worker_message", Kind::Size),
            ("header_timeout", Kind::Duration),
            ("body_timeout", Kind::Duration),
            ("object_store", Kind::Text),
            ("object_store_endpoint", Kind::Text),
            ("object_store_allow_http", Kind::Bool),
            ("object_store_region", Kind::Text),
            ("max_checkpoint", Kind::Size),
        ],
    ),
    (
        "worker",
        &[
            ("name", Kind::Text),
            ("server", Kind::Text),
            ("cpus", Kind::Cpus),
            ("memory", Kind::Size),
            ("disk", Kind::Size),
            ("gpus", Kind::Count),
            // `"0,1,2,3"`, like --gpu-ids.
            ("gpu_ids", Kind::Text),
            ("resources", Kind::CountMap),
            ("labels", Kind::TextMap),
            ("data_keys", Kind::TextList),
            ("drivers", Kind::TextList),
            ("plugin_dir", Kind::Text),
            ("kill_grace", Kind::Duration),
            ("max_checkpoint", Kind::Size),
            ("cgroups", Kind::Bool),
            ("metrics", Kind::Text),
            ("task_user", Kind::Text),
            ("allow_paths", Kind::TextList),
            // A number in the file; `max` (no limit of its own) by flag or environment.
            ("task_pids_max", Kind::Count),
            ("task_cpu_quota", Kind::Bool),
        ],
    ),
    (
        "up",
        &[
            ("workers", Kind::Count),
            ("cpus", Kind::Cpus),
            ("memory", Kind::Size),
        ],
    ),
];

/// Where a setting's value came from, as error messages name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag(String),
    Env(String),
    File { key: String, path: PathBuf },
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "{flag}"),
            Source::Env(var) => write!(f, "{var} (environment)"),
            Source::File { key, path } => write!(f, "{key} in {}", path.display()),
            Source::Default => write!(f, "the default"),
        }
    }
}

/// The environment variable of a key: `DROVER_SERVER_WORKER_TIMEOUT`.
pub fn env_var(section: &str, key: &str) -> String {
    format!("DROVER_{}_{}", section, key).to_ascii_uppercase()
}

/// Reads an environment variable (injectable, for tests).
pub type EnvReader = Box<dyn Fn(&str) -> Option<String>>;

/// The file (if any) and the environment, from which settings are taken under flags.
pub struct Layers {
    /// The file read, if any.
    pub path: Option<PathBuf>,
    table: toml::Table,
    env: EnvReader,
}

impl fmt::Debug for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layers")
            .field("path", &self.path)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Layers {
    /// Reads `explicit`, or `config.toml` in `data_dir` when it exists, and the process
    /// environment.
    pub fn load(explicit: Option<&Path>, data_dir: &Path) -> Result<Layers> {
        let env = Box::new(|var: &str| std::env::var(var).ok().filter(|v| !v.is_empty()));
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(data_dir.join(FILE_NAME)).filter(|p| p.is_file()),
        };
        let Some(path) = path else {
            return Ok(Layers {
                path: None,
                table: toml::Table::new(),
                env,
            });
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        Layers::parse(&text, &path, env)
    }

    /// Parses and checks a file's text: TOML syntax, known sections and keys, and every
    /// value.
    pub fn parse(text: &str, path: &Path, env: EnvReader) -> Result<Layers> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("in the configuration file {}", path.display()))?;
        check(&table).with_context(|| format!("in the configuration file {}", path.display()))?;
        Ok(Layers {
            path: Some(path.to_path_buf()),
            table,
            env,
        })
    }

    fn file_value(&self, section: &str, key: &str) -> Option<&toml::Value> {
        self.table.get(section)?.as_table()?.get(key)
    }

    /// A scalar setting: the flag, else the environment, else the file, else
    /// `default`; parsed by `parse`, whose error is prefixed with where the text came
    /// from.
    pub fn value<T>(
        &self,
        flag: Option<&str>,
        flag_name: &str,
        section: &str,
        key: &str,
        default: Option<&str>,
        parse: impl Fn(&str) -> Result<T>,
    ) -> Result<Option<T>> {
        let var = env_var(section, key);
        let (text, source) = if let Some(f) = flag {
            (f.to_string(), Source::Flag(flag_name.to_string()))
        } else if let Some(v) = (self.env)(&var) {
            (v, Source::Env(var))
        } else if let Some(v) = self.file_value(section, key) {
            let source = Source::File {
                key: format!("{section}.{key}"),
                path: self.path.clone().unwrap_or_default(),
            };
            (scalar_text(v).with_context(|| source.to_string())?, source)
        } else if let Some(d) = default {
            (d.to_string(), Source::Default)
        } else {
            return Ok(None);
        };
        parse(&text).map(Some).with_context(|| source.to_string())
    }

    /// A map or list setting from the file (checked when read).
    pub fn file_map(&self, section: &str, key: &str) -> Option<BTreeMap<String, String>> {
        let t = self.file_value(section, key)?.as_table()?;
        Some(
            t.iter()
                .map(|(k, v)| (k.clone(), scalar_text(v).unwrap_or_default()))
                .collect(),
        )
    }

    pub fn file_list(&self, section: &str, key: &str) -> Option<Vec<String>> {
        let a = self.file_value(section, key)?.as_array()?;
        Some(
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
        )
    }
}

/// A scalar's text, as a flag or variable would give it.
fn scalar_text(v: &toml::Value) -> Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!("expected a string or a number, not {}", other.type_str()),
    })
}

/// Checks every section, key and value of a parsed file.
fn check(table: &toml::Table) -> Result<()> {
    let sections: Vec<&str> = SCHEMA.iter().map(|(s, _)| *s).collect();
    for (name, value) in table {
        let Some((_, keys)) = SCHEMA.iter().find(|(s, _)| s == name) else {
            bail!(
                "unknown section or key `{name}` (the sections are {})",
                sections.join(", ")
            );
        };
        let Some(section) = value.as_table() else {
            bail!("`{name}` must be a section, [{name}]");
        };
        for (key, v) in section {
            let Some((_, kind)) = keys.iter().find(|(k, _)| k == key) else {
                let known: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                bail!(
                    "unknown key `{name}.{key}` (the keys of [{name}] are {})",
                    known.join(", ")
                );
            };
            check_value(*kind, v).with_context(|| format!("{name}.{key}"))?;
        }
    }
    Ok(())
}

fn check_value(kind: Kind, v: &toml::Value) -> Result<()> {
    let text = || scalar_text(v);
    match kind {
        Kind::Listen => {
            parse_listen(v.as_str().ok_or_else(|| anyhow!("expected a string"))?).map(drop)
        }
        Kind::Duration => {
            parse_duration(&text()?).map(drop)?;
            Ok(())
        }
        Kind::Size => parse_size(&text()?).map(drop),
        Kind::Cpus => parse_cpu_amount(&text()?).map(drop),
        Kind::Count => match v {
            toml::Value::Integer(i) if *i >= 0 => Ok(()),
            toml::Value::Integer(_) => bail!("must be 0 or more"),
            _ => bail!("expected a whole number"),
        },
        Kind::Text => v
            .as_str()
            .map(drop)
            .ok_or_else(|| anyhow!("expected a string")),
        Kind::Bool => v
            .as_bool()
            .map(drop)
            .ok_or_else(|| anyhow!("expected true or false")),
        Kind::TextMap => {
            let t = v
                .as_table()
                .ok_or_else(|| anyhow!("expected a table, {{ key = \"value\" }}"))?;
            for (k, x) in t {
                x.as_str()
                    .ok_or_else(|| anyhow!("{k}: expected a string"))?;
            }
            Ok(())
        }
        Kind::CountMap => {
            let t = v
                .as_table()
                .ok_or_else(|| anyhow!("expected a table, {{ name = 2 }}"))?;
            for (k, x) in t {
                match x {
                    toml::Value::Integer(i) if *i >= 0 => {}
                    _ => bail!("{k}: expected a whole number, 0 or more"),
                }
            }
            Ok(())
        }
        Kind::TextList => {
            let a = v
                .as_array()
                .ok_or_else(|| anyhow!("expected an array of strings"))?;
            if a.iter().any(|x| !x.is_str()) {
                bail!("expected an array of strings");
            }
            Ok(())
        }
    }
}

// ---- Parsers shared by the file, the environment and flags.

/// `HOST:PORT`, or a port alone: loopback on that port.
pub fn parse_listen(text: &str) -> Result<SocketAddr> {
    let t = text.trim();
    if let Ok(port) = t.parse::<u16>() {
        return Ok(SocketAddr::new(DEFAULT_LISTEN_HOST, port));
    }
    t.parse::<SocketAddr>().map_err(|_| {
        anyhow!("{text:?} is not an address: give HOST:PORT (e.g. 0.0.0.0:7070) or a port alone")
    })
}

pub fn parse_duration(text: &str) -> Result<Duration> {
    crate::jobfile::parse_duration_ms(text).map(Duration::from_millis)
}

pub fn parse_size(text: &str) -> Result<u64> {
    Ok(parse_bytes(text)?)
}

pub fn parse_cpu_amount(text: &str) -> Result<u32> {
    Ok(parse_cpus(text)?)
}

pub fn parse_count<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.trim()
        .parse::<T>()
        .map_err(|_| anyhow!("{text:?} is not a whole number (0 or more)"))
}

pub fn parse_bool(text: &str) -> Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => bail!("{text:?} is not true or false"),
    }
}

// ---- Printing the effective configuration, in the file's own syntax.

/// Builds the TOML of an effective configuration, one section at a time.
#[derive(Debug, Default)]
pub struct Printer {
    root: toml::Table,
}

impl Printer {
    pub fn section(&mut self, name: &str) -> &mut toml::Table {
        self.root
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a section is a table")
    }

    /// Prints it: TOML under a comment naming the file, or JSON.
    pub fn print(&self, layers: &Layers, json: bool) -> Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(&self.root)?);
            return Ok(());
        }
        println!("# drover's effective configuration: defaults < file < environment < flags");
        match &layers.path {
            Some(p) => println!("# configuration file: {}", p.display()),
            None => println!("# configuration file: none"),
        }
        println!("{}", toml::to_string(&self.root)?.trim_end());
        Ok(())
    }
}

pub fn show_duration(d: Duration) -> toml::Value {
    toml::Value::String(humantime::format_duration(d).to_string())
}

/// A size exactly, in the largest binary unit that divides it.
pub fn show_size(bytes: u64) -> toml::Value {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return toml::Value::String(format!("{}{name}", bytes / unit));
        }
    }
    toml::Value::Integer(bytes as i64)
}

pub fn show_cpus(milli: u32) -> toml::Value {
    if milli.is_multiple_of(1000) {
        toml::Value::Integer(i64::from(milli / 1000))
    } else {
        let text = format!("{}.{:03}", milli / 1000, milli % 1000);
        toml::Value::String(text.trim_end_matches('0').to_string())
    }
}

pub fn show_count(n: u64) -> toml::Value {
    toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(text: &str, env: &[(&str, &str)]) -> Result<Layers> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Layers::parse(
            text,
            Path::new("/etc/drover.toml"),
            Box::new(move |k| env.get(k).cloned()),
        )
    }

    fn timeout(l: &Layers, flag: Option<&str>) -> Result<Option<Duration>> {
        l.value(
            flag,
            "--worker-timeout",
            "server",
            "worker_timeout",
            Some("30s"),
            parse_duration,
        )
    }

    #[test]
    fn settings_layer_defaults_file_environment_flags() {
        let none = layers("", &[]).unwrap();
        assert_eq!(timeout(&none, None).unwrap(), Some(Duration::from_secs(30)));
        let file = layers("[server]\nworker_timeout = \"1m\"\n", &[]).unwrap();
        assert_eq!(timeout(&file, None).unwrap(), Some(Duration::from_secs(60)));
        let env = layers(
            "[server]\nworker_timeout = \"1m\"\n",
            &[("DROVER_SERVER_WORKER_TIMEOUT", "2m")],
        )
        .unwrap();
        assert_eq!(timeout(&env, None).unwrap(), Some(Duration::from_secs(120)));
        assert_eq!(
            timeout(&env, Some("3m")).unwrap(),
            Some(Duration::from_secs(180))
        );
    }

    #[test]
    fn errors_name_the_key_and_where_it_came_from() {
        let e = layers("[server]\nlisten_on = \"x\"\n", &[]).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("server.listen_on"), "{text}");
        assert!(text.contains("/etc/drover.toml"), "{text}");
        let e = layers("[sever]\n", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("`sever`"), "{e:#}");
        let e = layers("[server]\nworker_timeout = \"soon\"\n", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("server.worker_timeout"), "{e:#}");
        let e = layers("[worker]\ngpus = -1\n", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("worker.gpus"), "{e:#}");
        let e = layers("[worker]\nlabels = { zone = 3 }\n", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("worker.labels"), "{e:#}");
        let e = layers("[server\n", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("line 1"), "{e:#}");
        let l = layers("", &[("DROVER_SERVER_WORKER_TIMEOUT", "soon")]).unwrap();
        let e = timeout(&l, None).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("DROVER_SERVER_WORKER_TIMEOUT"),
            "{e:#}"
        );
        let e = timeout(&l, Some("later")).unwrap_err();
        assert!(format!("{e:#}").starts_with("--worker-timeout"), "{e:#}");
    }

    #[test]
    fn printed_values_read_back_the_same() {
        for bytes in [1u64, 1024, 1536, 256 << 20, 3 << 30, (1 << 30) + 1] {
            let v = show_size(bytes);
            assert_eq!(parse_size(&scalar_text(&v).unwrap()).unwrap(), bytes, "{v}");
        }
        for milli in [250u32, 1000, 1500, 8000] {
            let v = show_cpus(milli);
            assert_eq!(
                parse_cpu_amount(&scalar_text(&v).unwrap()).unwrap(),
                milli,
                "{v}"
            );
        }
        for ms in [500u64, 30_000, 5_400_000, 90_061_001] {
            let v = show_duration(Duration::from_millis(ms));
            assert_eq!(
                parse_duration(&scalar_text(&v).unwrap()).unwrap(),
                Duration::from_millis(ms),
                "{v}"
            );
        }
    }

    #[test]
    fn a_port_alone_listens_on_loopback() {
        assert_eq!(
            parse_listen("7071").unwrap(),
            "127.0.0.1:7071".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert!(parse_listen(":80").is_err());
    }
}
