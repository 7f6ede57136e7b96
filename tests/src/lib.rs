//! warren-lab: builds network labs out of Linux network namespaces and runs
//! the real `warren` binary (and wireguard-go, for interop) inside them.
//!
//! Everything a lab makes is named `wl<run><lab><role>` and removed by Drop
//! guards, also when a test fails or panics. Every `ip`, `nft`, `sysctl` and
//! `conntrack` call names a namespace the lab created; the host's own
//! interfaces, routes and rulesets are never touched.
//!
//! # Running
//! The suites in `tests/tests/` need root and these tools: `ip` (iproute2),
//! `nft`, `conntrack`, `sysctl`, `kill`, `tcpdump`, `wireguard-go`, `wg`;
//! the sign-in suites also need Node.js >= 20 with `npm ci --prefix
//! tests/oidc` done, Debian's `chromium` and `chromium-driver`, and `curl`
//! (which the metrics suite needs too).
//! Without root they print `skipped: ...` and pass, except with `CI` set,
//! where they fail. Environment:
//! - `WARREN_BIN`: the `warren` binary (default: next to the test or demo
//!   executable, i.e. `target/debug/warren`).
//! - `WARREN_CONTROLLER_BIN`: the `warren-controller` binary (found the
//!   same way).
//! - `WARREN_LAB_LOG`: log filter for the daemons (default `debug` for
//!   static agents, `info,warren=debug,warren_engine=debug` for managed ones).
//! - `WARREN_LAB_CONTROLLER_LOG`: log filter for the controller.
//! - `WARREN_LAB_KEEP`: keep a failed lab's directory (configs, logs, pcaps).
//!
//! # Layout
//! - [`lab`]: one test's world (name prefix, temp dir, logs) and [`e2e`].
//! - [`netns`], [`link`], [`in_netns`]: namespaces, veths and addresses,
//!   and running Rust code (sockets) inside a namespace.
//! - [`process`]: spawned children with captured logs, ended by PID.
//! - [`topology`], [`nat`], [`star`]: two hosts on a link; the NAT lab of
//!   NATLAB.md; a routed star of hosts around an "internet".
//! - [`warren`], [`status`], [`wggo`], [`keys`], [`node_spec`], [`pair`]:
//!   overlay nodes and how to observe them.
//! - [`controller`], [`managed`], [`mesh`]: `warren-controller` and agents
//!   that join its networks, on a star.
//! - [`wait`]: bounded polling; [`eintr`]: blocking calls restarted after
//!   a signal.
//! - [`natpair`], [`nat_controller`]: two managed agents behind NAT routers
//!   of chosen behaviours and the controller on the internet, for the NAT
//!   matrix, relay suites and `warren-nat-bench`.
//! - [`portmap_gateway`]: miniupnpd in a NAT router, answering NAT-PMP and
//!   PCP, for the port-mapping suite.
//! - [`routes_lab`]: NAT'd sites with masters, clusters and laptops, for the
//!   subnet-route and exit-node suites and the demo.
//! - [`hostile_controller`]: a controller built on `warren-proto` that
//!   speaks for networks it does not own, for the security suites.
//! - [`hostile_node`]: a node built on `warren-proto` that floods joins and
//!   reports endpoints no peer should probe.
//! - [`dns`]: a namespace's own resolv.conf, a test resolver, `dig`, and a
//!   DNS load generator.
//! - [`oidc`], [`browser`], [`http1`]: a real OpenID provider
//!   (`tests/oidc`, Node.js), headless Chromium driven over WebDriver, and
//!   signing in through one in the other; a minimal HTTP/1.1 client.
//! - [`identity_lab`]: the sign-in lab: the provider in its own namespace,
//!   the controller signing people in through it on its HTTPS pages,
//!   managed agents, and `warren join` without a key.
//! - [`postgres`]: a real PostgreSQL server (Debian's) in a temporary
//!   directory, and a fresh database on it per test.
//! - [`ping`], [`transfer`], [`iperf`], [`pcap`], [`wg_message`], [`prng`]:
//!   traffic generators and checkers.

pub mod browser;
pub mod command;
pub mod controller;
pub mod dns;
pub mod eintr;
pub mod error;
pub mod hostile_controller;
pub mod hostile_node;
pub mod http1;
pub mod http_proxy;
pub mod identity_lab;
pub mod in_netns;
pub mod iperf;
pub mod keys;
pub mod kube_lab;
pub mod lab;
pub mod link;
pub mod managed;
pub mod mesh;
pub mod names;
pub mod nat;
pub mod nat_controller;
pub mod natpair;
pub mod netns;
pub mod node_spec;
pub mod oidc;
pub mod pair;
pub mod pcap;
pub mod ping;
pub mod portmap_gateway;
pub mod postgres;
pub mod prng;
pub mod process;
pub mod routes_lab;
pub mod star;
pub mod status;
pub mod topology;
pub mod transfer;
pub mod wait;
pub mod warren;
pub mod wg_message;
pub mod wggo;

pub use error::{LabError, Result};
pub use lab::{e2e, is_root, Lab};
pub use netns::Netns;
