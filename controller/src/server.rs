//! Starts a whole controller (data directory, database, QUIC control server
//! with the relay, STUN, DNS, the HTTP API in the clear and over TLS) or a
//! relay-only instance.
//! `warren-controller serve`, `warren-controller relay` and the tests use it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::info::{ControllerInfo, Fingerprints, ListenAddresses};
use crate::api::{self, ApiState};
use crate::audit_anchor::HeadSigner;
pub use crate::control::AdvertisedRelay;
pub use crate::control::Role;
use crate::control::{self, ControlContext, ControlSetupError};
use crate::data_dir::{self, DataDirError};
use crate::hub::Hub;
use crate::listen::BindError;
use crate::metrics::Metrics;
pub use crate::relay::RelayLimits;
use crate::relay::{AbsenceNotices, Relay};
use crate::store::{SqlStore, Store, StoreError};
use crate::stun;

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// A whole controller, or a relay-only instance that reads another
    /// controller's database.
    pub role: Role,
    /// The controller's data directory: its keys, certificate and
    /// database; of a relay-only instance, only the database is read.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://...`) the controller keeps its
    /// state in; `None`: the SQLite file in the data directory.
    pub database: Option<String>,
    /// A relay-only instance's own key and certificate (made on first
    /// use); required for that role, unused by a controller.
    pub state_dir: Option<PathBuf>,
    pub listen_quic: SocketAddr,
    /// Retry an unbindable `[::]` as `0.0.0.0` (only for the default address).
    pub quic_fallback_v4: bool,
    /// QUIC over TCP for nodes whose networks block UDP; `None`: none.
    pub listen_tcp: Option<TcpFallback>,
    /// The HTTP listener: the whole API for a controller; only `/healthz`
    /// and `/metrics` for a relay-only instance. `None`: no HTTP at all.
    pub listen_api: Option<SocketAddr>,
    /// Host names the API answers to besides IP literals and `localhost`.
    pub api_hosts: Vec<String>,
    /// The admin socket: the API on a Unix socket for root and the
    /// controller's own user, no token (a controller only). `None`: none.
    pub admin_socket: Option<api::local_socket::AdminSocketPlace>,
    /// UDP addresses that answer STUN binding requests (may be empty).
    pub listen_stun: Vec<SocketAddr>,
    /// Retry unbindable `[::]` STUN addresses as `0.0.0.0` (defaults only).
    pub stun_fallback_v4: bool,
    /// Each node's share of the relay.
    pub relay: RelayLimits,
    /// A relay-only instance that nodes are told to relay through;
    /// `None`: this process relays.
    pub advertise_relay: Option<AdvertisedRelay>,
    /// `HOST:PORT` agents reach this process's QUIC listener at; `None`:
    /// the QUIC listen address, unless it is a wildcard. With several
    /// replicas on one database, agents learn each one's and move to
    /// another when theirs goes away.
    pub advertise_address: Option<String>,
    /// With more QUIC handshakes than this in flight, new ones must first
    /// prove their address with a Retry round trip.
    pub retry_above_handshakes: usize,
    /// The HTTPS listener: the API over TLS, and people's pages (sign-in,
    /// console) where configured. `None`: none.
    pub listen_https: Option<SocketAddr>,
    /// The certificate chain and key (PEM files) the HTTPS listener
    /// serves; `None`: the controller's own certificate.
    pub https_certificate: Option<(PathBuf, PathBuf)>,
    /// UDP and TCP address of the authoritative DNS server for every
    /// network's zone (a controller only). `None`: no DNS.
    pub listen_dns: Option<SocketAddr>,
    /// People sign devices in through this OpenID provider; needs
    /// `listen_https`.
    pub sign_in: Option<crate::identity::SignInSettings>,
    /// Admin and auditor roles for people (`[roles]`): with sign-in, their
    /// sessions are accepted by the API served on the HTTPS listener.
    pub roles: crate::roles::Roles,
    /// `https://HOST[:PORT]` people's browsers reach the HTTPS listener
    /// at: the console's origin. Without it (and without sign-in, which
    /// carries its own) the HTTPS listener serves no console.
    pub public_url: Option<String>,
    /// Where mapped prefixes of overlapping sites' routes come from
    /// (`--site-mapped-range`).
    pub site_mapped_range: ipnet::Ipv4Net,
}

/// Where QUIC over TCP listens (`warren_udp::stream`).
#[derive(Debug, Clone, Copy)]
pub struct TcpFallback {
    pub addr: SocketAddr,
    /// The built-in default (the QUIC address, over TCP): an unbindable
    /// `[::]` is retried as `0.0.0.0`, and an address in use only warns.
    pub is_default: bool,
}

impl ServerOptions {
    /// A controller on loopback with OS-chosen ports (API, QUIC and one
    /// STUN port) and default relay limits: what tests and benchmarks use.
    pub fn loopback(data_dir: PathBuf) -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            role: Role::Controller,
            data_dir,
            database: None,
            state_dir: None,
            listen_quic: any_port,
            quic_fallback_v4: false,
            listen_tcp: None,
            listen_api: Some(any_port),
            api_hosts: Vec::new(),
            admin_socket: None,
            listen_stun: vec![any_port],
            stun_fallback_v4: false,
            relay: RelayLimits::default(),
            advertise_relay: None,
            advertise_address: None,
            retry_above_handshakes: crate::control::admission::RETRY_ABOVE_HANDSHAKES,
            listen_https: None,
            https_certificate: None,
            listen_dns: None,
            sign_in: None,
            roles: crate::roles::Roles::default(),
            public_url: None,
            site_mapped_range: crate::store::DEFAULT_SITE_MAPPED_RANGE,
        }
    }
}

/// `https://HOST[:PORT]` of the public URL, as browsers send it in
/// `Origin` (no default port, no path).
fn page_origin(public_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(public_url).ok()?;
    Some(url.origin().ascii_serialization()).filter(|o| o.starts_with("https://"))
}

/// How often a relay-only instance forgets the membership it read from
/// the database (its controller's changes are not announced across
/// processes). It re-reads a network only when a frame for it arrives, so
/// this costs at most one read per busy network per period; it bounds how
/// long a revoked node can still relay, and how long a new member waits.
pub const RELAY_MEMBERSHIP_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory: {0}")]
    DataDir(#[from] DataDirError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("control server: {0}")]
    Control(#[from] ControlSetupError),
    #[error("STUN: {0}")]
    StunBind(#[from] BindError),
    #[error("could not listen for the API on {addr}: {source}")]
    ApiBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("could not listen for HTTPS on {addr}: {source}")]
    HttpsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    AdminSocket(#[from] api::local_socket::AdminSocketError),
    #[error("HTTPS certificate: {0}")]
    HttpsCertificate(String),
    #[error("DNS: {0}")]
    Dns(#[from] crate::dns::DnsError),
    #[error("sign-in: {0}")]
    SignIn(#[from] crate::identity::ProviderError),
    #[error("sign-in needs the HTTPS listener (listen-https) for its pages")]
    SignInWithoutHttps,
    #[error("the certificate's key cannot sign the audit head: {0}")]
    AuditSigner(String),
    #[error(
        "a relay-only instance needs a state directory of its own for its key and certificate"
    )]
    NoStateDir,
    #[error(
        "the advertised relay's fingerprint is this controller's own certificate: a relay-only \
         instance has a certificate of its own (in its state directory)"
    )]
    RelayFingerprintIsOurs,
}

/// A running controller.
pub struct Running {
    pub quic_addr: SocketAddr,
    /// Where QUIC over TCP listens, if anywhere.
    pub tcp_addr: Option<SocketAddr>,
    /// Where HTTP listens, if anywhere.
    pub api_addr: Option<SocketAddr>,
    /// Where the admin socket is, if anywhere.
    pub admin_socket: Option<PathBuf>,
    /// Where HTTPS (the API and people's pages) listens, if anywhere.
    pub https_addr: Option<SocketAddr>,
    /// Where DNS answers, if anywhere.
    pub dns_addr: Option<SocketAddr>,
    /// The fingerprint of the certificate the HTTPS listener serves.
    pub https_fingerprint: Option<String>,
    /// The bound STUN sockets, in the configured order.
    pub stun_addrs: Vec<SocketAddr>,
    pub fingerprint: String,
    pub hub: Arc<Hub>,
    store: SqlStore,
    /// Follows the other replicas' changes (PostgreSQL).
    follower: Option<crate::store::sql::Follower>,
    dns: Option<crate::dns::DnsServer>,
    endpoint: quinn::Endpoint,
    /// QUIC over TCP, if it listens.
    tcp_endpoint: Option<quinn::Endpoint>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Loops that never end on their own (STUN, membership refresh).
    background: Vec<JoinHandle<()>>,
}

pub async fn start(options: ServerOptions) -> Result<Running, ServerError> {
    let (identity, store) = match options.role {
        Role::Controller => {
            let (identity, store) = match &options.database {
                Some(url) => (
                    data_dir::open_keys(&options.data_dir)?,
                    SqlStore::connect_postgres(url).await?,
                ),
                None => {
                    let identity = data_dir::open(&options.data_dir)?;
                    let store = SqlStore::open(&identity.db_path).await?;
                    (identity, store)
                }
            };
            (identity, store)
        }
        Role::RelayOnly => {
            let state_dir = options.state_dir.as_ref().ok_or(ServerError::NoStateDir)?;
            let identity = data_dir::open_relay(state_dir, &options.data_dir)?;
            let store = SqlStore::open_read_only(&identity.db_path).await?;
            (identity, store)
        }
    };
    if let Some(relay) = &options.advertise_relay {
        if relay.fingerprint == identity.fingerprint {
            return Err(ServerError::RelayFingerprintIsOurs);
        }
    }
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(Arc::new(store.clone()), metrics.clone());
    hub.set_site_mapped_range(options.site_mapped_range);
    if options.role == Role::Controller {
        warn_of_pools_in(&store, options.site_mapped_range).await?;
    }
    // Only a relay-only instance can miss a destination that is online.
    let notices = match options.role {
        Role::Controller => AbsenceNotices::Never,
        Role::RelayOnly => AbsenceNotices::Send,
    };
    let relay = Relay::new(options.relay, metrics.clone(), notices);
    if options.role == Role::Controller && store.is_shared() {
        relay.link_replicas(crate::relay::replica_link::ReplicaLinks::new(
            identity.controller_key.clone(),
            identity.fingerprint.clone(),
            hub.store().clone(),
            relay.clone(),
        ));
    }

    let stun_sockets = stun::bind(&options.listen_stun, options.stun_fallback_v4)?;
    let mut stun_addrs = Vec::with_capacity(stun_sockets.len());
    for (socket, addr) in stun_sockets.iter().zip(&options.listen_stun) {
        let bound = socket.local_addr().map_err(|source| BindError {
            addr: *addr,
            source,
        })?;
        stun_addrs.push(bound);
    }
    let mut stun_ports: Vec<u16> = Vec::new();
    for addr in &stun_addrs {
        if !stun_ports.contains(&addr.port()) {
            stun_ports.push(addr.port());
        }
    }

    let quic_config = control::server_config(&identity)?;
    let tcp_endpoint = match options.listen_tcp {
        Some(tcp) => {
            match control::bind_tcp(tcp.addr, tcp.is_default, &identity, quic_config.clone()) {
                Ok(endpoint) => Some(endpoint),
                Err(error) if tcp.is_default => {
                    tracing::warn!(%error, "no QUIC over TCP: nodes whose networks block UDP cannot connect");
                    None
                }
                Err(error) => return Err(error.into()),
            }
        }
        None => None,
    };
    let tcp_addr = tcp_endpoint.as_ref().and_then(|e| e.local_addr().ok());
    let endpoint = control::bind(options.listen_quic, options.quic_fallback_v4, quic_config)?;
    let quic_addr = endpoint
        .local_addr()
        .map_err(|source| ControlSetupError::Bind {
            addr: options.listen_quic,
            source,
        })?;
    // Where agents reach this replica; the others learn it from the
    // database and every agent from `Welcome`.
    let control_address = options.advertise_address.clone().or_else(|| {
        let listen = warren_proto::invite::ControllerAddress::Ip(quic_addr);
        listen.is_dialable().then(|| listen.to_string())
    });
    let follower = match options.role {
        Role::Controller => {
            store
                .register_replica(control_address.as_deref(), None)
                .await?;
            // Nobody is connected to a process that just started: on
            // SQLite every member goes offline; on PostgreSQL those of
            // replicas that are gone (an earlier process at this address
            // among them).
            store.reset_presence().await?;
            refresh_replicas(&store, &hub).await;
            store.follow().await?
        }
        Role::RelayOnly => None,
    };
    let listener = match options.listen_api {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::ApiBind { addr, source })?,
        ),
        None => None,
    };
    let api_addr = match (&listener, options.listen_api) {
        (Some(listener), Some(addr)) => Some(
            listener
                .local_addr()
                .map_err(|source| ServerError::ApiBind { addr, source })?,
        ),
        _ => None,
    };

    let admin_socket = match (&options.admin_socket, options.role) {
        (Some(place), Role::Controller) => api::local_socket::AdminSocket::open(place)?,
        _ => None,
    };
    let admin_socket_path = admin_socket.as_ref().map(|s| s.path().to_path_buf());
    let sign_in = match (&options.sign_in, options.role) {
        (Some(settings), Role::Controller) => {
            if options.listen_https.is_none() {
                return Err(ServerError::SignInWithoutHttps);
            }
            Some(Arc::new(crate::identity::SignIn::new(settings.clone())?))
        }
        _ => None,
    };
    let https = match (options.listen_https, options.role) {
        (Some(addr), Role::Controller) => {
            let (tls, fingerprint) = https_config(&options, &identity)?;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::HttpsBind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| ServerError::HttpsBind { addr, source })?;
            Some((listener, bound, tls, fingerprint))
        }
        _ => None,
    };
    let https_addr = https.as_ref().map(|(_, bound, _, _)| *bound);
    let https_fingerprint = https.as_ref().map(|(_, _, _, f)| f.clone());
    let dns = match (options.listen_dns, options.role) {
        (Some(addr), Role::Controller) => Some(crate::dns::spawn(addr, hub.clone()).await?),
        _ => None,
    };
    let public_url = sign_in
        .as_ref()
        .map(|s| s.settings.public_url.clone())
        .or_else(|| options.public_url.clone());
    let origin = public_url.as_deref().and_then(page_origin);
    let info = Arc::new(ControllerInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        fingerprints: Fingerprints {
            controller: identity.fingerprint.clone(),
            https: https_fingerprint.clone(),
        },
        listen: ListenAddresses {
            quic: quic_addr,
            api: api_addr.map(|a| format!("http://{a}")),
            https: https_addr.map(|a| format!("https://{a}")),
            stun: stun_addrs.clone(),
            dns: dns.as_ref().map(|d| d.addr),
        },
        features: features(&options, &https_addr, &origin, &stun_addrs, &dns),
        replicas: Vec::new(),
    });

    let (stop, stopped) = watch::channel(false);
    let context = Arc::new(ControlContext {
        hub: hub.clone(),
        relay,
        controller_key: identity.controller_key.clone(),
        role: options.role,
        stun_ports,
        advertise_relay: match options.role {
            Role::Controller => options.advertise_relay.clone(),
            Role::RelayOnly => None,
        },
        admission: control::admission::Admission::new(options.retry_above_handshakes),
        sign_in: sign_in.clone(),
    });
    let mut tasks = Vec::new();
    if let Some(tcp) = &tcp_endpoint {
        tasks.push(tokio::spawn(control::serve(tcp.clone(), context.clone())));
    }
    tasks.push(tokio::spawn(control::serve(endpoint.clone(), context)));
    // The API's state, for both listeners.
    let signer = HeadSigner::new(&identity.cert, &identity.cert_key)
        .map_err(|e| ServerError::AuditSigner(e.to_string()))?;
    let api_state = ApiState::new(hub.clone(), options.api_hosts.clone())
        .with_audit_signer(Arc::new(signer))
        .with_info(info);
    if let Some(listener) = listener {
        let state = api_state.clone();
        let limits = state.limits;
        let router = match options.role {
            Role::Controller => api::router(state),
            Role::RelayOnly => api::metrics_router(state),
        };
        let mut stopped_api = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped_api.wait_for(|s| *s).await;
            };
            api::listener::serve(listener, router, limits, shutdown).await;
        }));
    }
    if let Some(socket) = admin_socket {
        let router = api::router(api_state.clone());
        let limits = api_state.limits;
        tasks.push(api::local_socket::spawn(
            socket,
            router,
            limits,
            stopped.clone(),
        ));
    }
    if let Some((listener, _, tls, _)) = https {
        let roles = Arc::new(options.roles.clone());
        let mut pages = axum::Router::new();
        if let Some(sign_in) = &sign_in {
            pages = pages.merge(crate::identity::pages::router(
                crate::identity::pages::PagesState {
                    hub: hub.clone(),
                    sign_in: sign_in.clone(),
                    roles: roles.clone(),
                },
            ));
        }
        match origin {
            Some(origin) => {
                pages = pages.merge(crate::console::router(crate::console::ConsoleState::new(
                    hub.clone(),
                    roles.clone(),
                    origin.clone(),
                    sign_in.clone(),
                )));
                // People's sessions are accepted where a token is, for the
                // pages' own origin.
                pages = pages.merge(api::router(
                    api_state.with_sessions(api::Sessions { roles, origin }),
                ));
            }
            None => {
                tracing::info!(
                    "listen-https without public-url: the HTTPS listener serves the API, no console"
                );
                pages = pages.merge(api::router(api_state));
            }
        }
        let limits = api::ApiLimits::default();
        let mut stopped_https = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped_https.wait_for(|s| *s).await;
            };
            api::listener::serve_tls(listener, tls, pages, limits, shutdown).await;
        }));
    }
    let mut background: Vec<JoinHandle<()>> = stun_sockets
        .into_iter()
        .map(|socket| tokio::spawn(stun::serve(socket, metrics.clone())))
        .collect();
    if options.role == Role::Controller {
        if store.is_shared() {
            background.push(tokio::spawn(replica_heartbeat(store.clone(), hub.clone())));
            background.push(tokio::spawn(hub.clone().deliver_forwarded()));
        }
        background.push(tokio::spawn(crate::grant_clock::run(hub.clone())));
        if let Some(sign_in) = &sign_in {
            background.push(tokio::spawn(crate::identity::recheck::run(
                hub.clone(),
                sign_in.clone(),
            )));
        }
    }
    if options.role == Role::RelayOnly {
        let hub = hub.clone();
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELAY_MEMBERSHIP_REFRESH);
            loop {
                tick.tick().await;
                hub.expire_snapshots();
            }
        }));
    }
    Ok(Running {
        quic_addr,
        tcp_addr,
        api_addr,
        admin_socket: admin_socket_path,
        https_addr,
        dns_addr: dns.as_ref().map(|d| d.addr),
        https_fingerprint,
        stun_addrs,
        fingerprint: identity.fingerprint,
        hub,
        store,
        follower,
        dns,
        endpoint,
        tcp_endpoint,
        stop,
        tasks,
        background,
    })
}

/// Says this replica is alive every [`crate::store::sql::HEARTBEAT`],
/// takes the members of replicas that are gone offline, and keeps the list
/// of running replicas that `Welcome` gives agents.
async fn replica_heartbeat(store: SqlStore, hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(crate::store::sql::HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.heartbeat().await {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(
                    "this replica's heartbeat was late: the other replicas may have taken its \
                     members offline; recording them online again"
                );
                if let Err(error) = hub.reassert_presence().await {
                    tracing::warn!(%error, "recording this replica's members online again");
                }
            }
            Err(error) => tracing::warn!(%error, "replica heartbeat"),
        }
        refresh_replicas(&store, &hub).await;
    }
}

/// Reads where agents reach each running replica into the hub.
async fn refresh_replicas(store: &SqlStore, hub: &Hub) {
    match store.replicas().await {
        Ok(replicas) => hub.set_replicas(replicas.into_iter().filter_map(|r| r.control).collect()),
        Err(error) => tracing::warn!(%error, "reading the running replicas"),
    }
}

impl Running {
    /// Stops accepting, closes connections and the database.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in &self.background {
            task.abort();
        }
        drop(self.follower);
        if let Some(dns) = self.dns {
            dns.shutdown().await;
        }
        for endpoint in [Some(&self.endpoint), self.tcp_endpoint.as_ref()]
            .into_iter()
            .flatten()
        {
            endpoint.close(quinn::VarInt::from_u32(0), b"controller stopping");
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
        self.endpoint.wait_idle().await;
        if let Some(tcp) = &self.tcp_endpoint {
            tcp.wait_idle().await;
        }
        self.store.close().await;
    }
}

/// What `/api/v1/info` says this controller offers (see [`ControllerInfo`]).
fn features(
    options: &ServerOptions,
    https_addr: &Option<SocketAddr>,
    origin: &Option<String>,
    stun_addrs: &[SocketAddr],
    dns: &Option<crate::dns::DnsServer>,
) -> Vec<String> {
    let on = [
        ("api-https", https_addr.is_some()),
        ("audit-filters", true),
        ("console", https_addr.is_some() && origin.is_some()),
        ("dns", dns.is_some()),
        ("relay", options.advertise_relay.is_none()),
        ("relay-instance", options.advertise_relay.is_some()),
        ("sign-in", https_addr.is_some() && options.sign_in.is_some()),
        ("stun", !stun_addrs.is_empty()),
    ];
    on.iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The HTTPS listener's TLS, and the fingerprint of the certificate it
/// serves: the operator's certificate and key if given, else the
/// controller's own (the one nodes pin).
fn https_config(
    options: &ServerOptions,
    identity: &data_dir::Identity,
) -> Result<(Arc<rustls::ServerConfig>, String), ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        ServerError::HttpsCertificate(format!("{}: {e}", what.display()))
    };
    let (chain, key) = match &options.https_certificate {
        Some((cert_path, key_path)) => {
            let chain = CertificateDer::pem_file_iter(cert_path)
                .map_err(|e| bad(cert_path, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(cert_path, &e))?;
            if chain.is_empty() {
                return Err(bad(cert_path, &"no certificate in the file"));
            }
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| bad(key_path, &e))?;
            (chain, key)
        }
        None => (vec![identity.cert.clone()], identity.cert_key.clone_key()),
    };
    let fingerprint = chain
        .first()
        .map(data_dir::fingerprint)
        .ok_or_else(|| ServerError::HttpsCertificate("no certificate".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::HttpsCertificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::HttpsCertificate(e.to_string()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(tls), fingerprint))
}

/// Says which networks' pools overlap the site mapped range: mapped
/// prefixes are never allocated over a pool, so such a network only
/// leaves less room for them.
async fn warn_of_pools_in(store: &SqlStore, range: ipnet::Ipv4Net) -> Result<(), ServerError> {
    for network in store.list_networks().await? {
        let pool = network.pool.trunc();
        if pool.contains(&range.network()) || range.contains(&pool.network()) {
            tracing::warn!(network = %network.id, %pool, %range,
                "a network's pool overlaps the site mapped range; mapped prefixes avoid it");
        }
    }
    Ok(())
}
