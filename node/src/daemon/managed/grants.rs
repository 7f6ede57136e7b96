//! Grants used here: the first flow a grant (`grant:<id>` in a network's
//! filter) admits at this node is reported to the network's controller,
//! which records it in the audit log.

use super::super::control::ControlCommand;
use super::Managed;

/// How often the filters' rule hits are looked at.
pub const GRANT_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

impl Managed {
    pub async fn report_grant_uses(&mut self) {
        let mut used = Vec::new();
        for (id, net) in &self.nets {
            let Some(report) = net.runner.as_ref() else {
                continue;
            };
            let Some(report) = report.report().await else {
                continue;
            };
            for hits in report.filter.rule_hits.iter().filter(|h| h.flows > 0) {
                if let Some(grant) = hits.rule.strip_prefix("grant:") {
                    if !self.grants_reported.contains(&(*id, grant.to_owned())) {
                        used.push((*id, grant.to_owned(), net.config.controller.clone()));
                    }
                }
            }
        }
        for (id, grant, controller) in used {
            let Some(control) = self.controllers.get(&controller) else {
                continue;
            };
            tracing::info!(network = %id, %grant, "grant used here: telling the controller");
            control.send(ControlCommand::GrantUsed(id, grant.clone()));
            self.grants_reported.insert((id, grant));
        }
    }
}
