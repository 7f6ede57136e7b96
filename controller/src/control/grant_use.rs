//! `GrantUsed`: a member reports that a grant admitted a flow at it. The
//! controller records the first report per grant and member in the audit
//! log (`grant.use`), if the grant is one the member's own filter holds.

use warren_proto::NetworkId;

use super::frames::FrameIoError;
use super::session::Session;
use crate::store::StoreError;

/// Grant IDs are 8 hex digits; anything longer is not one.
const MAX_GRANT_ID: usize = 16;

const NOT_YOURS: &str = "no active grant of yours by that id";

impl Session {
    pub(super) async fn grant_used(
        &mut self,
        net: NetworkId,
        grant: String,
    ) -> Result<(), FrameIoError> {
        if grant.is_empty()
            || grant.len() > MAX_GRANT_ID
            || !grant.chars().all(|c| c.is_ascii_hexdigit())
        {
            return self.error("bad_request", "not a grant id").await;
        }
        // Only a grant in this member's own compiled filter: a member cannot
        // put uses of other people's grants in the audit log.
        let hub = self.context().hub.clone();
        let snapshot = match hub.snapshot(net).await {
            Ok(Some(s)) => s,
            Ok(None) => return self.error("not_found", "no such network").await,
            Err(e) => return self.internal(e).await,
        };
        let rule = format!("grant:{grant}");
        let holds = hub
            .view(&snapshot)
            .policy
            .members
            .get(&self.node_id())
            .is_some_and(|m| {
                m.filter
                    .inbound
                    .iter()
                    .chain(&m.filter.outbound)
                    .any(|r| r.rule == rule)
            });
        if !holds {
            return self.error("not_found", NOT_YOURS).await;
        }
        match hub
            .store()
            .record_grant_use(net, &self.node_key(), &grant)
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound(_)) => self.error("not_found", NOT_YOURS).await,
            Err(e) => self.internal(e).await,
        }
    }
}
