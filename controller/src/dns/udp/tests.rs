//! The UDP loop over real loopback sockets: answers from the address each
//! query was sent to, one slow answer holding back no other, and no more
//! than [`MAX_IN_FLIGHT`] answers at once.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::{LowerName, Name, RData, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{serve, MAX_IN_FLIGHT};
use crate::dns::handler::AuthoritativeHandler;
use crate::dns::tests::{handler, query};

const WEB: &str = "web.prod.warren.internal.";
const DB: &str = "db.prod.warren.internal.";

/// How long any one step may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(5);

/// The zone's handler, except that queries for one name first wait for a
/// permit of `gate`; `waiting` counts the queries that reached the gate.
#[derive(Clone)]
struct Gated {
    inner: AuthoritativeHandler,
    name: LowerName,
    gate: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Gated {
    fn new(name: &str) -> Gated {
        Gated {
            inner: handler(&[]),
            name: LowerName::from(Name::from_ascii(name).unwrap()),
            gate: Arc::new(Semaphore::new(0)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl RequestHandler for Gated {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if request
            .request_info()
            .is_ok_and(|info| *info.query.name() == self.name)
        {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _permit = self.gate.acquire().await.unwrap();
        }
        self.inner
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// Serves `handler` on a wildcard socket and returns the address to ask:
/// on 127.0.0.2, which is not the address the route back to 127.0.0.1
/// picks, so an answer from it shows it left from the address asked.
fn serve_on_wildcard(handler: impl RequestHandler) -> (SocketAddr, JoinHandle<()>) {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let socket = warren_udp::ReplySocket::new(socket).unwrap();
    let port = socket.local_addr().unwrap().port();
    let server = tokio::spawn(serve(socket, handler));
    (SocketAddr::from(([127, 0, 0, 2], port)), server)
}

async fn client() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap()
}

async fn ask(client: &UdpSocket, server: SocketAddr, name: &str, id: u16) {
    let mut q = query(name, RecordType::A);
    q.metadata.id = id;
    client.send_to(&q.to_vec().unwrap(), server).await.unwrap();
}

/// The next answer `client` gets, and who sent it.
async fn answer(client: &UdpSocket) -> (SocketAddr, Message) {
    let mut buf = [0u8; 1500];
    let (len, from) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    (from, Message::from_vec(&buf[..len]).unwrap())
}

fn address_in(answer: &Message) -> RData {
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 1, "{answer:?}");
    answer.answers[0].data.clone()
}

fn a(last: u8) -> RData {
    RData::A(Ipv4Addr::new(10, 147, 0, last).into())
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

#[tokio::test]
async fn a_wildcard_udp_socket_answers_from_the_address_asked() {
    let (asked, server) = serve_on_wildcard(handler(&[]));
    let client = client().await;
    ask(&client, asked, DB, 4242).await;
    let (from, answer) = answer(&client).await;
    server.abort();
    assert_eq!(from, asked);
    assert_eq!(answer.metadata.id, 4242);
    assert_eq!(address_in(&answer), a(2));
}

#[tokio::test]
async fn a_slow_answer_holds_back_no_other_query() {
    let gated = Gated::new(WEB);
    let (asked, server) = serve_on_wildcard(gated.clone());
    let client = client().await;
    ask(&client, asked, WEB, 1).await;
    until("the slow query to reach the handler", || {
        gated.waiting() == 1
    })
    .await;
    // Answered while the first still waits (one query at a time would
    // leave this without an answer until the gate opens).
    ask(&client, asked, DB, 2).await;
    let (from, fast) = answer(&client).await;
    assert_eq!((from, fast.metadata.id), (asked, 2));
    assert_eq!(address_in(&fast), a(2));
    gated.gate.add_permits(1);
    let (from, slow) = answer(&client).await;
    assert_eq!((from, slow.metadata.id), (asked, 1));
    assert_eq!(address_in(&slow), a(1));
    server.abort();
}

#[tokio::test]
async fn answers_in_flight_are_bounded_and_each_leaves_from_the_address_asked() {
    let gated = Gated::new(DB);
    let (asked, server) = serve_on_wildcard(gated.clone());
    let total = MAX_IN_FLIGHT + 16;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(client().await);
    }
    // Junk between the queries is dropped or answered FORMERR, and
    // never stops the loop.
    clients[0].send_to(&[0xff; 3], asked).await.unwrap();
    for id in 0..total {
        let id = u16::try_from(id).unwrap();
        ask(&clients[usize::from(id) % clients.len()], asked, DB, id).await;
    }
    until("the limit of answers in flight", || {
        gated.waiting() == MAX_IN_FLIGHT
    })
    .await;
    // The rest stay unread while the limit is reached.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gated.waiting(), MAX_IN_FLIGHT);
    gated.gate.add_permits(total);
    for (i, client) in clients.iter().enumerate() {
        let expected: BTreeSet<u16> = (0..total)
            .filter(|id| id % clients.len() == i)
            .map(|id| u16::try_from(id).unwrap())
            .collect();
        let mut got = BTreeSet::new();
        while got.len() < expected.len() {
            let (from, answer) = answer(client).await;
            assert_eq!(from, asked);
            assert_eq!(address_in(&answer), a(2));
            assert!(got.insert(answer.metadata.id), "{answer:?}");
        }
        assert_eq!(got, expected);
    }
    assert_eq!(gated.waiting(), total);
    server.abort();
}
