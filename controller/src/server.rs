//! Starts a whole controller: data directory, database, QUIC control
//! server and HTTP API. `warren-controller serve` and the tests both use it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::control::{self, ControlContext, ControlSetupError};
use crate::data_dir::{self, DataDirError};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::{SqliteStore, Store, StoreError};

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub data_dir: PathBuf,
    pub listen_quic: SocketAddr,
    /// Retry an unbindable `[::]` as `0.0.0.0` (only for the default address).
    pub quic_fallback_v4: bool,
    pub listen_api: SocketAddr,
    /// Host names the API answers to besides IP literals and `localhost`.
    pub api_hosts: Vec<String>,
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory: {0}")]
    DataDir(#[from] DataDirError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("control server: {0}")]
    Control(#[from] ControlSetupError),
    #[error("could not listen for the API on {addr}: {source}")]
    ApiBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running controller.
pub struct Running {
    pub quic_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub fingerprint: String,
    pub hub: Arc<Hub>,
    store: SqliteStore,
    endpoint: quinn::Endpoint,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

pub async fn start(options: ServerOptions) -> Result<Running, ServerError> {
    let identity = data_dir::open(&options.data_dir)?;
    let store = SqliteStore::open(&identity.db_path).await?;
    // Nobody is connected to a process that just started.
    store.reset_presence().await?;
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(Arc::new(store.clone()), metrics);

    let quic_config = control::server_config(&identity)?;
    let endpoint = control::bind(options.listen_quic, options.quic_fallback_v4, quic_config)?;
    let quic_addr = endpoint
        .local_addr()
        .map_err(|source| ControlSetupError::Bind {
            addr: options.listen_quic,
            source,
        })?;
    let listener = TcpListener::bind(options.listen_api)
        .await
        .map_err(|source| ServerError::ApiBind {
            addr: options.listen_api,
            source,
        })?;
    let api_addr = listener
        .local_addr()
        .map_err(|source| ServerError::ApiBind {
            addr: options.listen_api,
            source,
        })?;

    let (stop, stopped) = watch::channel(false);
    let context = Arc::new(ControlContext {
        hub: hub.clone(),
        controller_key: identity.controller_key.clone(),
    });
    let control_task = tokio::spawn(control::serve(endpoint.clone(), context));
    let router = api::router(ApiState::new(hub.clone(), options.api_hosts.clone()));
    let mut stopped_api = stopped.clone();
    let api_task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped_api.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    Ok(Running {
        quic_addr,
        api_addr,
        fingerprint: identity.fingerprint,
        hub,
        store,
        endpoint,
        stop,
        tasks: vec![control_task, api_task],
    })
}

impl Running {
    /// Stops accepting, closes connections and the database.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"controller stopping");
        for task in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
        self.endpoint.wait_idle().await;
        self.store.close().await;
    }
}
