//! Where Drover keeps its files on this machine, so that `drover up`, `drover server`
//! and the CLI agree without configuration.
//!
//! The data directory is `$DROVER_DATA_DIR`, else `$XDG_DATA_HOME/drover`, else
//! `~/.local/share/drover`. A server started with defaults keeps its state in
//! `<data>/server`, writes its URL to `<data>/server/endpoint` and its token to
//! `<data>/server/token` (mode 0600): the CLI reads both when it is not given
//! `--server`/`DROVER_SERVER` and `--token`/`DROVER_TOKEN`.

use std::path::{Path, PathBuf};

pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DROVER_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("drover");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/drover"),
        None => PathBuf::from(".drover"),
    }
}

/// The server's own directory inside a data directory.
pub fn server_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server")
}

/// The URL a local server wrote when it started.
pub fn local_endpoint(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(server_dir(data_dir).join("endpoint"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The token of a local server.
pub fn local_token(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(server_dir(data_dir).join("token"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
