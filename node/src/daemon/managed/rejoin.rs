//! `warren join` of a network already joined: which of the flags given
//! change its settings, and which it refuses, saying why. Nothing given is
//! ignored in silence.

use warren_proto::{NetworkId, NodeId};

use crate::state::JoinedNetwork;

/// What a join asked for, checked and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub controller: String,
    /// An invite code's addresses, `controller` first; empty without one.
    pub controllers: Vec<String>,
    /// `None`: trust on first use, or keep the pin held.
    pub fingerprint: Option<String>,
    /// `None`: keep the name held (the host name on a first join).
    pub name: Option<String>,
    pub preauth_key: Option<String>,
    pub allow_zones: Vec<String>,
}

/// How far the controller has taken this node in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The controller has not admitted it (never answered, or refused it):
    /// every setting may change, as on a first join.
    Unsettled,
    /// A member waiting for approval: the controller holds its name.
    Pending,
    /// An authorized member (up, stale, expired or down).
    Member,
}

/// The settings after the join, and one line per change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejoin {
    pub config: JoinedNetwork,
    pub updated: Vec<String>,
    /// Whether the control connection must be made anew (another
    /// controller or another pinned certificate).
    pub reconnect: bool,
}

/// Applies `asked` to the settings of network `config`, or says why not.
pub fn plan(
    config: &JoinedNetwork,
    standing: Standing,
    node: NodeId,
    asked: &Asked,
) -> Result<Rejoin, String> {
    let id: NetworkId = config.network_id;
    let mut new = config.clone();
    let mut updated = Vec::new();
    let mut reconnect = false;
    let settled = standing != Standing::Unsettled;
    if asked.controller != config.controller {
        if settled {
            return Err(format!(
                "network {id} is joined through the controller at {}, which knows this node; \
                 a join cannot move it to {}. `warren leave {id}` (giving up the membership \
                 and address) and join again to use the other controller",
                config.controller, asked.controller
            ));
        }
        updated.push(format!(
            "controller {} -> {}",
            config.controller, asked.controller
        ));
        new.controller = asked.controller.clone();
        new.controllers = asked.controllers.clone();
        reconnect = true;
    } else if !asked.controllers.is_empty() && asked.controllers != config.controllers {
        // The same controller, with the replicas a newer invite lists.
        updated.push(format!(
            "controller addresses -> {}",
            asked.controllers.join(", ")
        ));
        new.controllers = asked.controllers.clone();
    }
    if let Some(fp) = asked
        .fingerprint
        .as_ref()
        .filter(|fp| config.fingerprint.as_ref() != Some(*fp))
    {
        if let (true, Some(pinned)) = (settled, &config.fingerprint) {
            return Err(format!(
                "network {id} pins the controller certificate {pinned}, and the fingerprint \
                 given is {fp}. If the controller's certificate really changed, `warren leave \
                 {id}` and join again; otherwise correct --fingerprint"
            ));
        }
        updated.push(format!("fingerprint -> {fp}"));
        new.fingerprint = Some(fp.clone());
        reconnect = true;
    }
    if let Some(name) = asked.name.as_ref().filter(|n| **n != config.name) {
        if settled {
            return Err(format!(
                "this node is known to the controller of {id} as {:?}; once it is known, its \
                 name is the controller's to change: an admin runs \
                 `warren-controller member rename {id} {node} {name}`",
                config.name
            ));
        }
        updated.push(format!("name {:?} -> {name:?}", config.name));
        new.name = name.clone();
    }
    if let Some(key) = &asked.preauth_key {
        if standing == Standing::Member {
            updated.push("pre-auth key not used: this node is a member already".to_owned());
        } else if config.preauth_key.as_ref() != Some(key) {
            updated.push("pre-auth key: the new one is tried".to_owned());
            new.preauth_key = Some(key.clone());
        }
    }
    let added: Vec<&String> = asked
        .allow_zones
        .iter()
        .filter(|z| !config.allow_zones.contains(z))
        .collect();
    if !added.is_empty() {
        let names: Vec<&str> = added.iter().map(|z| z.as_str()).collect();
        updated.push(format!("allowed zones + {}", names.join(", ")));
        new.allow_zones.extend(added.into_iter().cloned());
    }
    Ok(Rejoin {
        config: new,
        updated,
        reconnect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JoinedNetwork {
        JoinedNetwork {
            network_id: "8056c2e21c000001".parse().unwrap(),
            controller: "192.0.2.10:7443".into(),
            controllers: vec![],
            fingerprint: Some("ab".repeat(32)),
            name: "laptop".into(),
            preauth_key: None,
            interface: "warren0".into(),
            listen_port: 51820,
            allow_zones: vec![],
            down: false,
        }
    }

    fn same() -> Asked {
        Asked {
            controller: "192.0.2.10:7443".into(),
            controllers: vec![],
            fingerprint: Some("ab".repeat(32)),
            name: Some("laptop".into()),
            preauth_key: None,
            allow_zones: vec![],
        }
    }

    fn node() -> NodeId {
        NodeId::from_key(&warren_proto::NodePrivateKey::generate().public_key())
    }

    #[test]
    fn the_same_join_again_changes_nothing() {
        for standing in [Standing::Unsettled, Standing::Pending, Standing::Member] {
            let plan = plan(&config(), standing, node(), &same()).unwrap();
            assert_eq!(plan.config, config());
            assert!(plan.updated.is_empty(), "{:?}", plan.updated);
            assert!(!plan.reconnect);
        }
        // Without --fingerprint (first use) the pin held stays.
        let asked = Asked {
            fingerprint: None,
            name: None,
            ..same()
        };
        let plan = plan(&config(), Standing::Member, node(), &asked).unwrap();
        assert_eq!(plan.config, config());
    }

    #[test]
    fn a_join_the_controller_never_admitted_takes_every_correction() {
        let asked = Asked {
            controller: "192.0.2.11:7443".into(),
            controllers: vec!["192.0.2.11:7443".into(), "192.0.2.12:7443".into()],
            fingerprint: Some("cd".repeat(32)),
            name: Some("desk".into()),
            preauth_key: Some("wk_new".into()),
            allow_zones: vec!["corp.example".into()],
        };
        let plan = plan(&config(), Standing::Unsettled, node(), &asked).unwrap();
        assert!(plan.reconnect);
        assert_eq!(plan.config.controller, "192.0.2.11:7443");
        assert_eq!(plan.config.controllers.len(), 2);
        assert_eq!(plan.config.fingerprint, Some("cd".repeat(32)));
        assert_eq!(plan.config.name, "desk");
        assert_eq!(plan.config.preauth_key.as_deref(), Some("wk_new"));
        assert_eq!(plan.config.allow_zones, vec!["corp.example".to_owned()]);
        assert_eq!(plan.updated.len(), 5, "{:?}", plan.updated);
        // Interface and port stay: the slot is the network's.
        assert_eq!(plan.config.interface, "warren0");
    }

    #[test]
    fn a_member_refuses_what_the_controller_holds_and_says_why() {
        let node = node();
        for standing in [Standing::Pending, Standing::Member] {
            let moved = Asked {
                controller: "192.0.2.11:7443".into(),
                ..same()
            };
            let why = plan(&config(), standing, node, &moved).unwrap_err();
            assert!(why.contains("warren leave 8056c2e21c000001"), "{why}");
            let repinned = Asked {
                fingerprint: Some("cd".repeat(32)),
                ..same()
            };
            let why = plan(&config(), standing, node, &repinned).unwrap_err();
            assert!(why.contains(&"cd".repeat(32)), "{why}");
            let renamed = Asked {
                name: Some("desk".into()),
                ..same()
            };
            let why = plan(&config(), standing, node, &renamed).unwrap_err();
            assert!(
                why.contains(&format!(
                    "warren-controller member rename 8056c2e21c000001 {node} desk"
                )),
                "{why}"
            );
        }
    }

    #[test]
    fn a_key_for_a_member_is_said_to_be_unused_and_zones_are_added() {
        let asked = Asked {
            preauth_key: Some("wk_spent".into()),
            allow_zones: vec!["corp.example".into()],
            ..same()
        };
        let plan = plan(&config(), Standing::Member, node(), &asked).unwrap();
        assert_eq!(plan.config.preauth_key, None);
        assert_eq!(plan.config.allow_zones, vec!["corp.example".to_owned()]);
        assert!(plan.updated[0].contains("not used"), "{:?}", plan.updated);
        assert!(!plan.reconnect);
        // Pending: the key is tried.
        let pending = super::plan(&config(), Standing::Pending, node(), &asked).unwrap();
        assert_eq!(pending.config.preauth_key.as_deref(), Some("wk_spent"));
    }

    #[test]
    fn a_newer_invite_of_the_same_controller_updates_its_addresses() {
        let listed = vec!["192.0.2.10:7443".to_owned(), "192.0.2.12:7443".to_owned()];
        let asked = Asked {
            controllers: listed.clone(),
            ..same()
        };
        for standing in [Standing::Unsettled, Standing::Pending, Standing::Member] {
            let plan = plan(&config(), standing, node(), &asked).unwrap();
            assert_eq!(plan.config.controllers, listed);
            assert_eq!(
                plan.updated,
                vec!["controller addresses -> 192.0.2.10:7443, 192.0.2.12:7443".to_owned()]
            );
            assert!(!plan.reconnect);
        }
        // A join by --controller alone keeps the list.
        let held = JoinedNetwork {
            controllers: listed.clone(),
            ..config()
        };
        let plan = plan(&held, Standing::Member, node(), &same()).unwrap();
        assert_eq!(plan.config.controllers, listed);
        assert!(plan.updated.is_empty());
    }
}
