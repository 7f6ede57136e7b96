//! Sessions of people signed in on the controller's pages: a random
//! secret in a cookie, its hash here, a fixed end and an idle end; and
//! the one-time codes of break-glass sign-in.

use sqlx::Row;

use super::audit::{append, NewEntry};
use super::query;
use super::{new_secret, now, secret_hash, SqlStore};
use crate::store::*;

pub(super) async fn start(
    store: &SqlStore,
    user: &User,
    ttl_secs: i64,
) -> Result<String, StoreError> {
    let secret = new_secret("ws_");
    let (at, now_unix) = now();
    let mut tx = store.begin_write().await?;
    // Ended sessions go as new ones start: the table stays small.
    query("DELETE FROM sessions WHERE expires_unix <= ?")
        .bind(now_unix)
        .execute(&mut *tx)
        .await?;
    query(
        "INSERT INTO sessions (secret_hash, user_id, created_at, expires_unix, last_used_unix)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(secret_hash(&secret))
    .bind(&user.id)
    .bind(&at)
    .bind(now_unix.saturating_add(ttl_secs))
    .bind(now_unix)
    .execute(&mut *tx)
    .await?;
    append(
        &mut tx,
        NewEntry {
            actor: &Actor::user(&user.email),
            action: AuditAction::UserSessionStart,
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

/// How stale a session's last use may be before it is written again:
/// a page view is a read, not a write, most of the time.
const TOUCH_EVERY_SECS: i64 = 60;

/// The user of a live session (before its end, used within `idle_secs`);
/// `None` for an unknown or ended one, or a disabled user's.
pub(super) async fn find(
    store: &SqlStore,
    secret: &str,
    idle_secs: i64,
) -> Result<Option<User>, StoreError> {
    let (_, now_unix) = now();
    let hash = secret_hash(secret);
    let row = query(
        "SELECT user_id, last_used_unix FROM sessions
         WHERE secret_hash = ? AND expires_unix > ? AND last_used_unix > ?",
    )
    .bind(&hash)
    .bind(now_unix)
    .bind(now_unix.saturating_sub(idle_secs))
    .fetch_optional(&store.read)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: String = row.try_get("user_id")?;
    let last_used: i64 = row.try_get("last_used_unix")?;
    if now_unix.saturating_sub(last_used) >= TOUCH_EVERY_SECS {
        let mut tx = store.begin_write().await?;
        query("UPDATE sessions SET last_used_unix = ? WHERE secret_hash = ?")
            .bind(now_unix)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let user = super::users::by_id(&store.read, &id).await?;
    Ok(user.filter(|u| !u.disabled))
}

/// A one-time break-glass code, valid for `ttl_secs`; only its hash is
/// kept. Audited as `console.login_code` by `system` (the operator on the
/// server).
pub(super) async fn new_login_code(store: &SqlStore, ttl_secs: i64) -> Result<String, StoreError> {
    let code = new_secret("wc_");
    let (at, now_unix) = now();
    let expires = now_unix.saturating_add(ttl_secs);
    let mut tx = store.begin_write().await?;
    query("DELETE FROM console_codes WHERE expires_unix <= ?")
        .bind(now_unix)
        .execute(&mut *tx)
        .await?;
    query("INSERT INTO console_codes (code_hash, created_at, expires_unix) VALUES (?, ?, ?)")
        .bind(secret_hash(&code))
        .bind(&at)
        .bind(expires)
        .execute(&mut *tx)
        .await?;
    append(
        &mut tx,
        NewEntry {
            actor: &Actor::system(),
            action: AuditAction::ConsoleLoginCode,
            network_id: None,
            target: None,
            before: None,
            after: Some(serde_json::json!({ "ttl_secs": ttl_secs })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(code)
}

/// Uses up a live code: true once, false for an unknown, used or expired
/// one.
pub(super) async fn take_login_code(store: &SqlStore, code: &str) -> Result<bool, StoreError> {
    let (_, now_unix) = now();
    let mut tx = store.begin_write().await?;
    let taken = query("DELETE FROM console_codes WHERE code_hash = ? AND expires_unix > ?")
        .bind(secret_hash(code))
        .bind(now_unix)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(taken == 1)
}

pub(super) async fn end(store: &SqlStore, secret: &str) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    query("DELETE FROM sessions WHERE secret_hash = ?")
        .bind(secret_hash(secret))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
