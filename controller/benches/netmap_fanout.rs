//! Control-plane benchmark: how long from `member authorize` until every
//! online member has a netmap with the new peer, and what the controller
//! costs in memory and CPU, with 1,000 nodes.
//!
//! It starts the real `warren-controller serve` as a child process and runs
//! every node in this one process: each has its own key, its own QUIC
//! connection and does the real handshake, join and netmap application.
//! All traffic stays on 127.0.0.1.
//!
//! ```sh
//! cargo bench -p warren-controller --bench netmap_fanout     # NODES=1000 ROUNDS=5
//! DATABASE=postgres cargo bench -p warren-controller --bench netmap_fanout
//! ```
//!
//! With `DATABASE=postgres` the controller keeps its state in a PostgreSQL
//! server the bench starts (Debian's; as the `postgres` user when run as
//! root), on loopback.
//!
//! # Layout
//! - `child`: the controller process, its addresses, /proc figures, kill on drop.
//! - `api`: the admin HTTP API over one kept-open connection.
//! - `sim_node`: one simulated node and the [`sim_node::Fleet`] they report to.

// A bench root resolves modules beside itself, so name the folder.
#[path = "netmap_fanout/api.rs"]
mod api;
#[path = "netmap_fanout/child.rs"]
mod child;
#[path = "netmap_fanout/sim_node.rs"]
mod sim_node;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hyper::Method;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use warren_proto::NetworkId;

use api::Api;
use child::{Controller, Memory};
use sim_node::{Fleet, Join};

/// Joins in flight at once: gentle on a small machine, still a stampede.
const CONCURRENCY: usize = 50;
/// Client UDP sockets the nodes share.
const SOCKETS: usize = 8;
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let nodes = env_usize("NODES", 1000);
    let rounds = env_usize("ROUNDS", 5);
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
    let bin = child::binary();
    let postgres = std::env::var("DATABASE").is_ok_and(|d| d == "postgres");
    let mut controller = match Controller::start(&bin, postgres) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: starting {}: {e:#}", bin.display());
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&mut controller, nodes, rounds)) {
        Ok(report) => {
            let store = if postgres {
                "PostgreSQL (its CPU not counted)"
            } else {
                "SQLite"
            };
            println!("\ncontroller state in {store}");
            report.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            let alive = controller.check_alive();
            eprintln!("error: {e:#}");
            if let Err(dead) = alive {
                eprintln!("{dead:#}");
            }
            eprintln!("controller log (last lines):\n{}", controller.log_tail(40));
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

struct Round {
    api: Duration,
    first: Duration,
    median: Duration,
    all: Duration,
    members: usize,
    cpu: f64,
}

struct Report {
    nodes: usize,
    joined: Duration,
    converged: Duration,
    rounds: Vec<Round>,
    idle: Memory,
    loaded: Memory,
    after: Memory,
    cpu_join: f64,
    cpu_total: f64,
    sim_cpu: f64,
    pushes: f64,
    connected: f64,
    lost: usize,
    resyncs: usize,
    /// 1-minute load average at the start and the end: other work on the
    /// machine shows in every figure.
    load: (String, String),
}

async fn run(controller: &mut Controller, nodes: usize, rounds: usize) -> anyhow::Result<Report> {
    let mut api = Api::connect(controller.api, &controller.token).await?;
    let network = api
        .call(
            Method::POST,
            "/api/v1/networks",
            Some(json!({ "name": "bench" })),
        )
        .await?;
    let network: NetworkId = network["id"]
        .as_str()
        .context("network without id")?
        .parse()?;
    let key_path = format!("/api/v1/networks/{network}/keys");
    let key = api
        .call(Method::POST, &key_path, Some(json!({ "reusable": true })))
        .await?;
    let key = key["key"].as_str().context("no key")?.to_owned();
    controller.settle().await?;
    let idle = controller.memory()?;
    let cpu_start = controller.cpu_seconds()?;
    let sim_cpu_start = child::cpu_seconds("self")?;
    let load_start = load_average();

    let (fleet, mut arrivals) = Fleet::new(nodes + rounds);
    let sockets = sim_node::endpoints(&controller.fingerprint, SOCKETS)?;
    eprintln!("joining {nodes} nodes, {CONCURRENCY} at a time");
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut joins = JoinSet::new();
    for index in 0..nodes {
        let permit = limit.clone().acquire_owned().await?;
        let join = Join {
            index,
            network,
            preauth_key: Some(key.clone()),
        };
        let task = sim_node::join(
            sockets[index % SOCKETS].clone(),
            controller.quic,
            join,
            fleet.clone(),
        );
        joins.spawn(async move {
            let result = task.await;
            drop(permit);
            result.with_context(|| format!("node {index}"))
        });
    }
    let mut failed = Vec::new();
    while let Some(result) = joins.join_next().await {
        if let Err(e) = result? {
            failed.push(format!("{e:#}"));
        }
    }
    if let Some(first) = failed.first() {
        bail!("{} of {nodes} joins failed; first: {first}", failed.len());
    }
    let joined = started.elapsed();
    eprintln!("all joined in {joined:.1?}; waiting for every map to list every peer online");
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let done = fleet.converged(nodes, nodes - 1);
        if done == nodes {
            break;
        }
        if Instant::now() > deadline {
            bail!("after {CONVERGE_TIMEOUT:?}, only {done} of {nodes} maps list {} online peers (lost connections: {}, last: {:?}; resyncs: {})",
                nodes - 1, fleet.lost.load(Ordering::Relaxed),
                fleet.last_loss.lock().map(|l| l.clone()).unwrap_or_default(),
                fleet.resyncs.load(Ordering::Relaxed));
        }
        controller.check_alive()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let converged = started.elapsed();
    controller.settle().await?;
    let loaded = controller.memory()?;
    let cpu_join = controller.cpu_seconds()? - cpu_start;

    let mut timed = Vec::new();
    for round in 0..rounds {
        let index = nodes + round;
        let join = Join {
            index,
            network,
            preauth_key: None,
        };
        let socket = sockets[index % SOCKETS].clone();
        let pending = sim_node::join(socket, controller.quic, join, fleet.clone()).await?;
        // Its join and presence changes fan out too (as empty deltas): not timed.
        controller.settle().await?;
        fleet.set_target(pending);
        let members = nodes + round;
        let path = format!("/api/v1/networks/{network}/members/{pending}/authorize");
        let cpu_before = controller.cpu_seconds()?;
        let sent = Instant::now();
        api.call(Method::POST, &path, None).await?;
        let answered = sent.elapsed();
        let mut times = Vec::with_capacity(members);
        let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
        while times.len() < members {
            match tokio::time::timeout_at(deadline, arrivals.recv()).await {
                Ok(Some((node, at))) if node == pending => times.push(at - sent),
                Ok(Some(_)) => {}
                Ok(None) => bail!("arrival channel closed"),
                Err(_) => bail!(
                    "round {round}: after {ROUND_TIMEOUT:?} only {} of {members} members had node {pending} (lost connections: {}, last: {:?})",
                    times.len(),
                    fleet.lost.load(Ordering::Relaxed),
                    fleet.last_loss.lock().map(|l| l.clone()).unwrap_or_default()
                ),
            }
        }
        times.sort();
        controller.settle().await?;
        let round = Round {
            api: answered,
            first: times[0],
            median: times[members / 2],
            all: times[members - 1],
            members,
            cpu: controller.cpu_seconds()? - cpu_before,
        };
        eprintln!(
            "round {}: all {} members in {:.1?}",
            timed.len() + 1,
            members,
            round.all
        );
        timed.push(round);
        controller.check_alive()?;
    }
    Ok(Report {
        nodes,
        joined,
        converged,
        rounds: timed,
        idle,
        loaded,
        after: controller.memory()?,
        cpu_join,
        cpu_total: controller.cpu_seconds()? - cpu_start,
        sim_cpu: child::cpu_seconds("self")? - sim_cpu_start,
        pushes: api.metric("warren_netmap_pushes_total").await?,
        connected: api.metric("warren_connected_nodes").await?,
        lost: fleet.lost.load(Ordering::Relaxed),
        resyncs: fleet.resyncs.load(Ordering::Relaxed),
        load: (load_start, load_average()),
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

impl Report {
    fn print(&self) {
        let n = self.nodes;
        println!("\nnodes: {n}, joins {CONCURRENCY} at a time, all on 127.0.0.1\n");
        println!("| round | members | API answered ms | first member ms | median member ms | all members ms | controller CPU ms |");
        println!("|---|---|---|---|---|---|---|");
        for (i, r) in self.rounds.iter().enumerate() {
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.0} |",
                i + 1,
                r.members,
                ms(r.api),
                ms(r.first),
                ms(r.median),
                ms(r.all),
                r.cpu * 1000.0
            );
        }
        let mut all: Vec<Duration> = self.rounds.iter().map(|r| r.all).collect();
        all.sort();
        println!("\n| figure | value |\n|---|---|");
        if let (Some(min), Some(max)) = (all.first(), all.last()) {
            let median = all[all.len() / 2];
            println!(
                "| authorize → all {n}+ online members have the new peer, min / median / max ms ({} rounds) | {} / {} / {} |",
                all.len(), ms(*min), ms(median), ms(*max)
            );
        }
        println!(
            "| connect + join all {n} nodes | {:.2} s |",
            self.joined.as_secs_f64()
        );
        println!(
            "| … until every map lists all {} peers online | {:.2} s |",
            n - 1,
            self.converged.as_secs_f64()
        );
        println!(
            "| controller RSS idle (network made, no nodes) | {} MiB |",
            mib(self.idle.rss_kib)
        );
        println!(
            "| controller RSS with {n} nodes, settled | {} MiB |",
            mib(self.loaded.rss_kib)
        );
        println!(
            "| controller RSS after the rounds / peak (VmHWM) | {} / {} MiB |",
            mib(self.after.rss_kib),
            mib(self.after.hwm_kib)
        );
        println!(
            "| controller CPU: join phase / whole run | {:.1} / {:.1} s |",
            self.cpu_join, self.cpu_total
        );
        println!(
            "| simulator CPU (this process), whole run | {:.1} s |",
            self.sim_cpu
        );
        println!(
            "| netmap pushes (full + delta) / connected nodes at the end | {:.0} / {:.0} |",
            self.pushes, self.connected
        );
        println!(
            "| lost connections / resyncs | {} / {} |",
            self.lost, self.resyncs
        );
        println!(
            "| load average (1 min) at start / end, {} cores | {} / {} |",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.load.0,
            self.load.1
        );
        println!(
            "\ncommand: NODES={n} ROUNDS={} cargo bench -p warren-controller --bench netmap_fanout",
            self.rounds.len()
        );
    }
}
