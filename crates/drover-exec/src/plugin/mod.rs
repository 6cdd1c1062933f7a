//! External driver plugins: executables that run task attempts for the worker,
//! spoken to in JSON lines over their stdin and stdout (docs/driver-plugins.md).
//!
//! [`discover`] starts every executable of a plugin directory and keeps those that
//! describe themselves correctly; each becomes a [`PluginDriver`], a [`Driver`]
//! named after the plugin.
//!
//! [`Driver`]: crate::Driver

mod attempt;
mod config;
mod connection;
mod driver;
mod error;
mod stream_order;
mod wire;

pub use config::PluginConfig;
pub use driver::{PluginDriver, discover};
pub use error::PluginError;
pub use wire::{AttemptStatus, Description, PROTOCOL_VERSION};
