//! Local-API requests for DNS and published services, answered by the
//! event loop (which owns [`Dns`]).

use tokio::sync::oneshot;
use warren_proto::local_dns::{
    DnsStatus, PublishedService, ServiceList, ServiceRemove, ServiceRequest,
};
use warren_proto::service::ServiceSpec;
use warren_proto::NetworkId;

use super::Dns;
use crate::daemon::{refusal, Refusal};

pub enum DnsRequest {
    Status(oneshot::Sender<DnsStatus>),
    ListServices(oneshot::Sender<ServiceList>),
    AddService(
        ServiceRequest,
        oneshot::Sender<Result<PublishedService, Refusal>>,
    ),
    RemoveService(ServiceRemove, oneshot::Sender<Result<(), Refusal>>),
}

/// A network's whole service list, to send to its controller.
pub type Publish = (NetworkId, Vec<ServiceSpec>);

impl Dns {
    /// Answers `request`; `joined` are the joined networks. Returns the list
    /// to publish when one changed.
    pub fn handle(&mut self, request: DnsRequest, joined: &[NetworkId]) -> Option<Publish> {
        match request {
            DnsRequest::Status(reply) => {
                let _ = reply.send(self.status());
                None
            }
            DnsRequest::ListServices(reply) => {
                let _ = reply.send(self.list_services());
                None
            }
            DnsRequest::AddService(add, reply) => {
                let (answer, publish) = match self.add_service(add, joined) {
                    Ok((service, publish)) => (Ok(service), Some(publish)),
                    Err(e) => (Err(e), None),
                };
                let _ = reply.send(answer);
                publish
            }
            DnsRequest::RemoveService(remove, reply) => {
                let (answer, publish) = match self.remove_service(remove, joined) {
                    Ok(publish) => (Ok(()), Some(publish)),
                    Err(e) => (Err(e), None),
                };
                let _ = reply.send(answer);
                publish
            }
        }
    }

    /// Every list this node publishes in `nets`: sent again after a reconnect.
    pub fn services_for(&self, nets: &[NetworkId]) -> Vec<Publish> {
        nets.iter()
            .filter_map(|id| self.services.get(*id).map(|l| (*id, l.clone())))
            .collect()
    }

    /// Forgets a left network's services.
    pub fn forget_services(&mut self, id: NetworkId) {
        if self.services.forget(id) {
            self.save_services();
        }
    }

    fn save_services(&self) {
        if let Err(e) = self.services.save() {
            tracing::error!(error = %format!("{e:#}"), "could not save published services");
        }
    }

    fn list_services(&self) -> ServiceList {
        let services = self
            .services
            .all()
            .iter()
            .flat_map(|(id, list)| {
                list.iter().map(|s| PublishedService {
                    network: *id,
                    fqdn: self.zone_of(*id).map(|z| format!("{}.{z}", s.label())),
                    service: s.clone(),
                })
            })
            .collect();
        ServiceList { services }
    }

    fn add_service(
        &mut self,
        add: ServiceRequest,
        joined: &[NetworkId],
    ) -> Result<(PublishedService, Publish), Refusal> {
        let net = pick_network(add.network, joined)?;
        let list = self
            .services
            .add(net, add.service.clone())
            .map_err(|e| refusal(400, "bad_service", e.to_string()))?;
        self.save_services();
        tracing::info!(network = %net, service = %add.service.label(), port = add.service.port, "service published");
        let published = PublishedService {
            network: net,
            fqdn: self
                .zone_of(net)
                .map(|z| format!("{}.{z}", add.service.label())),
            service: add.service,
        };
        Ok((published, (net, list)))
    }

    fn remove_service(
        &mut self,
        remove: ServiceRemove,
        joined: &[NetworkId],
    ) -> Result<Publish, Refusal> {
        let net = pick_network(remove.network, joined)?;
        let list = self
            .services
            .remove(net, &remove.name, remove.proto)
            .ok_or_else(|| {
                refusal(
                    404,
                    "unknown_service",
                    format!(
                        "_{}._{} is not published in {net}",
                        remove.name, remove.proto
                    ),
                )
            })?;
        self.save_services();
        Ok((net, list))
    }
}

/// The network a service request means: the one named, or the only one joined.
fn pick_network(asked: Option<NetworkId>, joined: &[NetworkId]) -> Result<NetworkId, Refusal> {
    match (asked, joined) {
        (Some(id), _) if joined.contains(&id) => Ok(id),
        (Some(id), _) => Err(refusal(
            404,
            "not_joined",
            format!("network {id} is not joined"),
        )),
        (None, [only]) => Ok(*only),
        (None, []) => Err(refusal(409, "not_joined", "no network is joined")),
        (None, _) => Err(refusal(
            400,
            "network_required",
            "several networks are joined: name one with --network",
        )),
    }
}
