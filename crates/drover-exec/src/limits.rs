//! Changing a running attempt's limits (dynamic resources: a granted resize).

use crate::error::ExecError;

/// The limits a running attempt is to have from now on: its whole reservation after a
/// granted resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitUpdate {
    /// `None`: no memory limit (a reservation of 0 bytes).
    pub memory_limit_bytes: Option<u64>,
    pub cpu_milli: u32,
}

/// Sets a running attempt's limits at once. Each driver implements what it enforces;
/// an attempt whose driver enforces nothing has no setter
/// ([`crate::RunningAttempt::limit_setter`] is `None`).
pub trait LimitSetter: Send + Sync {
    fn set_limits(&self, update: &LimitUpdate) -> Result<(), ExecError>;
}
