//! Drover's execution drivers: how a worker agent runs one task attempt.
//!
//! The agent talks to a [`Driver`]; the first one is [`ProcessDriver`], which runs
//! each attempt as a child process tree in its own process group and, where cgroup
//! v1 is writable, its own cgroups. It enforces time and memory limits, kills on
//! request, captures bounded output, measures usage, and after an agent crash finds
//! and kills its predecessor's processes. [`SimulatedDriver`] runs nothing (each
//! attempt waits out a duration), for the scale harness. [`PluginDriver`]s run attempts
//! through external plugin executables (see the `plugin` module). [`HostInfo`] and [`HostSampler`] describe
//! the host for the worker's join and heartbeats. See README.md for the guarantees.

mod attempt;
mod attempt_dir_pool;
mod cgroup;
mod config;
pub mod confine;
mod docker;
mod driver;
mod error;
mod finished;
mod host;
mod kill;
mod limits;
mod monitor;
mod output;
mod output_sink;
pub mod plugin;
mod process;
mod proctree;
mod simulated;
mod spawn_request;
mod spec;
mod sys;

pub use attempt::{RunningAttempt, UsageProbe};
pub use config::{
    CgroupMode, DEFAULT_ENV_PASSTHROUGH, DEFAULT_PATH, DEFAULT_PIDS_LIMIT, DriverConfig,
};
pub use confine::{TaskUser, TaskUserError, protect_agent_process};
pub use docker::{DockerDriver, LABEL_AGENT, LABEL_ATTEMPT, LABEL_INCARNATION, LABEL_TASK};
pub use driver::{Driver, OrphanReport};
pub use error::ExecError;
pub use finished::{AttemptUsage, Finished, OutputSummary};
pub use host::{HostInfo, HostSampler};
pub use kill::KillHandle;
pub use limits::{LimitSetter, LimitUpdate};
pub use output::truncation_marker;
pub use plugin::{PluginConfig, PluginDriver};
pub use process::{MARKER_VAR, ProcessDriver};
pub use simulated::{SimulatedDriver, SimulationObserver};
pub use spec::{LaunchSpec, OutputChunk, Stream};
