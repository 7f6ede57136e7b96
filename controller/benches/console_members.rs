//! Console benchmark: the server time of the members page of a network of
//! 1,000 members (budget: 200 ms), next to the anchor measured in the same
//! run: the API's JSON list of the same members. Each request goes through
//! the real routers (session or token lookup in SQLite, the hub's
//! snapshot, rendering); "after a change" drops the hub's cached snapshot
//! first, as a live page's refresh after a change finds it.
//!
//! ```sh
//! cargo bench -p warren-controller --bench console_members   # MEMBERS=1000 ROUNDS=20
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use warren_controller::api::{self, ApiState};
use warren_controller::console::{self, ConsoleState};
use warren_controller::hub::Hub;
use warren_controller::metrics::Metrics;
use warren_controller::roles::Roles;
use warren_controller::store::{
    Actor, JoinRequest, NewNetwork, Person, PreauthKeySpec, Scope, SqlStore, Store, TokenSpec,
    UserStore,
};
use warren_proto::{NetworkId, NodePrivateKey};

const BUDGET: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let members = env_usize("MEMBERS", 1000);
    let rounds = env_usize("ROUNDS", 20);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(members, rounds)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct World {
    hub: Arc<Hub>,
    net: NetworkId,
    console: Router,
    api: Router,
    session: String,
    token: String,
}

async fn world(dir: &std::path::Path, members: usize) -> anyhow::Result<World> {
    let store = SqlStore::open(&dir.join("controller.db")).await?;
    let system = Actor::system();
    let token = store
        .create_token(&system, TokenSpec::new(Scope::Admin, Some("bench")))
        .await?
        .secret;
    let net = store
        .create_network(
            &system,
            NewNetwork {
                name: "big".into(),
                pool: "10.200.0.0/16".parse()?,
                zone: "big.warren.internal".into(),
                mtu: 1420,
            },
        )
        .await?
        .id;
    let key = store
        .create_preauth_key(&system, net, PreauthKeySpec::reusable())
        .await?
        .key;
    for i in 0..members {
        let node_key = NodePrivateKey::generate().public_key();
        store
            .join(JoinRequest {
                network_id: net,
                node_key,
                name: format!("node-{i:04}"),
                preauth_key: Some(key.clone()),
                agent_version: "0.9.0".into(),
                endpoints: vec![format!("198.51.100.{}:{}", i % 250 + 1, 40000 + i).parse()?],
            })
            .await?;
        if i % 2 == 0 {
            store.set_presence(net, &node_key, true).await?;
        }
    }
    let ana = store
        .sign_in_user(&Person {
            issuer: "http://idp.bench".into(),
            subject: "ana".into(),
            email: "ana@example.com".into(),
            name: "Ana".into(),
            groups: vec![],
        })
        .await?;
    let session = store.start_session(&ana, 3600).await?;
    let hub = Hub::new(Arc::new(store), Arc::new(Metrics::default()));
    let roles = Roles::parse(&["user:ana@example.com".into()], &[]).map_err(anyhow::Error::msg)?;
    let console = console::router(ConsoleState::new(
        hub.clone(),
        Arc::new(roles),
        "https://warren.bench".into(),
        None,
    ));
    let api = api::router(ApiState::new(hub.clone(), vec![]));
    Ok(World {
        hub,
        net,
        console,
        api,
        session,
        token,
    })
}

/// One request through `router`; its time and body size.
async fn time(router: &Router, request: Request<Body>) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let response = tower::ServiceExt::oneshot(router.clone(), request).await?;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?
        .to_bytes();
    let took = started.elapsed();
    if status != StatusCode::OK {
        bail!("status {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok((took, body.len()))
}

struct Figures {
    median: Duration,
    max: Duration,
    bytes: usize,
}

async fn measure(
    w: &World,
    rounds: usize,
    after_change: bool,
    page: bool,
) -> anyhow::Result<Figures> {
    let mut times = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for _ in 0..rounds {
        if after_change {
            w.hub.expire_snapshots();
        }
        let request = if page {
            Request::get(format!("/console/networks/{}", w.net))
                .header("cookie", format!("__Host-warren-session={}", w.session))
                .body(Body::empty())?
        } else {
            Request::get(format!("/api/v1/networks/{}/members", w.net))
                .header("authorization", format!("Bearer {}", w.token))
                .body(Body::empty())?
        };
        let router = if page { &w.console } else { &w.api };
        let (took, size) = time(router, request).await?;
        times.push(took);
        bytes = size;
    }
    times.sort();
    Ok(Figures {
        median: times[times.len() / 2],
        max: times[times.len() - 1],
        bytes,
    })
}

async fn run(members: usize, rounds: usize) -> anyhow::Result<()> {
    if rounds == 0 {
        bail!("ROUNDS must be at least 1");
    }
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let started = Instant::now();
    let w = world(dir.path(), members).await?;
    eprintln!(
        "{members} members stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Warm both paths once (templates, statement caches).
    measure(&w, 1, true, true).await?;
    measure(&w, 1, true, false).await?;
    println!("members page of a network of {members} members, {rounds} rounds (median / max):");
    for (label, after_change) in [("after a change", true), ("cached snapshot", false)] {
        let page = measure(&w, rounds, after_change, true).await?;
        let anchor = measure(&w, rounds, after_change, false).await?;
        println!(
            "  {label:<16} console page {:>7.1} / {:>7.1} ms ({} KiB)   anchor: API JSON list {:>7.1} / {:>7.1} ms ({} KiB)",
            ms(page.median),
            ms(page.max),
            page.bytes / 1024,
            ms(anchor.median),
            ms(anchor.max),
            anchor.bytes / 1024,
        );
        if after_change {
            println!(
                "  budget {} ms for the page after a change: {}",
                BUDGET.as_millis(),
                if page.median <= BUDGET {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
