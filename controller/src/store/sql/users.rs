//! Users and the devices they sign in, each change audited in its own
//! transaction.

use async_trait::async_trait;
use rand_core::RngCore;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::assign::assign;
use super::audit::{append, NewEntry};
use super::members::{audit_change, get as get_member};
use super::networks::{bump_version, get as get_network};
use super::WriteTx;
use super::{now, SqlStore};
use super::{query, query_as};
use crate::store::*;

const USER_COLUMNS: &str =
    "id, issuer, subject, email, name, groups, disabled, created_at, last_sign_in";

fn user(row: &AnyRow) -> Result<User, StoreError> {
    let groups: String = row.try_get("groups")?;
    Ok(User {
        id: row.try_get("id")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        groups: serde_json::from_str(&groups)
            .map_err(|_| StoreError::Corrupt(format!("bad groups {groups:?}")))?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        last_sign_in: row.try_get("last_sign_in")?,
    })
}

/// The one user with this ID or e-mail address.
async fn named(conn: &mut sqlx::AnyConnection, who: &str) -> Result<User, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ? OR email = ?");
    let found = query(sql).bind(who).bind(who).fetch_all(&mut *conn).await?;
    match found.as_slice() {
        [one] => user(one),
        [] => Err(StoreError::NotFound("user")),
        _ => Err(StoreError::Conflict(format!(
            "more than one user has the address {who}: name one by its ID"
        ))),
    }
}

/// A change to `user_id` changes every network where they own devices:
/// bumps each one's netmap version and returns them.
pub(super) async fn bump_owned_networks(
    conn: &mut WriteTx,
    user_id: &str,
) -> Result<Vec<NetworkId>, StoreError> {
    let rows: Vec<(String,)> = query_as(
        "SELECT DISTINCT network_id FROM members WHERE owner_user_id = ? ORDER BY network_id",
    )
    .bind(user_id)
    .fetch_all(&mut **conn)
    .await?;
    let networks = rows
        .iter()
        .map(|(id,)| super::parse_stored("network id", id))
        .collect::<Result<Vec<NetworkId>, _>>()?;
    for net in &networks {
        bump_version(conn, *net).await?;
    }
    Ok(networks)
}

/// The user with this ID, if there is one.
pub(super) async fn by_id<'e>(
    exec: impl sqlx::AnyExecutor<'e>,
    id: &str,
) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
    let row = query(sql).bind(id).fetch_optional(exec).await?;
    row.as_ref().map(user).transpose()
}

fn user_json(user: &User) -> serde_json::Value {
    serde_json::json!({
        "id": user.id,
        "issuer": user.issuer,
        "email": user.email,
        "name": user.name,
        "groups": user.groups,
        "disabled": user.disabled,
    })
}

fn new_user_id() -> String {
    let mut bytes = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[async_trait]
impl UserStore for SqlStore {
    async fn sign_in_user(&self, person: &Person) -> Result<User, StoreError> {
        let (at, _) = now();
        let groups = serde_json::to_string(&person.groups)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE issuer = ? AND subject = ?");
        let before = query(sql)
            .bind(&person.issuer)
            .bind(&person.subject)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(user)
            .transpose()?;
        if let Some(found) = &before {
            if found.disabled {
                return Ok(found.clone());
            }
        }
        let id = before
            .as_ref()
            .map_or_else(new_user_id, |found| found.id.clone());
        query(
            "INSERT INTO users (id, issuer, subject, email, name, groups, created_at, last_sign_in)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (issuer, subject) DO UPDATE SET
               email = excluded.email, name = excluded.name, groups = excluded.groups,
               last_sign_in = excluded.last_sign_in",
        )
        .bind(&id)
        .bind(&person.issuer)
        .bind(&person.subject)
        .bind(&person.email)
        .bind(&person.name)
        .bind(&groups)
        .bind(&at)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let after = user(&query(sql).bind(&id).fetch_one(&mut *tx).await?)?;
        append(
            &mut tx,
            NewEntry {
                actor: &Actor::user(&after.email),
                action: AuditAction::UserSignIn,
                network_id: None,
                target: Some(after.id.clone()),
                before: before.as_ref().map(user_json),
                after: Some(user_json(&after)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn sign_in_failed(
        &self,
        email: Option<&str>,
        network: Option<NetworkId>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let actor = email.map_or_else(Actor::system, Actor::user);
        let mut tx = self.begin_write().await?;
        append(
            &mut tx,
            NewEntry {
                actor: &actor,
                action: AuditAction::UserSignInFailed,
                network_id: network,
                target: None,
                before: None,
                after: Some(serde_json::json!({ "reason": reason })),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn confirm_device(
        &self,
        user: &User,
        net: NetworkId,
        node: NodeId,
    ) -> Result<Member, StoreError> {
        let mut tx = self.begin_write().await?;
        let before = get_member(&mut *tx, net, node)
            .await?
            .ok_or(StoreError::NotFound("member"))?;
        match (before.state, &before.owner) {
            (MemberState::Pending, None) => {}
            // Signing in again: an expired device, or one whose sign-in
            // the owner renews before it runs out.
            (MemberState::Pending | MemberState::Authorized, Some(owner))
                if owner.eq_ignore_ascii_case(&user.email) => {}
            (MemberState::Pending | MemberState::Authorized, Some(owner)) => {
                return Err(StoreError::Conflict(format!(
                    "the device belongs to {owner}: only they can sign it in again"
                )))
            }
            (MemberState::Authorized, None) => return Err(StoreError::Conflict(
                "the device joined with a key and carries tags, not an owner: it needs no sign-in"
                    .into(),
            )),
            (MemberState::Revoked, _) => {
                return Err(StoreError::Conflict("the device is revoked".into()))
            }
        }
        let network = get_network(&mut *tx, net)
            .await?
            .ok_or(StoreError::NotFound("network"))?;
        let mut after = assign(&mut tx, &network, &before).await?;
        let (_, now_unix) = now();
        let expires =
            now_unix.saturating_add(i64::try_from(network.device_expiry_secs).unwrap_or(i64::MAX));
        query(
            "UPDATE members SET state = ?, owner_user_id = ?, expires_unix = ?, expiry_noted = 0 \
             WHERE network_id = ? AND node_id = ?",
        )
        .bind(MemberState::Authorized.as_int())
        .bind(&user.id)
        .bind(expires)
        .bind(net.to_string())
        .bind(node.to_string())
        .execute(&mut *tx)
        .await?;
        bump_version(&mut tx, net).await?;
        after.state = MemberState::Authorized;
        after.authorized = true;
        after.owner = Some(user.email.clone());
        after.expires_at = Some(super::rows::unix_rfc3339(expires)?);
        after.expired = false;
        audit_change(
            &mut tx,
            &Actor::user(&user.email),
            AuditAction::MemberSignIn,
            &before,
            &after,
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn set_user_disabled(
        &self,
        actor: &Actor,
        who: &str,
        disabled: bool,
    ) -> Result<(User, Vec<NetworkId>), StoreError> {
        let mut tx = self.begin_write().await?;
        let before = named(&mut tx, who).await?;
        if before.disabled == disabled {
            return Ok((before, Vec::new()));
        }
        query("UPDATE users SET disabled = ? WHERE id = ?")
            .bind(i64::from(disabled))
            .bind(&before.id)
            .execute(&mut *tx)
            .await?;
        let networks = bump_owned_networks(&mut tx, &before.id).await?;
        let after = User {
            disabled,
            ..before.clone()
        };
        append(
            &mut tx,
            NewEntry {
                actor,
                action: if disabled {
                    AuditAction::UserDisable
                } else {
                    AuditAction::UserEnable
                },
                network_id: None,
                target: Some(after.id.clone()),
                before: Some(user_json(&before)),
                after: Some(user_json(&after)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok((after, networks))
    }

    async fn delete_user(
        &self,
        actor: &Actor,
        who: &str,
    ) -> Result<(User, Vec<NetworkId>), StoreError> {
        let mut tx = self.begin_write().await?;
        let before = named(&mut tx, who).await?;
        let devices: Vec<(String, String, Option<String>)> = query_as(
            "SELECT network_id, node_id, name FROM members WHERE owner_user_id = ? \
             ORDER BY network_id, node_id",
        )
        .bind(&before.id)
        .fetch_all(&mut *tx)
        .await?;
        let networks = bump_owned_networks(&mut tx, &before.id).await?;
        let mut routes_before = Vec::new();
        for net in &networks {
            routes_before.push((*net, super::routes::list_in(&mut *tx, *net).await?));
        }
        query("DELETE FROM members WHERE owner_user_id = ?")
            .bind(&before.id)
            .execute(&mut *tx)
            .await?;
        // Sessions go with the user (ON DELETE CASCADE).
        query("DELETE FROM users WHERE id = ?")
            .bind(&before.id)
            .execute(&mut *tx)
            .await?;
        let gone: Vec<serde_json::Value> = devices
            .iter()
            .map(|(net, node, name)| serde_json::json!({ "network_id": net, "node_id": node, "name": name }))
            .collect();
        append(
            &mut tx,
            NewEntry {
                actor,
                action: AuditAction::UserDelete,
                network_id: None,
                target: Some(before.id.clone()),
                before: Some(user_json(&before)),
                after: Some(serde_json::json!({ "devices_deleted": gone })),
            },
        )
        .await?;
        // The devices' routes went with them, and so do the mapped
        // prefixes no other router of their site keeps.
        for (net, routes) in &routes_before {
            super::sites::reconcile(&mut tx, actor, *net, None, routes).await?;
        }
        tx.commit().await?;
        Ok((before, networks))
    }

    async fn keep_provider_token(
        &self,
        user_id: &str,
        token: Option<&str>,
    ) -> Result<(), StoreError> {
        super::recheck::keep_token(self, user_id, token).await
    }

    async fn users_to_recheck(
        &self,
        checked_before_unix: i64,
    ) -> Result<Vec<(User, String)>, StoreError> {
        super::recheck::due(self, checked_before_unix).await
    }

    async fn recheck_passed(
        &self,
        user: &User,
        person: &Person,
        token: Option<&str>,
    ) -> Result<Vec<NetworkId>, StoreError> {
        super::recheck::passed(self, user, person, token).await
    }

    async fn removed_at_provider(
        &self,
        user: &User,
        reason: &str,
    ) -> Result<Vec<NetworkId>, StoreError> {
        super::recheck::removed(self, user, reason).await
    }

    async fn start_session(&self, user: &User, ttl_secs: i64) -> Result<String, StoreError> {
        super::sessions::start(self, user, ttl_secs).await
    }

    async fn session_user(&self, secret: &str, idle_secs: i64) -> Result<Option<User>, StoreError> {
        super::sessions::find(self, secret, idle_secs).await
    }

    async fn new_login_code(&self, ttl_secs: i64) -> Result<String, StoreError> {
        super::sessions::new_login_code(self, ttl_secs).await
    }

    async fn take_login_code(&self, code: &str) -> Result<bool, StoreError> {
        super::sessions::take_login_code(self, code).await
    }

    async fn end_session(&self, secret: &str) -> Result<(), StoreError> {
        super::sessions::end(self, secret).await
    }

    async fn expire_due_devices(&self) -> Result<Vec<Member>, StoreError> {
        super::expiry::note_due(self).await
    }

    async fn expire_device(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
    ) -> Result<Member, StoreError> {
        super::expiry::expire_now(self, actor, net, node).await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY email, id");
        let found = query(sql).fetch_all(&self.read).await?;
        found.iter().map(user).collect()
    }
}
