//! Grant requests: a person asks, an admin approves (the grant is made in
//! the same transaction) or denies, or the person withdraws. Each step is
//! audited with the request before and after.

use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use super::audit::{append, NewEntry};
use super::{new_short_id, now, parse_stored, SqlStore};
use super::{query, query_as};
use crate::policy::Rule;
use crate::store::*;

const COLUMNS: &str = "id, network_id, requester, target, ports, duration_secs, reason, \
     created_at, state, decided_by, decided_at, grant_id";

fn request_row(row: &AnyRow) -> Result<GrantRequest, StoreError> {
    let ports: String = row.try_get("ports")?;
    let duration: i64 = row.try_get("duration_secs")?;
    Ok(GrantRequest {
        id: row.try_get("id")?,
        network_id: parse_stored("network id", &row.try_get::<String, _>("network_id")?)?,
        requester: row.try_get("requester")?,
        to: row.try_get("target")?,
        ports: serde_json::from_str(&ports)
            .map_err(|_| StoreError::Corrupt(format!("bad request ports {ports:?}")))?,
        duration_secs: u64::try_from(duration)
            .map_err(|_| StoreError::Corrupt(format!("bad request duration {duration}")))?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        state: parse_stored("request state", &row.try_get::<String, _>("state")?)?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
        grant_id: row.try_get("grant_id")?,
    })
}

fn audit_entry<'a>(
    actor: &'a Actor,
    action: AuditAction,
    before: Option<&GrantRequest>,
    after: &GrantRequest,
) -> NewEntry<'a> {
    NewEntry {
        actor,
        action,
        network_id: Some(after.network_id),
        target: Some(format!("request:{}", after.id)),
        before: before.and_then(|b| serde_json::to_value(b).ok()),
        after: serde_json::to_value(after).ok(),
    }
}

pub(super) async fn request(
    store: &SqlStore,
    net: NetworkId,
    new: NewGrantRequest,
) -> Result<GrantRequest, StoreError> {
    let from = format!("user:{}", new.requester);
    let rule = Rule::from_selectors("request".into(), &from, &new.to, new.ports.clone())?;
    let duration_secs = i64::try_from(new.duration.as_secs())
        .map_err(|_| StoreError::Invalid("for: too long".into()))?;
    let ports = serde_json::to_string(&new.ports)
        .map_err(|e| StoreError::Invalid(format!("ports: {e}")))?;
    let mut tx = store.begin_write().await?;
    super::grants::check_in(&mut tx, net, &rule).await?;
    let (waiting,): (i64,) =
        query_as("SELECT count(*) FROM grant_requests WHERE requester = ? AND state = 'pending'")
            .bind(&new.requester)
            .fetch_one(&mut *tx)
            .await?;
    if waiting >= MAX_PENDING_REQUESTS {
        return Err(StoreError::Conflict(format!(
            "you have {waiting} requests waiting already: withdraw one, or wait for an admin"
        )));
    }
    let same: Option<(String,)> = query_as(
        "SELECT id FROM grant_requests WHERE network_id = ? AND requester = ? AND target = ? \
         AND state = 'pending'",
    )
    .bind(net.to_string())
    .bind(&new.requester)
    .bind(&new.to)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((id,)) = same {
        return Err(StoreError::Conflict(format!(
            "your request {id} for {} waits already",
            new.to
        )));
    }
    let (created_at, _) = now();
    let request = GrantRequest {
        id: new_short_id(),
        network_id: net,
        requester: new.requester,
        to: new.to,
        ports: new.ports,
        duration_secs: new.duration.as_secs(),
        reason: new.reason,
        created_at,
        state: RequestState::Pending,
        decided_by: None,
        decided_at: None,
        grant_id: None,
    };
    query(
        "INSERT INTO grant_requests (id, network_id, requester, target, ports, duration_secs, \
         reason, created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
    )
    .bind(&request.id)
    .bind(net.to_string())
    .bind(&request.requester)
    .bind(&request.to)
    .bind(&ports)
    .bind(duration_secs)
    .bind(&request.reason)
    .bind(&request.created_at)
    .execute(&mut *tx)
    .await?;
    let actor = Actor::user(&request.requester);
    append(
        &mut tx,
        audit_entry(&actor, AuditAction::GrantRequest, None, &request),
    )
    .await?;
    tx.commit().await?;
    Ok(request)
}

pub(super) async fn list(
    store: &SqlStore,
    filter: &RequestFilter,
) -> Result<Vec<GrantRequest>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM grant_requests WHERE 1 = 1");
    if filter.network.is_some() {
        sql.push_str(" AND network_id = ?");
    }
    if filter.requester.is_some() {
        sql.push_str(" AND requester = ?");
    }
    if filter.pending_only {
        sql.push_str(" AND state = 'pending'");
    }
    sql.push_str(" ORDER BY created_at DESC, id LIMIT ?");
    let mut query = query(sql);
    if let Some(net) = filter.network {
        query = query.bind(net.to_string());
    }
    if let Some(requester) = &filter.requester {
        query = query.bind(requester.clone());
    }
    let rows = query
        .bind(i64::from(filter.limit))
        .fetch_all(&store.read)
        .await?;
    rows.iter().map(request_row).collect()
}

async fn pending_in(
    conn: &mut AnyConnection,
    net: NetworkId,
    id: &str,
) -> Result<GrantRequest, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM grant_requests WHERE network_id = ? AND id = ?");
    let row = query(sql)
        .bind(net.to_string())
        .bind(id)
        .fetch_optional(conn)
        .await?;
    match row {
        Some(row) => {
            let request = request_row(&row)?;
            if request.state == RequestState::Pending {
                Ok(request)
            } else {
                Err(StoreError::NotFound("pending request"))
            }
        }
        None => Err(StoreError::NotFound("request")),
    }
}

pub(super) async fn decide(
    store: &SqlStore,
    actor: &Actor,
    net: NetworkId,
    id: &str,
    decision: Decision,
) -> Result<(GrantRequest, Option<Grant>), StoreError> {
    let mut tx = store.begin_write().await?;
    let before = pending_in(&mut tx, net, id).await?;
    let grant = match decision {
        Decision::Approve => {
            let lasts = time::Duration::seconds(
                i64::try_from(before.duration_secs)
                    .map_err(|_| StoreError::Corrupt("request duration".into()))?,
            );
            let new = NewGrant {
                from: format!("user:{}", before.requester),
                to: before.to.clone(),
                ports: before.ports.clone(),
                reason: format!("request {}: {}", before.id, before.reason),
                ends_at: time::OffsetDateTime::now_utc() + lasts,
            };
            Some(super::grants::add_in(&mut tx, actor, net, new).await?)
        }
        Decision::Deny | Decision::Withdraw => None,
    };
    let (state, action) = match decision {
        Decision::Approve => (RequestState::Approved, AuditAction::GrantRequestApprove),
        Decision::Deny => (RequestState::Denied, AuditAction::GrantRequestDeny),
        Decision::Withdraw => (RequestState::Withdrawn, AuditAction::GrantRequestWithdraw),
    };
    let (decided_at, _) = now();
    let after = GrantRequest {
        state,
        decided_by: Some(actor.as_str().to_string()),
        decided_at: Some(decided_at),
        grant_id: grant.as_ref().map(|g| g.id.clone()),
        ..before.clone()
    };
    query(
        "UPDATE grant_requests SET state = ?, decided_by = ?, decided_at = ?, grant_id = ? \
         WHERE network_id = ? AND id = ?",
    )
    .bind(state.as_str())
    .bind(&after.decided_by)
    .bind(&after.decided_at)
    .bind(&after.grant_id)
    .bind(net.to_string())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    append(&mut tx, audit_entry(actor, action, Some(&before), &after)).await?;
    tx.commit().await?;
    Ok((after, grant))
}
