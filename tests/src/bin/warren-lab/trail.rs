//! The audit trail of what the demo did: the controller's timeline of the
//! network, and a check that every step the demo took is in it.

use warren_lab::routes_lab::RoutesLab;

/// What the demo did, as audit actions, and how many entries of each at
/// least: the network and its key, three joins admitted by the key, a
/// published service, and a route advertised and approved.
const STEPS: [(&str, usize); 7] = [
    ("network.create", 1),
    ("key.create", 1),
    ("member.join", 3),
    ("key.use", 3),
    ("member.services", 1),
    ("route.advertise", 1),
    ("route.approve", 1),
];

/// Prints `audit --network NET` as people read it and checks the steps.
pub fn show(world: &RoutesLab, net: &str, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let timeline = world
        .admin(["audit", "--network", net])
        .map_err(anyhow::Error::msg)?;
    print!("{timeline}");
    let entries = world.controller.audit(net)?;
    let mut missing = Vec::new();
    for (action, at_least) in STEPS {
        let found = entries.iter().filter(|e| e.action == action).count();
        if found < at_least {
            missing.push(format!("{action} ({found} of {at_least})"));
        }
    }
    if missing.is_empty() {
        println!(
            "{} entries; every step above is in the log ({})",
            entries.len(),
            STEPS.map(|(a, _)| a).join(", ")
        );
    } else {
        println!("{} entries; missing: {}", entries.len(), missing.join(", "));
        problems.push(format!("audit entries missing: {}", missing.join(", ")));
    }
    let verified = world.admin(["audit", "verify"]).map_err(anyhow::Error::msg);
    match verified {
        Ok(text) => print!("warren-controller audit verify: {text}"),
        Err(e) => {
            println!("warren-controller audit verify failed: {e}");
            problems.push("audit verify".to_owned());
        }
    }
    Ok(())
}
