//! The authoritative server's request handler. Every request is screened
//! before hickory's catalog sees it: one question of class IN, no ANY, no
//! zone transfers or updates, and only names inside our zones (REFUSED
//! elsewhere: never a resolver for anyone). UDP answers are capped at
//! [`MAX_UDP_PAYLOAD`] bytes and truncated (TC) beyond it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponse, MessageResponseBuilder};

/// The largest UDP answer we send, whatever EDNS buffer a client offers
/// (the DNS flag day 2020 size): larger answers go out truncated.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The zones served, swapped whole when one of them changes.
#[derive(Default)]
pub struct Zones {
    catalog: Catalog,
    origins: HashSet<LowerName>,
}

impl Zones {
    /// Adds a zone handler under its origin.
    pub fn insert(
        &mut self,
        origin: LowerName,
        handler: Arc<dyn hickory_server::zone_handler::ZoneHandler>,
    ) {
        self.origins.insert(origin.clone());
        self.catalog.upsert(origin, vec![handler]);
    }

    /// True if `name` is inside one of the zones.
    pub fn serves(&self, name: &LowerName) -> bool {
        let mut name = name.clone();
        loop {
            if self.origins.contains(&name) {
                return true;
            }
            if name.is_root() {
                return false;
            }
            name = name.base_name();
        }
    }

    /// True if exactly this origin is a zone already.
    pub fn has_origin(&self, origin: &LowerName) -> bool {
        self.origins.contains(origin)
    }

    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }
}

/// Why a request is answered without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub ResponseCode);

/// The screen every request passes: `Ok` means "look it up".
pub fn screen(request: &Request, serves: impl Fn(&LowerName) -> bool) -> Result<(), Refusal> {
    let metadata = &request.metadata;
    match (metadata.message_type, metadata.op_code) {
        (MessageType::Query, OpCode::Query) => {}
        // Dynamic updates change zones; ours come only from the store.
        (MessageType::Query, OpCode::Update) => return Err(Refusal(ResponseCode::Refused)),
        (MessageType::Query, _) => return Err(Refusal(ResponseCode::NotImp)),
        (MessageType::Response, _) => return Err(Refusal(ResponseCode::FormErr)),
    }
    let Ok(info) = request.request_info() else {
        return Err(Refusal(ResponseCode::FormErr));
    };
    let query = info.query;
    if !serves(query.name()) || query.query_class() != DNSClass::IN {
        return Err(Refusal(ResponseCode::Refused));
    }
    match query.query_type() {
        RecordType::ANY => Err(Refusal(ResponseCode::NotImp)),
        RecordType::AXFR | RecordType::IXFR => Err(Refusal(ResponseCode::Refused)),
        _ => Ok(()),
    }
}

/// The controller's handler: the screen, then the catalog of all zones.
/// Clones share the zones, so the server and the zone builder hold one each.
#[derive(Clone, Default)]
pub struct AuthoritativeHandler {
    zones: Arc<RwLock<Arc<Zones>>>,
}

impl AuthoritativeHandler {
    pub fn replace(&self, zones: Zones) {
        *self.zones.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(zones);
    }

    fn current(&self) -> Arc<Zones> {
        self.zones.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl RequestHandler for AuthoritativeHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let zones = self.current();
        let response_handle = SmallUdp(response_handle);
        match screen(request, |name| zones.serves(name)) {
            Ok(()) => {
                zones
                    .catalog
                    .handle_request::<_, T>(request, response_handle)
                    .await
            }
            Err(Refusal(code)) => refuse(request, code, response_handle).await,
        }
    }
}

/// Answers `request` with `code` and nothing else.
pub async fn refuse<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    mut response_handle: R,
) -> ResponseInfo {
    let response =
        MessageResponseBuilder::from_message_request(request).error_msg(&request.metadata, code);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "could not send a DNS error answer");
            failed(request)
        }
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata =
        hickory_server::proto::op::Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

static SMALL_EDNS: LazyLock<Edns> = LazyLock::new(|| {
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    edns
});

/// Lowers the EDNS buffer size of an answer to [`MAX_UDP_PAYLOAD`], which
/// is what hickory encodes UDP answers against (TC set beyond it).
#[derive(Clone)]
pub struct SmallUdp<R>(pub R);

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

/// Keeps the bytes of an answer instead of sending them, encoded as the
/// server encodes them for `protocol`.
#[derive(Clone)]
pub struct Capture {
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

/// Answers one raw query as the server would, without sockets: what the
/// fuzzer and the regression tests drive. `None` where the server sends
/// nothing (or, for an unparseable body, only a FORMERR of its own).
pub async fn answer_bytes(
    handler: &impl RequestHandler,
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
