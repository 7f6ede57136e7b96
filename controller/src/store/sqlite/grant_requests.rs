//! People's requests for temporary access: stored pending, approved into
//! a grant (in the same transaction) or denied, every step audited.

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::Row;
use time::OffsetDateTime;

use super::audit::{append, NewEntry};
use super::{new_short_id, now, SqliteStore};
use crate::policy::Rule;
use crate::store::*;

const COLUMNS: &str = "id, network_id, requested_by, source, target, ports, duration_secs, \
     reason, created_at, state, decided_by, decided_at, grant_id";

/// Pending requests kept at once; past it, a new one is refused.
const MAX_PENDING: i64 = 1000;

fn request_row(row: &SqliteRow) -> Result<GrantRequest, StoreError> {
    let ports: String = row.try_get("ports")?;
    let net: String = row.try_get("network_id")?;
    let duration: i64 = row.try_get("duration_secs")?;
    Ok(GrantRequest {
        id: row.try_get("id")?,
        network_id: super::parse_stored("network id", &net)?,
        requested_by: row.try_get("requested_by")?,
        from: row.try_get("source")?,
        to: row.try_get("target")?,
        ports: serde_json::from_str(&ports)
            .map_err(|_| StoreError::Corrupt(format!("bad request ports {ports:?}")))?,
        duration_secs: u64::try_from(duration)
            .map_err(|_| StoreError::Corrupt(format!("bad request duration {duration}")))?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        state: row.try_get("state")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
        grant_id: row.try_get("grant_id")?,
    })
}

pub(super) async fn request(
    store: &SqliteStore,
    actor: &Actor,
    net: NetworkId,
    new: NewGrantRequest,
) -> Result<GrantRequest, StoreError> {
    let duration = i64::try_from(new.duration_secs)
        .map_err(|_| StoreError::Invalid("for: too long".into()))?;
    let id = new_short_id();
    let rule = Rule::from_selectors(format!("grant:{id}"), &new.from, &new.to, new.ports.clone())?;
    let ports = serde_json::to_string(&new.ports)
        .map_err(|e| StoreError::Invalid(format!("ports: {e}")))?;
    let (created_at, _) = now();
    let mut tx = store.begin_write().await?;
    super::grants::check_in(&mut tx, net, &rule).await?;
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM grant_requests WHERE state = 'pending'")
            .fetch_one(&mut *tx)
            .await?;
    if pending >= MAX_PENDING {
        return Err(StoreError::Conflict(format!(
            "{MAX_PENDING} requests already wait for an admin: try again later"
        )));
    }
    let email = actor
        .as_str()
        .strip_prefix("user:")
        .unwrap_or(actor.as_str());
    let request = GrantRequest {
        id,
        network_id: net,
        requested_by: email.to_string(),
        from: new.from,
        to: new.to,
        ports: new.ports,
        duration_secs: new.duration_secs,
        reason: new.reason,
        created_at,
        state: "pending".into(),
        decided_by: None,
        decided_at: None,
        grant_id: None,
    };
    sqlx::query(
        "INSERT INTO grant_requests (id, network_id, requested_by, source, target, ports, \
         duration_secs, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&request.id)
    .bind(net.to_string())
    .bind(&request.requested_by)
    .bind(&request.from)
    .bind(&request.to)
    .bind(&ports)
    .bind(duration)
    .bind(&request.reason)
    .bind(&request.created_at)
    .execute(&mut *tx)
    .await?;
    append(
        &mut tx,
        NewEntry {
            actor,
            action: "grant.request",
            network_id: Some(net),
            target: Some(format!("request:{}", request.id)),
            before: None,
            after: serde_json::to_value(&request).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(request)
}

pub(super) async fn list(
    store: &SqliteStore,
    pending_only: bool,
) -> Result<Vec<GrantRequest>, StoreError> {
    let filter = if pending_only {
        "WHERE state = 'pending'"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM grant_requests {filter} ORDER BY created_at DESC, id LIMIT 1000"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&store.read)
        .await?;
    rows.iter().map(request_row).collect()
}

async fn pending_in(
    conn: &mut SqliteConnection,
    net: NetworkId,
    id: &str,
) -> Result<GrantRequest, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM grant_requests WHERE network_id = ? AND id = ? AND state = 'pending'"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(net.to_string())
        .bind(id)
        .fetch_optional(conn)
        .await?;
    match row {
        Some(row) => request_row(&row),
        None => Err(StoreError::NotFound("pending grant request")),
    }
}

pub(super) async fn decide(
    store: &SqliteStore,
    actor: &Actor,
    net: NetworkId,
    id: &str,
    approve: bool,
) -> Result<GrantRequest, StoreError> {
    let mut tx = store.begin_write().await?;
    let before = pending_in(&mut tx, net, id).await?;
    let grant_id = if approve {
        let lasts = time::Duration::seconds(
            i64::try_from(before.duration_secs)
                .map_err(|_| StoreError::Corrupt("request duration".into()))?,
        );
        let grant = super::grants::add_in(
            &mut tx,
            actor,
            net,
            NewGrant {
                from: before.from.clone(),
                to: before.to.clone(),
                ports: before.ports.clone(),
                reason: format!("requested by {}: {}", before.requested_by, before.reason),
                ends_at: OffsetDateTime::now_utc() + lasts,
            },
        )
        .await?;
        Some(grant.id)
    } else {
        None
    };
    let (decided_at, _) = now();
    let after = GrantRequest {
        state: if approve { "approved" } else { "denied" }.into(),
        decided_by: Some(actor.as_str().to_string()),
        decided_at: Some(decided_at),
        grant_id,
        ..before.clone()
    };
    sqlx::query(
        "UPDATE grant_requests SET state = ?, decided_by = ?, decided_at = ?, grant_id = ? \
         WHERE network_id = ? AND id = ?",
    )
    .bind(&after.state)
    .bind(&after.decided_by)
    .bind(&after.decided_at)
    .bind(&after.grant_id)
    .bind(net.to_string())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    append(
        &mut tx,
        NewEntry {
            actor,
            action: if approve {
                "grant.request_approve"
            } else {
                "grant.request_deny"
            },
            network_id: Some(net),
            target: Some(format!("request:{id}")),
            before: serde_json::to_value(&before).ok(),
            after: serde_json::to_value(&after).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}
