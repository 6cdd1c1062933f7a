//! The labels that mark a container as one attempt of one agent incarnation.

/// The agent id (`DriverConfig::agent_id`) that started the container.
pub const LABEL_AGENT: &str = "io.drover.agent";
/// Which run of that agent: a restarted agent removes its predecessors' containers.
pub const LABEL_INCARNATION: &str = "io.drover.incarnation";
pub const LABEL_TASK: &str = "io.drover.task";
pub const LABEL_ATTEMPT: &str = "io.drover.attempt";
