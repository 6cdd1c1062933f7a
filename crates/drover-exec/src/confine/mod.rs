//! What keeps a task away from the agent, the server and the host: the user it runs
//! as ([`TaskUser`]), the working directory it may have ([`resolve_workdir`]), and
//! the agent's own process hardening ([`protect_agent_process`]). The pids and memory
//! limits live with the cgroups (`crate::cgroup`).

mod task_user;
mod workdir;

pub use task_user::{TaskUser, TaskUserError};
pub(crate) use workdir::{open_work_root_to, prepare_attempt_dir, resolve_workdir};

/// Makes the calling process non-dumpable: processes of the same user (tasks run as
/// the agent's user when the agent is not root) can then neither read its
/// `/proc/<pid>/environ`, `mem`, `fd/` nor attach a debugger to it, and it leaves no
/// core dump holding its secrets. Inherited across fork, reset by exec, so the tasks
/// the agent starts are not affected (nor is the agent's own access to them). Call
/// it first thing in every long-lived process that holds the cluster token.
pub fn protect_agent_process() -> std::io::Result<()> {
    crate::sys::set_non_dumpable()
}
