//! Sessions of people signed in on the controller's pages: a random
//! secret in a cookie, its hash here, a fixed end.

use sqlx::Row;

use super::audit::{append, NewEntry};
use super::{new_secret, now, secret_hash, SqliteStore};
use crate::store::*;

pub(super) async fn start(
    store: &SqliteStore,
    user: &User,
    ttl_secs: i64,
) -> Result<String, StoreError> {
    let secret = new_secret("ws_");
    let (at, now_unix) = now();
    let mut tx = store.begin_write().await?;
    // Ended sessions go as new ones start: the table stays small.
    sqlx::query("DELETE FROM sessions WHERE expires_unix <= ?")
        .bind(now_unix)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (secret_hash, user_id, created_at, expires_unix) VALUES (?, ?, ?, ?)",
    )
    .bind(secret_hash(&secret))
    .bind(&user.id)
    .bind(&at)
    .bind(now_unix.saturating_add(ttl_secs))
    .execute(&mut *tx)
    .await?;
    append(
        &mut tx,
        NewEntry {
            actor: &Actor::user(&user.email),
            action: "user.session_start",
            network_id: None,
            target: Some(user.id.clone()),
            before: None,
            after: Some(serde_json::json!({ "ttl_secs": ttl_secs })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(secret)
}

/// The user of a live session; `None` for an unknown or ended one, or a
/// disabled user's.
pub(super) async fn find(store: &SqliteStore, secret: &str) -> Result<Option<User>, StoreError> {
    let (_, now_unix) = now();
    let row =
        sqlx::query("SELECT user_id FROM sessions WHERE secret_hash = ? AND expires_unix > ?")
            .bind(secret_hash(secret))
            .bind(now_unix)
            .fetch_optional(&store.read)
            .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: String = row.try_get("user_id")?;
    let user = super::users::by_id(&store.read, &id).await?;
    Ok(user.filter(|u| !u.disabled))
}

pub(super) async fn end(store: &SqliteStore, secret: &str) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    sqlx::query("DELETE FROM sessions WHERE secret_hash = ?")
        .bind(secret_hash(secret))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
