//! The roles of client ACL tokens (see ARCHITECTURE.md, "Roles and tokens").

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a client credential may do. Ordered from least to most: a route that needs a
/// role is open to that role and every role after it (`Read < Submit < Operator <
/// Admin`), so the check is one comparison.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Reads only: tasks, jobs, output, events, workers, policy.
    #[default]
    Read,
    /// Reads, submits, and cancels what it submitted.
    Submit,
    /// Also changes policies, drains and resumes workers, cancels anything.
    Operator,
    /// Everything, including tokens and the group's membership.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Read, Role::Submit, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text.trim())
    }

    /// Whether a credential of this role may use a route that needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_print_and_nest() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(Role::parse("root"), None);
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Submit));
        assert!(Role::Submit.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Submit));
        assert!(!Role::Submit.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
    }
}
