//! Relayed packets on their way into a network's data plane: the relay
//! reader hands them straight to the network's own bounded queue (never
//! through the daemon's control loop); what does not fit is dropped and
//! counted, as a full link drops it, and what no WireGuard packet can be
//! is refused before it reaches the engine.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use warren_proto::{NetworkId, NodePublicKey};

/// Relayed packets waiting for one network's data plane.
pub const RELAY_IN_QUEUE: usize = 1024;

/// The largest datagram a WireGuard packet can be: a whole IP packet plus
/// WireGuard's header and tag. Relay payloads are capped at this both ways,
/// and the data plane decrypts into a buffer at least this large.
pub const MAX_WIREGUARD_DATAGRAM: usize = 65_535 + warren_engine::DATA_OVERHEAD;

/// Why a relayed packet did not reach the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayInDrop {
    #[error("relay queue full")]
    QueueFull,
    #[error("relayed datagram of {0} bytes is larger than any WireGuard packet")]
    Oversized(usize),
    #[error("no data plane for this network on this controller")]
    NotRouted,
}

/// A packet from a peer, through the relay.
#[derive(Debug)]
pub struct RelayedPacket {
    pub from: NodePublicKey,
    pub payload: Vec<u8>,
}

/// Drops counted for one network, read by its status report.
#[derive(Debug, Default)]
pub struct RelayInDrops {
    queue_full: AtomicU64,
    oversized: AtomicU64,
}

impl RelayInDrops {
    pub fn queue_full(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
    }

    pub fn oversized(&self) -> u64 {
        self.oversized.load(Ordering::Relaxed)
    }
}

/// The relay reader's end of one network's queue.
#[derive(Clone, Debug)]
pub struct RelayInTx {
    tx: mpsc::Sender<RelayedPacket>,
    drops: Arc<RelayInDrops>,
}

/// The data plane's end.
pub struct RelayInRx {
    pub rx: mpsc::Receiver<RelayedPacket>,
    pub drops: Arc<RelayInDrops>,
}

pub fn relay_in_queue(capacity: usize) -> (RelayInTx, RelayInRx) {
    let (tx, rx) = mpsc::channel(capacity);
    let drops = Arc::new(RelayInDrops::default());
    (
        RelayInTx {
            tx,
            drops: Arc::clone(&drops),
        },
        RelayInRx { rx, drops },
    )
}

impl RelayInTx {
    /// Queues a packet without waiting: a full queue or an impossible
    /// length drops it and counts the drop.
    pub fn push(&self, from: NodePublicKey, payload: Vec<u8>) -> Result<(), RelayInDrop> {
        if payload.len() > MAX_WIREGUARD_DATAGRAM {
            self.drops.oversized.fetch_add(1, Ordering::Relaxed);
            return Err(RelayInDrop::Oversized(payload.len()));
        }
        match self.tx.try_send(RelayedPacket { from, payload }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.drops.queue_full.fetch_add(1, Ordering::Relaxed);
                Err(RelayInDrop::QueueFull)
            }
            // The data plane is stopping: as good as not routed.
            Err(TrySendError::Closed(_)) => Err(RelayInDrop::NotRouted),
        }
    }
}

/// Which data plane each network's relayed packets go to, for the networks
/// joined through one controller: a frame about any other network is
/// dropped where it is read.
#[derive(Clone, Default)]
pub struct RelayRoutes(Arc<RwLock<BTreeMap<NetworkId, RelayInTx>>>);

impl RelayRoutes {
    /// Routes a network's packets to `queue`, or to nowhere.
    pub fn set(&self, network: NetworkId, queue: Option<RelayInTx>) {
        let mut routes = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match queue {
            Some(queue) => routes.insert(network, queue),
            None => routes.remove(&network),
        };
    }

    pub fn deliver(
        &self,
        network: NetworkId,
        from: NodePublicKey,
        payload: Vec<u8>,
    ) -> Result<(), RelayInDrop> {
        let routes = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match routes.get(&network) {
            Some(queue) => queue.push(from, payload),
            None => Err(RelayInDrop::NotRouted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::NodePrivateKey;

    fn peer() -> NodePublicKey {
        NodePrivateKey::generate().public_key()
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_growing() {
        let (tx, mut rx) = relay_in_queue(4);
        let from = peer();
        for _ in 0..4 {
            assert_eq!(tx.push(from, vec![1; 100]), Ok(()));
        }
        assert_eq!(tx.push(from, vec![1; 100]), Err(RelayInDrop::QueueFull));
        assert_eq!(tx.push(from, vec![1; 100]), Err(RelayInDrop::QueueFull));
        assert_eq!(rx.drops.queue_full(), 2);
        // Draining makes room again.
        assert!(rx.rx.recv().await.is_some());
        assert_eq!(tx.push(from, vec![1; 100]), Ok(()));
        assert_eq!(rx.drops.queue_full(), 2);
    }

    #[test]
    fn a_datagram_larger_than_any_wireguard_packet_is_refused() {
        let (tx, rx) = relay_in_queue(4);
        let from = peer();
        assert_eq!(tx.push(from, vec![0; MAX_WIREGUARD_DATAGRAM]), Ok(()));
        let too_big = MAX_WIREGUARD_DATAGRAM + 1;
        assert_eq!(
            tx.push(from, vec![0; too_big]),
            Err(RelayInDrop::Oversized(too_big))
        );
        // The largest frame a relay may send is refused too.
        let relay_max = warren_proto::relay::MAX_FRAME - warren_proto::relay::HEADER_LEN;
        assert!(tx.push(from, vec![0; relay_max]).is_err());
        assert_eq!(rx.drops.oversized(), 2);
        assert_eq!(rx.drops.queue_full(), 0);
    }

    #[test]
    fn the_decrypt_buffer_check_refuses_what_does_not_fit() {
        use crate::daemon::datapath::fits_scratch;
        let scratch = 65_536 + warren_engine::DATA_OVERHEAD;
        assert!(fits_scratch(MAX_WIREGUARD_DATAGRAM, scratch));
        assert!(!fits_scratch(MAX_WIREGUARD_DATAGRAM + 1, usize::MAX));
        assert!(!fits_scratch(2000, 1500));
    }

    #[test]
    fn only_routed_networks_receive() {
        let routes = RelayRoutes::default();
        let (tx, mut rx) = relay_in_queue(4);
        let ours = NetworkId::from_bytes([1; 8]);
        let theirs = NetworkId::from_bytes([2; 8]);
        routes.set(ours, Some(tx));
        assert_eq!(routes.deliver(ours, peer(), vec![1]), Ok(()));
        assert_eq!(
            routes.deliver(theirs, peer(), vec![1]),
            Err(RelayInDrop::NotRouted)
        );
        routes.set(ours, None);
        assert_eq!(
            routes.deliver(ours, peer(), vec![1]),
            Err(RelayInDrop::NotRouted)
        );
        assert!(rx.rx.try_recv().is_ok());
        assert!(rx.rx.try_recv().is_err());
    }
}
