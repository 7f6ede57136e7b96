//! warren-dns: the request plumbing that the controller's authoritative
//! server and the agent's stub share, on top of hickory-server. Each server
//! keeps its own zones and its own idea of which names it answers; this
//! crate holds the rules both apply to every request.
//!
//! # Layout
//! - [`screen`]: one question of class IN, no ANY, no zone transfers or
//!   updates, and only names the server answers.
//! - [`SmallUdp`]: caps UDP answers at [`MAX_UDP_PAYLOAD`] bytes (TC beyond).
//! - [`refuse`]: an answer with a response code and nothing else.
//! - [`answer_bytes`]: one raw query through a handler without sockets, as
//!   the server would answer it (for tests and the fuzzers).
//! - [`answer_udp`]: one UDP query as hickory's server answers it, for a
//!   server that reads and answers its own datagrams.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};

/// The largest UDP answer either server sends, whatever EDNS buffer a
/// client offers (the DNS flag day 2020 size): larger answers go out
/// truncated.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The screen every request passes before a lookup. `answers` says where
/// a name would be looked up (`None`: not a name this server answers, so
/// REFUSED); its verdict comes back when the question may be looked up,
/// otherwise the response code to answer with.
pub fn screen<T>(
    request: &Request,
    answers: impl FnOnce(&LowerName) -> Option<T>,
) -> Result<T, ResponseCode> {
    let metadata = &request.metadata;
    match (metadata.message_type, metadata.op_code) {
        (MessageType::Query, OpCode::Query) => {}
        // Dynamic updates change zones; ours come only from the controller.
        (MessageType::Query, OpCode::Update) => return Err(ResponseCode::Refused),
        (MessageType::Query, _) => return Err(ResponseCode::NotImp),
        (MessageType::Response, _) => return Err(ResponseCode::FormErr),
    }
    let Ok(info) = request.request_info() else {
        return Err(ResponseCode::FormErr);
    };
    let query = info.query;
    let verdict = answers(query.name()).ok_or(ResponseCode::Refused)?;
    if query.query_class() != DNSClass::IN {
        return Err(ResponseCode::Refused);
    }
    match query.query_type() {
        RecordType::ANY => Err(ResponseCode::NotImp),
        RecordType::AXFR | RecordType::IXFR => Err(ResponseCode::Refused),
        _ => Ok(verdict),
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

/// Answers one raw query as the server would, without sockets: what the
/// fuzzers and the regression tests drive. `None` where the server sends
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

/// The answer to one query datagram, as hickory's UDP server gives it:
/// [`answer_bytes`], or FORMERR (header only) to a query whose header reads
/// but whose body does not. `None`: send nothing (a response, a datagram
/// shorter than a header, or nothing from the handler).
pub async fn answer_udp(
    handler: &impl RequestHandler,
    bytes: &[u8],
    src: SocketAddr,
) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(bytes)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    match answer_bytes(handler, bytes, src, Protocol::Udp).await {
        Some(answer) => Some(answer),
        None if Request::from_bytes(bytes.to_vec(), src, Protocol::Udp).is_err() => {
            let id = header.metadata.id;
            let error = Message::error_msg(id, header.metadata.op_code, ResponseCode::FormErr);
            error.to_vec().ok()
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::net::runtime::Time;
    use hickory_server::proto::op::{Message, Query};
    use hickory_server::proto::rr::{DNSClass, Name};

    /// Answers NOERROR, with no records, for names under `warren.internal`.
    struct Screened;

    #[async_trait::async_trait]
    impl RequestHandler for Screened {
        async fn handle_request<R: ResponseHandler, T: Time>(
            &self,
            request: &Request,
            response_handle: R,
        ) -> ResponseInfo {
            let origin = LowerName::from(Name::from_ascii("warren.internal.").unwrap());
            let code = match screen(request, |name| origin.zone_of(name).then_some(())) {
                Ok(()) => ResponseCode::NoError,
                Err(code) => code,
            };
            refuse(request, code, SmallUdp(response_handle)).await
        }
    }

    async fn code_of(message: Message) -> ResponseCode {
        let src = "127.0.0.1:5353".parse().unwrap();
        let bytes = message.to_vec().unwrap();
        let answer = answer_bytes(&Screened, &bytes, src, Protocol::Udp)
            .await
            .unwrap();
        Message::from_vec(&answer).unwrap().metadata.response_code
    }

    fn query(name: &str, rtype: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        m
    }

    #[tokio::test]
    async fn only_plain_questions_in_our_names_pass() {
        let ours = "web.prod.warren.internal.";
        assert_eq!(
            code_of(query(ours, RecordType::A)).await,
            ResponseCode::NoError
        );
        assert_eq!(
            code_of(query("example.org.", RecordType::A)).await,
            ResponseCode::Refused
        );
        assert_eq!(
            code_of(query(ours, RecordType::ANY)).await,
            ResponseCode::NotImp
        );
        assert_eq!(
            code_of(query(ours, RecordType::AXFR)).await,
            ResponseCode::Refused
        );
        assert_eq!(
            code_of(query(ours, RecordType::IXFR)).await,
            ResponseCode::Refused
        );

        let mut chaos = query(ours, RecordType::TXT);
        chaos.queries[0].set_query_class(DNSClass::CH);
        assert_eq!(code_of(chaos).await, ResponseCode::Refused);

        let mut update = query(ours, RecordType::A);
        update.metadata.op_code = OpCode::Update;
        assert_eq!(code_of(update).await, ResponseCode::Refused);

        let mut notify = query(ours, RecordType::SOA);
        notify.metadata.op_code = OpCode::Notify;
        assert_eq!(code_of(notify).await, ResponseCode::NotImp);
    }

    #[tokio::test]
    async fn responses_get_no_answer_and_garbage_no_panic() {
        let src = "127.0.0.1:5353".parse().unwrap();
        let mut response = query("web.warren.internal.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        let bytes = response.to_vec().unwrap();
        assert_eq!(
            answer_bytes(&Screened, &bytes, src, Protocol::Udp).await,
            None
        );
        for garbage in [&b""[..], b"\x00", &[0xff; 12], &[0u8; 600]] {
            let _ = answer_bytes(&Screened, garbage, src, Protocol::Udp).await;
        }
    }

    #[tokio::test]
    async fn udp_answers_a_query_formerr_to_a_broken_body_and_nothing_to_responses() {
        let src = "127.0.0.1:5353".parse().unwrap();
        let ok = query("web.warren.internal.", RecordType::A)
            .to_vec()
            .unwrap();
        let answer = answer_udp(&Screened, &ok, src).await.unwrap();
        let answer = Message::from_vec(&answer).unwrap();
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        // A header that claims one question, and no question after it.
        let mut broken = ok[..12].to_vec();
        broken[0..2].copy_from_slice(&9u16.to_be_bytes());
        let answer = answer_udp(&Screened, &broken, src).await.unwrap();
        let answer = Message::from_vec(&answer).unwrap();
        assert_eq!(answer.metadata.id, 9);
        assert_eq!(answer.metadata.message_type, MessageType::Response);
        assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
        let mut response_header = broken.clone();
        response_header[2] |= 0x80;
        assert_eq!(answer_udp(&Screened, &response_header, src).await, None);
        assert_eq!(answer_udp(&Screened, &ok[..5], src).await, None);
    }
}
