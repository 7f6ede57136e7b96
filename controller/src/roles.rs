//! Admin and auditor roles for people: `[roles]` in `controller.toml`
//! names users (`user:EMAIL`) and the provider's groups (`group:NAME`). A
//! signed-in person's session is accepted by the API with the role they
//! hold, as a token of that scope would be.

use serde::Serialize;

use crate::store::{Scope, User};

/// The issuer of the one user a break-glass code signs in
/// (`warren-controller console login-code`): an admin on a controller
/// with or without an identity provider. No provider issues it.
pub const BREAK_GLASS_ISSUER: &str = "warren:break-glass";

/// Who holds a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Principal {
    /// An e-mail address, lowercase.
    User(String),
    /// A group the provider puts people in.
    Group(String),
}

impl From<Principal> for String {
    fn from(p: Principal) -> String {
        match p {
            Principal::User(email) => format!("user:{email}"),
            Principal::Group(group) => format!("group:{group}"),
        }
    }
}

impl Principal {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(email) = text.strip_prefix("user:") {
            return if crate::names::is_email(email) {
                Ok(Principal::User(email.to_ascii_lowercase()))
            } else {
                Err(format!("{text:?}: user: takes an e-mail address"))
            };
        }
        if let Some(group) = text.strip_prefix("group:") {
            return if crate::names::is_label(group) {
                Ok(Principal::Group(group.to_string()))
            } else {
                Err(format!("{text:?}: a group name is a DNS label"))
            };
        }
        Err(format!("{text:?}: name user:EMAIL or group:NAME"))
    }

    fn holds(&self, user: &User) -> bool {
        match self {
            Principal::User(email) => user.email.eq_ignore_ascii_case(email),
            Principal::Group(group) => user.groups.iter().any(|g| g == group),
        }
    }
}

/// The roles people hold, from the controller's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Roles {
    pub admins: Vec<Principal>,
    pub auditors: Vec<Principal>,
}

impl Roles {
    pub fn parse(admins: &[String], auditors: &[String]) -> Result<Self, String> {
        let parse = |list: &[String]| -> Result<Vec<Principal>, String> {
            list.iter().map(|p| Principal::parse(p)).collect()
        };
        Ok(Roles {
            admins: parse(admins)?,
            auditors: parse(auditors)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.admins.is_empty() && self.auditors.is_empty()
    }

    /// What `user` may do through the API: admin beats auditor; a disabled
    /// user holds nothing.
    pub fn scope_of(&self, user: &User) -> Option<Scope> {
        if user.disabled {
            None
        } else if user.issuer == BREAK_GLASS_ISSUER || self.admins.iter().any(|p| p.holds(user)) {
            Some(Scope::Admin)
        } else if self.auditors.iter().any(|p| p.holds(user)) {
            Some(Scope::Auditor)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn user(email: &str, groups: &[&str]) -> User {
        User {
            id: "0123456789abcdef".into(),
            issuer: "http://idp.test".into(),
            subject: email.into(),
            email: email.into(),
            name: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            disabled: false,
            created_at: String::new(),
            last_sign_in: String::new(),
        }
    }

    #[test]
    fn people_and_groups_hold_roles_and_admin_wins() {
        let roles = Roles::parse(
            &["user:Ana@Example.com".into()],
            &["group:security".into(), "user:ana@example.com".into()],
        )
        .unwrap();
        assert_eq!(
            roles.scope_of(&user("ana@example.com", &[])),
            Some(Scope::Admin)
        );
        assert_eq!(
            roles.scope_of(&user("bo@example.com", &["security"])),
            Some(Scope::Auditor)
        );
        assert_eq!(roles.scope_of(&user("eve@example.com", &["ops"])), None);
        let mut gone = user("ana@example.com", &[]);
        gone.disabled = true;
        assert_eq!(roles.scope_of(&gone), None);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "ana@example.com",
            "user:ana",
            "group:Ops!",
            "tag:ci",
            "group:",
        ] {
            assert!(Roles::parse(&[bad.into()], &[]).is_err(), "{bad}");
        }
    }
}
