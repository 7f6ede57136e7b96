//! `/api/v1/networks` and `/api/v1/networks/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use warren_proto::NetworkId;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::{ApiState, Caller};
use crate::store::{Network, NetworkPatch, NewNetwork};
use crate::{ipam, names};

pub const DEFAULT_POOL: &str = "10.147.0.0/16";
pub const DEFAULT_MTU: u16 = 1420;
const MTU_RANGE: std::ops::RangeInclusive<u16> = 1280..=9000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNetwork {
    name: String,
    pool: Option<String>,
    zone: Option<String>,
    mtu: Option<u16>,
    /// The first access policy (TOML) instead of the default.
    policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateNetwork {
    name: Option<String>,
    zone: Option<String>,
    /// Seconds a signed-in device stays on before its owner signs in again.
    device_expiry_secs: Option<u64>,
}

/// A sign-in lasts at least an hour and at most ten years.
const DEVICE_EXPIRY_RANGE: std::ops::RangeInclusive<u64> = 3600..=10 * 366 * 24 * 3600;

fn check_name(name: &str) -> Result<(), ApiError> {
    if names::is_label(name) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "name must be a DNS label: 1-63 lowercase letters, digits or '-', \
             not starting or ending with '-'"
                .into(),
        ))
    }
}

fn check_zone(zone: &str) -> Result<(), ApiError> {
    if names::is_zone(zone) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "zone must be a lowercase DNS name such as prod.warren.internal".into(),
        ))
    }
}

pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateNetwork>,
) -> Result<(StatusCode, Json<Network>), ApiError> {
    check_name(&body.name)?;
    let pool = ipam::parse_pool(body.pool.as_deref().unwrap_or(DEFAULT_POOL))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let zone = body
        .zone
        .unwrap_or_else(|| format!("{}.warren.internal", body.name));
    check_zone(&zone)?;
    let mtu = body.mtu.unwrap_or(DEFAULT_MTU);
    if !MTU_RANGE.contains(&mtu) {
        return Err(ApiError::BadRequest(format!(
            "mtu must be between {} and {}",
            MTU_RANGE.start(),
            MTU_RANGE.end()
        )));
    }
    let new = NewNetwork {
        name: body.name,
        pool,
        zone,
        mtu,
    };
    let network = match &body.policy {
        Some(text) => {
            state
                .store()
                .create_network_with_policy(&caller.actor(), new, text)
                .await?
        }
        None => state.store().create_network(&caller.actor(), new).await?,
    };
    tracing::info!(network = %network.id, name = %network.name, "network created");
    Ok((StatusCode::CREATED, Json(network)))
}

pub async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let mut networks = state.store().list_networks().await?;
    // A token scoped to one network sees only that one.
    networks.retain(|n| caller.network_id.is_none_or(|own| own == n.id));
    Ok(Json(json!({ "networks": networks })))
}

pub async fn show(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<NetworkId>,
) -> Result<Json<Network>, ApiError> {
    Ok(Json(state.store().get_network(id).await?))
}

pub async fn update(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<NetworkId>,
    ApiJson(body): ApiJson<UpdateNetwork>,
) -> Result<Json<Network>, ApiError> {
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    if let Some(zone) = &body.zone {
        check_zone(zone)?;
    }
    if let Some(secs) = body.device_expiry_secs {
        if !DEVICE_EXPIRY_RANGE.contains(&secs) {
            return Err(ApiError::BadRequest(format!(
                "device_expiry_secs must be from {} (an hour) to {} (ten years)",
                DEVICE_EXPIRY_RANGE.start(),
                DEVICE_EXPIRY_RANGE.end()
            )));
        }
    }
    let patch = NetworkPatch {
        name: body.name,
        zone: body.zone,
        device_expiry_secs: body.device_expiry_secs,
    };
    let network = state
        .store()
        .update_network(&caller.actor(), id, patch)
        .await?;
    Ok(Json(network))
}

pub async fn delete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<NetworkId>,
) -> Result<StatusCode, ApiError> {
    state.store().delete_network(&caller.actor(), id).await?;
    tracing::info!(network = %id, "network deleted");
    Ok(StatusCode::NO_CONTENT)
}
