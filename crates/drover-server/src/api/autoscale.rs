//! The autoscaler's status (`GET /v1/autoscale`; see `autoscale/`).

use super::openapi::Unauthorized;
use crate::node::Node;
use axum::Json;
use axum::extract::State;
use drover_proto::autoscale::AutoscaleStatus;
use std::sync::Arc;

/// The autoscaler's settings, the workers it manages and its latest decisions. Only the
/// leader scales: another server answers its settings with `leader: false` and no
/// workers nor decisions.
#[utoipa::path(
    get,
    path = "/v1/autoscale",
    tag = "cluster",
    responses((status = 200, description = "The autoscaler's status", body = AutoscaleStatus), Unauthorized)
)]
pub async fn status(State(node): State<Arc<Node>>) -> Json<AutoscaleStatus> {
    Json(node.autoscale.snapshot(node.is_leader()))
}
