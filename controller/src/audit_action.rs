//! The actions the audit log records: one variant per kind of change, the
//! name stored for it, and the list `docs/controller.md` is checked against.

/// Declares [`AuditAction`], its stored names and [`AuditAction::ALL`] from
/// one list, so no action can be written that the list (and with it the
/// docs' test) does not know.
macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What an audit entry says happened (its `action`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
        }

        impl AuditAction {
            /// Every action, in the order the docs list them.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The name stored in the log and matched by `action` filters.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)*
                }
            }
        }
    };
}

audit_actions! {
    /// An admin made a network.
    NetworkCreate => "network.create",
    /// An admin changed a network's settings.
    NetworkUpdate => "network.update",
    /// An admin deleted a network.
    NetworkDelete => "network.delete",
    /// A node asked to join (pending, or admitted by a pre-auth key).
    MemberJoin => "member.join",
    /// A member was authorized: by an admin, or by a key on a later join.
    MemberAuthorize => "member.authorize",
    /// An admin put a member back to pending.
    MemberPending => "member.pending",
    /// An admin revoked a member.
    MemberRevoke => "member.revoke",
    /// An admin renamed a member.
    MemberRename => "member.rename",
    /// An admin deleted a member.
    MemberDelete => "member.delete",
    /// A node left its network (`warren leave`).
    MemberLeave => "member.leave",
    /// A person signed a device in with their provider account.
    MemberSignIn => "member.sign_in",
    /// A device's sign-in ran out.
    MemberExpire => "member.expire",
    /// A tag was put on a member.
    MemberTag => "member.tag",
    /// A tag was taken off a member.
    MemberUntag => "member.untag",
    /// A member's control connection came up.
    MemberOnline => "member.online",
    /// A member's control connection went away.
    MemberOffline => "member.offline",
    /// A member reported new endpoints.
    MemberEndpoints => "member.endpoints",
    /// A member published a new list of services.
    MemberServices => "member.services",
    /// An admin made a pre-auth key.
    KeyCreate => "key.create",
    /// A pre-auth key admitted a node.
    KeyUse => "key.use",
    /// An admin deleted a pre-auth key.
    KeyDelete => "key.delete",
    /// An API token was made.
    TokenCreate => "token.create",
    /// An API token was revoked.
    TokenRevoke => "token.revoke",
    /// A member advertised new routes.
    RouteAdvertise => "route.advertise",
    /// A route was approved, by an admin or an auto-approval rule.
    RouteApprove => "route.approve",
    /// An admin withdrew a route's approval.
    RouteUnapprove => "route.unapprove",
    /// An admin added a route auto-approval rule.
    RouteAutoApproverAdd => "route.auto_approver.add",
    /// An admin removed a route auto-approval rule.
    RouteAutoApproverRemove => "route.auto_approver.remove",
    /// A site's route, overlapping another site's, got a mapped prefix.
    SiteMappingAllocate => "site.mapping.allocate",
    /// A site's mapped prefix was freed: its route is no longer approved.
    SiteMappingRelease => "site.mapping.release",
    /// A new version of the network's access policy was set.
    PolicySet => "policy.set",
    /// A temporary grant was added.
    GrantAdd => "grant.add",
    /// A grant was revoked before its end.
    GrantRevoke => "grant.revoke",
    /// A grant's time ran out.
    GrantEnd => "grant.end",
    /// A member first sent traffic under a grant.
    GrantUse => "grant.use",
    /// A person asked for a grant.
    GrantRequest => "grant.request",
    /// A grant request was approved (the grant is added with it).
    GrantRequestApprove => "grant.request.approve",
    /// A grant request was denied.
    GrantRequestDeny => "grant.request.deny",
    /// A person withdrew their grant request.
    GrantRequestWithdraw => "grant.request.withdraw",
    /// A person signed in with their provider account.
    UserSignIn => "user.sign_in",
    /// A sign-in was refused.
    UserSignInFailed => "user.sign_in_failed",
    /// A console session began.
    UserSessionStart => "user.session_start",
    /// The provider changed a person's email, name or groups.
    UserUpdate => "user.update",
    /// An admin disabled a person.
    UserDisable => "user.disable",
    /// An admin enabled a person again.
    UserEnable => "user.enable",
    /// An admin deleted a person and their devices.
    UserDelete => "user.delete",
    /// The provider no longer knows a person; they were disabled.
    UserRemovedAtProvider => "user.removed_at_provider",
    /// A one-time console login code was made.
    ConsoleLoginCode => "console.login_code",
}

impl AuditAction {
    /// Events a node causes by itself, as often as it likes: these spend
    /// the node's audit budget instead of always writing an entry.
    pub fn is_node_event(self) -> bool {
        matches!(
            self,
            AuditAction::MemberOnline
                | AuditAction::MemberOffline
                | AuditAction::MemberEndpoints
                | AuditAction::MemberServices
                | AuditAction::RouteAdvertise
                | AuditAction::SiteMappingAllocate
                | AuditAction::SiteMappingRelease
        )
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::AuditAction;
    use std::collections::BTreeSet;

    /// The operator's docs, as the docs site ships them.
    const DOC: &str = include_str!("../../docs/controller.md");
    /// The heading of the table that lists every action.
    const SECTION: &str = "### Audit actions";

    /// The code spans in the first column of the actions table (a row may
    /// name several: `` `member.tag`, `member.untag` ``).
    fn documented() -> Vec<String> {
        let Some((_, section)) = DOC.split_once(SECTION) else {
            return Vec::new();
        };
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('|').nth(1))
            .flat_map(|cell| {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_docs_list_every_action_the_log_writes_and_no_other() {
        let documented = documented();
        assert!(
            !documented.is_empty(),
            "docs/controller.md has no table under {SECTION:?}"
        );
        let written: BTreeSet<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        let listed: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
        let missing: Vec<_> = written.difference(&listed).collect();
        let stale: Vec<_> = listed.difference(&written).collect();
        assert!(
            missing.is_empty(),
            "written but not in docs/controller.md's {SECTION:?}: {missing:?}"
        );
        assert!(
            stale.is_empty(),
            "listed in docs/controller.md but never written: {stale:?}"
        );
        assert_eq!(documented.len(), listed.len(), "an action is listed twice");
    }

    #[test]
    fn names_are_unique_and_shaped_like_resource_dot_verb() {
        let names: BTreeSet<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), AuditAction::ALL.len());
        for name in names {
            assert!(
                name.contains('.')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
                "{name}"
            );
        }
    }
}
