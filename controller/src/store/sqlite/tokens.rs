//! API tokens: made by the `token create` command, looked up by hash.

use subtle::ConstantTimeEq;

use super::audit::{append, NewEntry};
use super::{new_secret, new_short_id, now, rows, secret_hash, SqliteStore};
use crate::store::*;

pub(super) async fn create(
    store: &SqliteStore,
    scope: Scope,
    name: Option<&str>,
) -> Result<NewToken, StoreError> {
    let id = new_short_id();
    let name = match name.map(str::trim) {
        Some("") => return Err(StoreError::Invalid("token name must not be empty".into())),
        Some(n) if n.len() > 64 => {
            return Err(StoreError::Invalid("token name is longer than 64".into()))
        }
        Some(n) => n.to_string(),
        None => format!("token-{id}"),
    };
    let secret = new_secret("wt_");
    let (created_at, _) = now();
    let mut tx = store.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO api_tokens (id, name, scope, hash, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&name)
    .bind(scope.as_int())
    .bind(secret_hash(&secret))
    .bind(&created_at)
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
        scope,
        created_at,
    };
    append(
        &mut tx,
        NewEntry {
            actor: &Actor::system(),
            action: "token.create",
            network_id: None,
            target: Some(id),
            before: None,
            after: serde_json::to_value(&token).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(NewToken { token, secret })
}

pub(super) async fn find(store: &SqliteStore, secret: &str) -> Result<Option<Token>, StoreError> {
    let hash = secret_hash(secret);
    let row =
        sqlx::query("SELECT id, name, scope, hash, created_at FROM api_tokens WHERE hash = ?")
            .bind(&hash)
            .fetch_optional(&store.read)
            .await?;
    let Some(row) = row else { return Ok(None) };
    // The lookup is by hash, so this only guards against a database that
    // returned a row it should not have; it costs nothing.
    let stored: String = sqlx::Row::try_get(&row, "hash")?;
    if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
        return Ok(None);
    }
    rows::token(&row).map(Some)
}
