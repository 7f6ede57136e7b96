//! People: users who sign devices in through the OpenID provider.

use async_trait::async_trait;
use serde::Serialize;
use warren_proto::{NetworkId, NodeId};

use super::{Member, StoreError};

/// Who the provider said signed in: its (issuer, subject) is the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    pub created_at: String,
    pub last_sign_in: String,
}

/// Storage of users. Every change writes its audit entry in the same
/// transaction, naming the user (`user:EMAIL`) as the actor.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Records a sign-in: the user is made on the first, and its e-mail
    /// address, name and groups follow the provider on every later one.
    /// Audited as `user.sign_in`. A disabled user is returned as it is
    /// (and not updated): the caller refuses it.
    async fn sign_in_user(&self, person: &Person) -> Result<User, StoreError>;

    /// Audits a sign-in that failed (`user.sign_in_failed`): at the
    /// provider, at our checks, or for a disabled user.
    async fn sign_in_failed(
        &self,
        email: Option<&str>,
        network: Option<NetworkId>,
        reason: &str,
    ) -> Result<(), StoreError>;

    /// Authorizes the pending member `node` of `net` as `user`'s device:
    /// it gets its name and address, `user` as its owner, and a sign-in
    /// that runs out after the network's device expiry. Its owner may sign
    /// it in again, expired or not, which starts the period anew. Audited
    /// as `member.sign_in`. `Conflict` for a device someone else owns, one
    /// joined with a key, or a revoked one.
    async fn confirm_device(
        &self,
        user: &User,
        net: NetworkId,
        node: NodeId,
    ) -> Result<Member, StoreError>;

    async fn list_users(&self) -> Result<Vec<User>, StoreError>;

    /// Deletes the user with this ID or e-mail address, with every device
    /// they signed in (gone from every network: peers drop them at once)
    /// and their sessions. Audited as `user.delete`, listing the devices.
    /// Signing in again later makes a new user, with no devices. Returns
    /// the user as it was and the networks whose netmaps changed.
    async fn delete_user(
        &self,
        actor: &super::Actor,
        user: &str,
    ) -> Result<(User, Vec<NetworkId>), StoreError>;

    /// Keeps what the provider gave to ask about this person again (a
    /// refresh token, or GitHub's access token); `None` forgets it.
    async fn keep_provider_token(
        &self,
        user_id: &str,
        token: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Enabled users with a kept token, last asked about at or before
    /// `checked_before_unix` (or never), with that token.
    async fn users_to_recheck(
        &self,
        checked_before_unix: i64,
    ) -> Result<Vec<(User, String)>, StoreError>;

    /// The provider still knows `user` as `person`: their e-mail address,
    /// name and groups follow it (audited as `user.update` when they
    /// change), a rotated token replaces the kept one. Returns the networks
    /// whose netmaps changed (groups decide access).
    async fn recheck_passed(
        &self,
        user: &User,
        person: &Person,
        token: Option<&str>,
    ) -> Result<Vec<NetworkId>, StoreError>;

    /// The provider no longer knows `user`: disabled, their devices cut off
    /// everywhere, audited as `user.removed_at_provider` with the reason.
    /// Returns the networks whose netmaps changed.
    async fn removed_at_provider(
        &self,
        user: &User,
        reason: &str,
    ) -> Result<Vec<NetworkId>, StoreError>;

    /// Starts a session for `user` on the controller's pages, ending in
    /// `ttl_secs`; returns its secret (kept by the browser in a cookie;
    /// only its hash is stored). Audited as `user.session_start`.
    async fn start_session(&self, user: &User, ttl_secs: i64) -> Result<String, StoreError>;

    /// The user of a live session: before its end and used within the
    /// last `idle_secs`. `None` for an unknown or ended session, or a
    /// disabled user's.
    async fn session_user(&self, secret: &str, idle_secs: i64) -> Result<Option<User>, StoreError>;

    /// A one-time break-glass sign-in code for the console, valid for
    /// `ttl_secs` (audited as `console.login_code`).
    async fn new_login_code(&self, ttl_secs: i64) -> Result<String, StoreError>;

    /// Uses up a break-glass code: true once for a live one.
    async fn take_login_code(&self, code: &str) -> Result<bool, StoreError>;

    /// Ends a session (signing out); unknown secrets are ignored.
    async fn end_session(&self, secret: &str) -> Result<(), StoreError>;

    /// Notes every device whose sign-in ran out (audited `member.expire`,
    /// by `system`): from then on it reads as pending, and expired, until
    /// its owner signs it in again. Returns those members.
    async fn expire_due_devices(&self) -> Result<Vec<Member>, StoreError>;

    /// Ends a device's sign-in now (audited `member.expire`, by `actor`).
    /// `Conflict` for a member without an owner, or one not authorized.
    async fn expire_device(
        &self,
        actor: &super::Actor,
        net: NetworkId,
        node: NodeId,
    ) -> Result<Member, StoreError>;

    /// Disables (or enables again) the user with this ID or e-mail
    /// address. A disabled user's devices read as revoked everywhere, so
    /// they leave every peer's netmap; enabling them again brings them
    /// back. Audited as `user.disable` or `user.enable`. Returns the user
    /// and the networks whose netmaps changed.
    async fn set_user_disabled(
        &self,
        actor: &super::Actor,
        user: &str,
        disabled: bool,
    ) -> Result<(User, Vec<NetworkId>), StoreError>;
}
