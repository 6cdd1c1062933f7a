//! Tasks as Docker containers: the task's `image`, its command as the container's
//! argument list, its attempt directory bind-mounted at the same path (and the working
//! directory), its CPU, memory and pids limits as the container's own. Output comes
//! from the container's attach stream into the same bounded files and live chunks as
//! the process driver's; the exit code, the kernel's OOM kill, the time limit and
//! kills map to the same outcomes. Every container is removed when its attempt ends;
//! containers left by an earlier incarnation of the agent carry its labels and are
//! removed by `reap_orphans`.

mod driver;
mod labels;
mod run;
mod usage;

pub use driver::DockerDriver;
pub use labels::{LABEL_AGENT, LABEL_ATTEMPT, LABEL_INCARNATION, LABEL_TASK};
