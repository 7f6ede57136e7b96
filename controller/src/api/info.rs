//! `/api/v1/info`: what this controller is: its version, the fingerprints
//! of the certificates it serves, where it listens, and what it offers.

use std::net::SocketAddr;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::error::ApiError;
use super::ApiState;

/// The answer of `GET /api/v1/info`, fixed when the controller starts.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ControllerInfo {
    pub version: String,
    pub fingerprints: Fingerprints,
    pub listen: ListenAddresses,
    /// Sorted names: `api-https`, `console`, `dns`, `relay`,
    /// `relay-instance`, `sign-in`, `stun`, and `audit-filters` (the
    /// audit query takes until, actor, action, member and text).
    pub features: Vec<String>,
    /// Where agents reach every running replica (several on one
    /// PostgreSQL database), read when asked; empty for one controller
    /// (SQLite).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
}

/// SHA-256 of each certificate, lowercase hex, as `fingerprint` prints.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Fingerprints {
    /// The controller's own certificate: what nodes pin over QUIC and what
    /// signs the audit head.
    pub controller: String,
    /// The certificate the HTTPS listener serves (the controller's own
    /// unless `https-cert` names another); `None` without `listen-https`.
    pub https: Option<String>,
}

/// Where this process listens, as bound (port 0 resolved).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListenAddresses {
    pub quic: SocketAddr,
    /// `http://ADDR` of the plain API listener.
    pub api: Option<String>,
    /// `https://ADDR` of the HTTPS listener (pages and the API).
    pub https: Option<String>,
    pub stun: Vec<SocketAddr>,
    pub dns: Option<SocketAddr>,
}

/// A state made without a server (the in-process tests) has no info.
pub async fn show(State(state): State<ApiState>) -> Result<Json<ControllerInfo>, ApiError> {
    match &state.info {
        Some(info) => {
            let mut info = info.as_ref().clone();
            // Read now, not as last cached: an invite made right after a
            // replica started names it.
            info.replicas = state
                .hub
                .store()
                .replicas()
                .await?
                .into_iter()
                .filter_map(|r| r.control)
                .collect();
            Ok(Json(info))
        }
        None => Err(ApiError::NotFound("controller info (no server)".into())),
    }
}
