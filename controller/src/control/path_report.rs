//! `Paths`: a member's agent reports how it reaches its peers (direct or
//! relayed). Kept by the hub in memory for the API and the console
//! ([`crate::paths`]); only about the authenticated node, only while it is
//! an authorized member on this connection, and only about peers that are
//! authorized members of the network.

use warren_proto::control::PeerPath;
use warren_proto::NetworkId;

use super::frames::FrameIoError;
use super::session::Session;

impl Session {
    pub(super) async fn report_paths(
        &mut self,
        net: NetworkId,
        paths: Vec<PeerPath>,
    ) -> Result<(), FrameIoError> {
        if !self.is_present(net) {
            return self
                .error(
                    "not_a_member",
                    "report paths as an authorized member that joined on this connection",
                )
                .await;
        }
        if !self.take_paths_token(net) {
            tracing::debug!(node = %self.node_id(), network = %net, "path report over its rate");
            return self
                .error("rate_limited", "too many path reports; slow down")
                .await;
        }
        let hub = self.context().hub.clone();
        let snapshot = match hub.snapshot(net).await {
            Ok(Some(s)) => s,
            // Deleted: the change notice ends the membership and the report.
            Ok(None) => return Ok(()),
            Err(e) => return self.internal(e).await,
        };
        let admitted = crate::paths::admit(self.node_id(), &paths, &hub.view(&snapshot));
        if admitted.dropped > 0 {
            tracing::debug!(
                node = %self.node_id(),
                network = %net,
                dropped = admitted.dropped,
                "path report entries dropped (not members, repeated or past the cap)"
            );
        }
        hub.record_paths(net, self.node_id(), self.id(), admitted.paths);
        Ok(())
    }
}
