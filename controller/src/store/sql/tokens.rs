//! API tokens: made, listed, revoked, looked up by hash, their use recorded.

use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::audit::{append, NewEntry};
use super::query;
use super::rows::TOKEN_COLUMNS;
use super::{new_secret, new_short_id, now, rfc3339, rows, secret_hash, SqlStore};
use crate::store::*;

pub(super) async fn create(
    store: &SqlStore,
    actor: &Actor,
    spec: TokenSpec,
) -> Result<NewToken, StoreError> {
    let id = new_short_id();
    let name = match spec.name.as_deref().map(str::trim) {
        Some("") => return Err(StoreError::Invalid("token name must not be empty".into())),
        Some(n) if n.len() > 64 => {
            return Err(StoreError::Invalid("token name is longer than 64".into()))
        }
        Some(n) => n.to_string(),
        None => format!("token-{id}"),
    };
    let (created_at, _) = now();
    if let Some(expires) = spec.expires_at {
        if expires <= OffsetDateTime::now_utc() {
            return Err(StoreError::Invalid(
                "a token's expiry must be in the future".into(),
            ));
        }
    }
    let secret = new_secret("wt_");
    let mut tx = store.begin_write().await?;
    if let Some(net) = spec.network_id {
        // In the transaction, so the network cannot go between check and insert.
        let exists = query("SELECT 1 FROM networks WHERE id = ?")
            .bind(net.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound("network"));
        }
    }
    let inserted = query(
        "INSERT INTO api_tokens (id, name, scope, hash, created_at, network_id, created_by, \
         expires_at, expires_unix) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&name)
    .bind(spec.scope.as_int())
    .bind(secret_hash(&secret))
    .bind(&created_at)
    .bind(spec.network_id.map(|n| n.to_string()))
    .bind(actor.as_str())
    .bind(spec.expires_at.map(rfc3339))
    .bind(spec.expires_at.map(OffsetDateTime::unix_timestamp))
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if super::is_unique_violation(&e) => {
            return Err(StoreError::Conflict(format!(
                "a token named {name:?} exists"
            )))
        }
        other => other?,
    };
    let token = Token {
        id: id.clone(),
        name,
        scope: spec.scope,
        network_id: spec.network_id,
        state: TokenState::Active,
        created_by: actor.as_str().to_owned(),
        created_at,
        expires_at: spec.expires_at.map(rfc3339),
        last_used_at: None,
        revoked_at: None,
        last_used_unix: None,
    };
    append(
        &mut tx,
        NewEntry {
            actor,
            action: AuditAction::TokenCreate,
            network_id: spec.network_id,
            target: Some(id),
            before: None,
            after: serde_json::to_value(&token).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(NewToken { token, secret })
}

pub(super) async fn find(store: &SqlStore, secret: &str) -> Result<Option<Token>, StoreError> {
    let hash = secret_hash(secret);
    let sql = format!("SELECT {TOKEN_COLUMNS}, hash FROM api_tokens WHERE hash = ?");
    let row = query(sql).bind(&hash).fetch_optional(&store.read).await?;
    let Some(row) = row else { return Ok(None) };
    // The lookup is by hash, so this only guards against a database that
    // returned a row it should not have; it costs nothing.
    let stored: String = sqlx::Row::try_get(&row, "hash")?;
    if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
        return Ok(None);
    }
    rows::token(&row, OffsetDateTime::now_utc()).map(Some)
}

pub(super) async fn list(store: &SqlStore) -> Result<Vec<Token>, StoreError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name");
    let rows = query(sql).fetch_all(&store.read).await?;
    let now = OffsetDateTime::now_utc();
    rows.iter().map(|row| rows::token(row, now)).collect()
}

pub(super) async fn revoke(store: &SqlStore, actor: &Actor, id: &str) -> Result<Token, StoreError> {
    let (at, _) = now();
    let mut tx = store.begin_write().await?;
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?");
    let row = query(sql)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("token"))?;
    let before = rows::token(&row, OffsetDateTime::now_utc())?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    query("UPDATE api_tokens SET revoked_at = ? WHERE id = ?")
        .bind(&at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let after = Token {
        state: TokenState::Revoked,
        revoked_at: Some(at),
        ..before.clone()
    };
    append(
        &mut tx,
        NewEntry {
            actor,
            action: AuditAction::TokenRevoke,
            network_id: before.network_id,
            target: Some(id.to_owned()),
            before: serde_json::to_value(&before).ok(),
            after: serde_json::to_value(&after).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub(super) async fn touch(
    store: &SqlStore,
    id: &str,
    at: OffsetDateTime,
) -> Result<bool, StoreError> {
    let at_unix = at.unix_timestamp();
    // The condition repeats `Token::touch_due` in SQL, so replicas racing
    // on the same token write once.
    let done = query(
        "UPDATE api_tokens SET last_used_at = ?, last_used_unix = ? WHERE id = ? \
         AND (last_used_unix IS NULL OR last_used_unix <= ?)",
    )
    .bind(rfc3339(at))
    .bind(at_unix)
    .bind(id)
    .bind(at_unix - TOKEN_TOUCH_INTERVAL)
    .execute(&store.write)
    .await?;
    Ok(done.rows_affected() > 0)
}
