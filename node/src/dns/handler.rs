//! The stub's request handler. It answers the joined networks' zones from
//! the netmaps and forwards other names to the system's old resolvers, but
//! only for this machine's own clients: a peer asking over the overlay gets
//! the zone of the network it asked in, and REFUSED for anything else, so
//! the stub is never an open resolver. ANY, zone transfers and updates are
//! never answered ([`warren_dns::screen`]); UDP answers stay under
//! [`MAX_UDP_PAYLOAD`] bytes (TC set beyond). Names below a site of a
//! zone (`<name>.<site>.<zone>`) go to the site's [`SiteResolver`], for
//! clients that are not peers: this machine, and hosts behind it such as
//! a cluster's pods when it is the cluster's master. This module uses only hickory, warren-dns and std,
//! so `fuzz/` builds it as it is.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Metadata, ResponseCode};
use hickory_server::proto::rr::{LowerName, Name, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder, ZoneHandler};
use warren_dns::{refuse, SmallUdp};

#[cfg_attr(not(test), allow(unused_imports))] // for the tests and fuzz/
pub use warren_dns::{answer_bytes, MAX_UDP_PAYLOAD};

/// Everything the stubs answer from, swapped whole on every change.
#[derive(Default)]
pub struct StubState {
    zones: Catalog,
    origins: HashSet<LowerName>,
    /// Each stub's own zone: what remote clients of that stub may ask for.
    own_zone: HashMap<SocketAddr, LowerName>,
    /// This machine's addresses: clients from these are local.
    local: HashSet<IpAddr>,
    /// The root zone, forwarded upstream, for local clients only.
    forward: Option<Catalog>,
    /// Sites with their own DNS, by `<site>.<zone>`: the names below it
    /// are asked of the site's server, for clients outside the mesh.
    sites: Vec<(LowerName, Arc<dyn SiteResolver>)>,
    /// Where the mesh's packets come from: the networks' prefixes and
    /// every prefix a peer routes.
    mesh: Vec<ipnet::IpNet>,
}

/// A site's answer, renamed into the mesh's names.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteAnswer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// Answers the names below one site (`super::sites` asks the site's server).
#[async_trait::async_trait]
pub trait SiteResolver: Send + Sync {
    /// The answer for `name` (below the site), or `None`: SERVFAIL.
    async fn resolve(&self, name: &Name, rtype: RecordType) -> Option<SiteAnswer>;
}

impl StubState {
    /// Adds a zone; `stub` is the address of the stub that owns it.
    pub fn insert_zone(
        &mut self,
        stub: SocketAddr,
        origin: LowerName,
        handler: Arc<dyn ZoneHandler>,
    ) {
        self.origins.insert(origin.clone());
        self.own_zone.insert(stub, origin.clone());
        self.zones.upsert(origin, vec![handler]);
    }

    pub fn has_origin(&self, origin: &LowerName) -> bool {
        self.origins.contains(origin)
    }

    /// Marks `prefix` as the mesh's: its clients are peers, which may not
    /// use this node to reach into a site.
    pub fn add_mesh(&mut self, prefix: ipnet::IpNet) {
        self.mesh.push(prefix);
    }

    /// Sends the names below `origin` (`<site>.<zone>`) to `resolver`.
    pub fn insert_site(&mut self, origin: LowerName, resolver: Arc<dyn SiteResolver>) {
        self.sites.push((origin, resolver));
    }

    /// The site a name is strictly below (the site's own name stays the
    /// zone's: a member may carry it).
    fn site_of(&self, name: &LowerName) -> Option<usize> {
        self.sites
            .iter()
            .position(|(origin, _)| origin != name && origin.zone_of(name))
    }

    /// Marks `ip` as one of this machine's addresses.
    pub fn add_local(&mut self, ip: IpAddr) {
        self.local.insert(ip);
    }

    /// Forwards names outside the zones to `handler` (a root-zone forwarder).
    pub fn set_forwarder(&mut self, handler: Arc<dyn ZoneHandler>) {
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::from(hickory_server::proto::rr::Name::root()),
            vec![handler],
        );
        self.forward = Some(catalog);
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.local.contains(&ip)
    }

    fn in_any_zone(&self, name: &LowerName) -> bool {
        ancestors(name).any(|n| self.origins.contains(&n))
    }
}

fn ancestors(name: &LowerName) -> impl Iterator<Item = LowerName> {
    let mut next = Some(name.clone());
    std::iter::from_fn(move || {
        let current = next.take()?;
        if !current.is_root() {
            next = Some(current.base_name());
        }
        Some(current)
    })
}

/// Where a query that passed the screen is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Zones,
    Forward,
    /// The site at this index of the sites.
    Site(usize),
}

impl StubState {
    /// Where `name`, asked by `client` of the stub at `stub`, is looked up;
    /// `None`: nowhere, REFUSED. Local clients get every zone and the
    /// forwarder; a peer gets only the zone of the stub it asked.
    fn route(&self, stub: SocketAddr, client: IpAddr, name: &LowerName) -> Option<Route> {
        let local = self.is_local(client);
        if let Some(site) = self.site_of(name) {
            // This machine and the hosts behind it (a cluster's pods) may
            // ask; a peer may not use this node to reach into a site.
            let peer = !local && self.mesh.iter().any(|n| n.contains(&client));
            return (!peer).then_some(Route::Site(site));
        }
        let in_zone = if local {
            self.in_any_zone(name)
        } else {
            self.own_zone
                .get(&stub)
                .is_some_and(|origin| origin.zone_of(name))
        };
        if in_zone {
            Some(Route::Zones)
        } else if local && self.forward.is_some() {
            Some(Route::Forward)
        } else {
            None
        }
    }
}

/// Decides what becomes of `request`, sent to the stub at `stub`.
pub fn screen(
    state: &StubState,
    stub: SocketAddr,
    request: &Request,
) -> Result<Route, ResponseCode> {
    warren_dns::screen(request, |name| state.route(stub, request.src().ip(), name))
}

/// One stub's handler; all stubs share the state.
#[derive(Clone)]
pub struct StubHandler {
    stub: SocketAddr,
    state: Arc<RwLock<Arc<StubState>>>,
    queries: Arc<QueryCounts>,
}

impl StubHandler {
    /// Counts this stub's answers in `queries` (kept by the network, so
    /// they outlive a stub that rebinds).
    pub fn counting(mut self, queries: Arc<QueryCounts>) -> StubHandler {
        self.queries = queries;
        self
    }
}

/// The response codes [`QueryCounts`] tells apart; any other is `other`.
pub const QUERY_RESULTS: [&str; 7] = [
    "noerror", "nxdomain", "refused", "servfail", "formerr", "notimp", "other",
];

/// Queries a stub answered, by response code (see [`QUERY_RESULTS`]).
#[derive(Debug, Default)]
pub struct QueryCounts([AtomicU64; QUERY_RESULTS.len()]);

impl QueryCounts {
    fn count(&self, code: ResponseCode) {
        let i = match code {
            ResponseCode::NoError => 0,
            ResponseCode::NXDomain => 1,
            ResponseCode::Refused => 2,
            ResponseCode::ServFail => 3,
            ResponseCode::FormErr => 4,
            ResponseCode::NotImp => 5,
            _ => 6,
        };
        if let Some(counter) = self.0.get(i) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Each result with its count, in [`QUERY_RESULTS`] order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        QUERY_RESULTS
            .iter()
            .zip(&self.0)
            .map(|(result, n)| (*result, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The shared state behind every stub's handler.
#[derive(Clone, Default)]
pub struct SharedState(Arc<RwLock<Arc<StubState>>>);

impl SharedState {
    pub fn replace(&self, state: StubState) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
    }

    /// The handler of the stub listening at `stub`.
    pub fn handler(&self, stub: SocketAddr) -> StubHandler {
        StubHandler {
            stub,
            state: self.0.clone(),
            queries: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for StubHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner()).clone();
        let response_handle = SmallUdp(response_handle);
        let info = match (screen(&state, self.stub, request), &state.forward) {
            (Ok(Route::Zones), _) => {
                state
                    .zones
                    .handle_request::<_, T>(request, response_handle)
                    .await
            }
            (Ok(Route::Forward), Some(forward)) => {
                forward
                    .handle_request::<_, T>(request, response_handle)
                    .await
            }
            (Ok(Route::Site(i)), _) => {
                let resolver = state.sites.get(i).map(|(_, r)| r.clone());
                site_answer(request, resolver, response_handle).await
            }
            (Err(code), _) => refuse(request, code, response_handle).await,
            (Ok(Route::Forward), None) => {
                refuse(request, ResponseCode::Refused, response_handle).await
            }
        };
        self.queries.count(info.response_code);
        info
    }
}

/// Asks a site's resolver and answers with what it said (SERVFAIL if it
/// said nothing).
async fn site_answer<R: ResponseHandler>(
    request: &Request,
    resolver: Option<Arc<dyn SiteResolver>>,
    mut response_handle: R,
) -> ResponseInfo {
    let Ok(info) = request.request_info() else {
        return refuse(request, ResponseCode::FormErr, response_handle).await;
    };
    let name = Name::from(info.query.name().clone());
    let rtype = info.query.query_type();
    let answer = match resolver {
        Some(r) => r.resolve(&name, rtype).await,
        None => None,
    };
    let Some(answer) = answer else {
        return refuse(request, ResponseCode::ServFail, response_handle).await;
    };
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = answer.code;
    metadata.recursion_available = true;
    let response = MessageResponseBuilder::from_message_request(request).build(
        metadata,
        answer.answers.iter(),
        None.iter(),
        None.iter(),
        answer.additionals.iter(),
    );
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "could not send a site's DNS answer");
            refuse(request, ResponseCode::ServFail, response_handle).await
        }
    }
}
