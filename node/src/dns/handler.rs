//! The stub's request handler. It answers the joined networks' zones from
//! the netmaps and forwards other names to the system's old resolvers, but
//! only for this machine's own clients: a peer asking over the overlay gets
//! the zone of the network it asked in, and REFUSED for anything else, so
//! the stub is never an open resolver. ANY, zone transfers and updates are
//! never answered; UDP answers stay under [`MAX_UDP_PAYLOAD`] bytes (TC set
//! beyond). This module uses only hickory and std, so `fuzz/` builds it
//! as it is.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponse, MessageResponseBuilder, ZoneHandler};

/// The largest UDP answer sent, whatever EDNS buffer the client offers.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

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

/// Where a query goes after the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Zones,
    Forward,
    Answer(ResponseCode),
}

/// Decides what becomes of `request`, sent to the stub at `stub`.
pub fn screen(state: &StubState, stub: SocketAddr, request: &Request) -> Route {
    let metadata = &request.metadata;
    match (metadata.message_type, metadata.op_code) {
        (MessageType::Query, OpCode::Query) => {}
        (MessageType::Query, OpCode::Update) => return Route::Answer(ResponseCode::Refused),
        (MessageType::Query, _) => return Route::Answer(ResponseCode::NotImp),
        (MessageType::Response, _) => return Route::Answer(ResponseCode::FormErr),
    }
    let Ok(info) = request.request_info() else {
        return Route::Answer(ResponseCode::FormErr);
    };
    let query = info.query;
    let local = state.is_local(request.src().ip());
    let name = query.name();
    let in_zone = if local {
        state.in_any_zone(name)
    } else {
        state
            .own_zone
            .get(&stub)
            .is_some_and(|origin| origin.zone_of(name))
    };
    let route = if in_zone {
        Route::Zones
    } else if local && state.forward.is_some() {
        Route::Forward
    } else {
        return Route::Answer(ResponseCode::Refused);
    };
    if query.query_class() != DNSClass::IN {
        return Route::Answer(ResponseCode::Refused);
    }
    match query.query_type() {
        RecordType::ANY => Route::Answer(ResponseCode::NotImp),
        RecordType::AXFR | RecordType::IXFR => Route::Answer(ResponseCode::Refused),
        _ => route,
    }
}

/// One stub's handler; all stubs share the state.
#[derive(Clone)]
pub struct StubHandler {
    stub: SocketAddr,
    state: Arc<RwLock<Arc<StubState>>>,
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
        match (screen(&state, self.stub, request), &state.forward) {
            (Route::Zones, _) => {
                state
                    .zones
                    .handle_request::<_, T>(request, response_handle)
                    .await
            }
            (Route::Forward, Some(forward)) => {
                forward
                    .handle_request::<_, T>(request, response_handle)
                    .await
            }
            (Route::Answer(code), _) => refuse(request, code, response_handle).await,
            (Route::Forward, None) => refuse(request, ResponseCode::Refused, response_handle).await,
        }
    }
}

async fn refuse<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    mut handle: R,
) -> ResponseInfo {
    let response =
        MessageResponseBuilder::from_message_request(request).error_msg(&request.metadata, code);
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

static SMALL_EDNS: LazyLock<Edns> = LazyLock::new(|| {
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    edns
});

/// Lowers the EDNS buffer size of an answer to [`MAX_UDP_PAYLOAD`].
#[derive(Clone)]
struct SmallUdp<R>(R);

#[async_trait::async_trait]
impl<R: ResponseHandler> ResponseHandler for SmallUdp<R> {
    async fn send_response<'a>(
        &mut self,
        mut response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        if response
            .edns()
            .is_some_and(|e| e.max_payload() > MAX_UDP_PAYLOAD)
        {
            response.set_edns(&SMALL_EDNS);
        }
        self.0.send_response(response).await
    }
}

/// Keeps an answer's bytes, encoded as the server encodes them.
#[derive(Clone)]
#[cfg_attr(not(test), allow(dead_code))] // for the tests and fuzz/
struct Capture {
    protocol: Protocol,
    answer: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let max = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, |e| e.max_payload().max(512)),
            _ => u16::MAX,
        };
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = response.destructive_emit(&mut encoder)?;
        *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(info)
    }
}

/// Answers one raw query as the stub would, without sockets (for tests and
/// the fuzzer). `None` where the server sends nothing of the handler's.
#[cfg_attr(not(test), allow(dead_code))] // for the tests and fuzz/
pub async fn answer_bytes(
    handler: &StubHandler,
    bytes: &[u8],
    src: SocketAddr,
    protocol: Protocol,
) -> Option<Vec<u8>> {
    let request = Request::from_bytes(bytes.to_vec(), src, protocol).ok()?;
    if request.metadata.message_type == MessageType::Response {
        return None;
    }
    let capture = Capture {
        protocol,
        answer: Arc::new(Mutex::new(None)),
    };
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    let answer = capture
        .answer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    answer
}
