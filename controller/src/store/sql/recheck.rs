//! Asking the provider again: the token kept for it, who is due, and what
//! the answer changes (groups that moved, or a person the provider no
//! longer knows, disabled).

use sqlx::Row;
use warren_proto::NetworkId;

use super::audit::{append, NewEntry};
use super::query;
use super::users::bump_owned_networks;
use super::{now, SqlStore};
use crate::store::*;

pub(super) async fn keep_token(
    store: &SqlStore,
    user_id: &str,
    token: Option<&str>,
) -> Result<(), StoreError> {
    let (_, now_unix) = now();
    let mut tx = store.begin_write().await?;
    query("UPDATE users SET provider_token = ?, checked_unix = ? WHERE id = ?")
        .bind(token)
        .bind(now_unix)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn due(
    store: &SqlStore,
    checked_before_unix: i64,
) -> Result<Vec<(User, String)>, StoreError> {
    let rows = query(
        "SELECT id, provider_token FROM users WHERE disabled = 0 AND provider_token IS NOT NULL \
         AND (checked_unix IS NULL OR checked_unix <= ?) ORDER BY checked_unix, id",
    )
    .bind(checked_before_unix)
    .fetch_all(&store.read)
    .await?;
    let mut out = Vec::new();
    for row in &rows {
        let id: String = row.try_get("id")?;
        let token: String = row.try_get("provider_token")?;
        if let Some(user) = super::users::by_id(&store.read, &id).await? {
            out.push((user, token));
        }
    }
    Ok(out)
}

pub(super) async fn passed(
    store: &SqlStore,
    user: &User,
    person: &Person,
    token: Option<&str>,
) -> Result<Vec<NetworkId>, StoreError> {
    let (_, now_unix) = now();
    let mut tx = store.begin_write().await?;
    query("UPDATE users SET checked_unix = ?, provider_token = COALESCE(?, provider_token) WHERE id = ?")
        .bind(now_unix)
        .bind(token)
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
    let changed =
        user.email != person.email || user.name != person.name || user.groups != person.groups;
    let mut networks = Vec::new();
    if changed {
        let groups = serde_json::to_string(&person.groups)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        query("UPDATE users SET email = ?, name = ?, groups = ? WHERE id = ?")
            .bind(&person.email)
            .bind(&person.name)
            .bind(&groups)
            .bind(&user.id)
            .execute(&mut *tx)
            .await?;
        networks = bump_owned_networks(&mut tx, &user.id).await?;
        append(
            &mut tx,
            NewEntry {
                actor: &Actor::system(),
                action: AuditAction::UserUpdate,
                network_id: None,
                target: Some(user.id.clone()),
                before: Some(serde_json::json!({ "email": user.email, "name": user.name, "groups": user.groups })),
                after: Some(serde_json::json!({ "email": person.email, "name": person.name, "groups": person.groups, "source": "provider" })),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(networks)
}

pub(super) async fn removed(
    store: &SqlStore,
    user: &User,
    reason: &str,
) -> Result<Vec<NetworkId>, StoreError> {
    let mut tx = store.begin_write().await?;
    let done =
        query("UPDATE users SET disabled = 1, provider_token = NULL WHERE id = ? AND disabled = 0")
            .bind(&user.id)
            .execute(&mut *tx)
            .await?;
    if done.rows_affected() == 0 {
        return Ok(Vec::new());
    }
    let networks = bump_owned_networks(&mut tx, &user.id).await?;
    append(
        &mut tx,
        NewEntry {
            actor: &Actor::system(),
            action: AuditAction::UserRemovedAtProvider,
            network_id: None,
            target: Some(user.id.clone()),
            before: Some(serde_json::json!({ "email": user.email, "disabled": false })),
            after: Some(serde_json::json!({ "disabled": true, "reason": reason })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(networks)
}
