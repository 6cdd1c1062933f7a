//! The API's bodies for worker identities: join tokens and worker credentials
//! (`/v1/worker-tokens`, `/v1/worker-credentials`).

use drover_types::Millis;
use serde::{Deserialize, Serialize};

/// `POST /v1/worker-tokens`: a new join token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// How long the token may be used, in milliseconds [default: one hour; at most 30 days].
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_592_000_000_u64))]
    pub ttl_ms: Option<u64>,
    /// How many workers may join with it [default: 1; at most 1000].
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub uses: Option<u32>,
}

/// A join token, shown once: only its digest is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinTokenCreated {
    pub id: String,
    /// The secret to give `drover worker --join-token` (or `DROVER_JOIN_TOKEN`).
    pub token: String,
    /// When it expires, on the cluster's clock (milliseconds).
    pub expires_at_ms: Millis,
    pub uses: u32,
}

/// A join token as listed (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinTokenInfo {
    pub id: String,
    pub created_at_ms: Millis,
    pub expires_at_ms: Millis,
    pub uses_left: u32,
}

/// A worker credential as listed (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerCredentialInfo {
    pub id: String,
    /// The worker it is bound to: only a worker of this name may present it.
    pub worker_name: String,
    /// The join token it was issued for.
    pub join_token: String,
    pub issued_at_ms: Millis,
}

/// `GET /v1/worker-credentials`: the worker credentials and the join tokens held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerIdentities {
    pub credentials: Vec<WorkerCredentialInfo>,
    pub join_tokens: Vec<JoinTokenInfo>,
}
