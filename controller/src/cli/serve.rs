//! `serve` and `check-config`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use warren_cli_assets::out;
use warren_controller::api::local_socket::AdminSocketPlace;
use warren_controller::server::{self, AdvertisedRelay, Role, ServerOptions, TcpFallback};

use super::config::{resolve, ServeArgs};

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = resolve(&args)?;
    for note in super::sign_in::notes(config.github.as_ref()) {
        tracing::warn!("{note}");
    }
    let running = server::start(ServerOptions {
        role: Role::Controller,
        data_dir: config.data_dir.clone(),
        database: config.database.clone(),
        listen_quic: config.listen_quic,
        quic_fallback_v4: config.quic_is_default,
        listen_tcp: config.listen_tcp.map(|addr| TcpFallback {
            addr,
            is_default: config.tcp_is_default,
        }),
        listen_api: Some(config.listen_api),
        api_hosts: config.api_hosts.clone(),
        admin_socket: Some(AdminSocketPlace {
            path: config.admin_socket.clone(),
            required: !config.admin_socket_is_default,
        }),
        listen_stun: config.listen_stun.clone(),
        stun_fallback_v4: config.stun_is_default,
        relay: config.relay_limits(),
        advertise_relay: config
            .advertise_relay
            .clone()
            .zip(config.advertise_relay_fingerprint.clone())
            .map(|(address, fingerprint)| AdvertisedRelay {
                address,
                fingerprint,
            }),
        state_dir: None,
        advertise_address: config.advertise_address.clone(),
        listen_https: config.listen_https,
        https_certificate: config.https_cert.clone().zip(config.https_key.clone()),
        listen_dns: config.listen_dns,
        sign_in: super::sign_in::settings(
            config.public_url.as_deref(),
            config.listen_https,
            config.oidc.as_ref(),
            config.github.as_ref(),
        )?,
        retry_above_handshakes: warren_controller::control::admission::RETRY_ABOVE_HANDSHAKES,
        roles: config.roles.clone(),
        public_url: config.public_url.clone(),
        site_mapped_range: config.site_mapped_range,
    })
    .await
    .context("starting the controller")?;
    print_addresses(&running)?;
    tracing::info!(
        quic = %running.quic_addr,
        tcp = ?running.tcp_addr,
        api = ?running.api_addr,
        admin_socket = ?running.admin_socket,
        stun = ?running.stun_addrs,
        fingerprint = %running.fingerprint,
        data_dir = %config.data_dir.display(),
        "controller running"
    );
    wait_for_signal().await?;
    tracing::info!("stopping");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Scripts (and the crash test) read these lines to find the controller:
/// `fingerprint:`, `quic:`, `tcp:` (if QUIC over TCP listens), `api:` (if HTTP listens), `admin-socket:` (if
/// there is one), `https:` and
/// `https-fingerprint:` (if HTTPS does), one `stun:` per socket, `dns:`
/// (once the zones are loaded).
pub fn print_addresses(running: &server::Running) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "fingerprint: {}", running.fingerprint)?;
    writeln!(out, "quic: {}", running.quic_addr)?;
    if let Some(tcp) = running.tcp_addr {
        writeln!(out, "tcp: {tcp}")?;
    }
    if let Some(api) = running.api_addr {
        writeln!(out, "api: http://{api}")?;
    }
    if let Some(path) = &running.admin_socket {
        writeln!(out, "admin-socket: {}", path.display())?;
    }
    if let Some(https) = running.https_addr {
        writeln!(out, "https: https://{https}")?;
    }
    if let Some(fingerprint) = &running.https_fingerprint {
        writeln!(out, "https-fingerprint: {fingerprint}")?;
    }
    for stun in &running.stun_addrs {
        writeln!(out, "stun: {stun}")?;
    }
    if let Some(dns) = running.dns_addr {
        writeln!(out, "dns: {dns}")?;
    }
    out.flush()?;
    Ok(())
}

pub async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

pub fn check_config(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = resolve(&args)?;
    for note in super::sign_in::notes(config.github.as_ref()) {
        warren_cli_assets::errln!("note: {note}");
    }
    out!(
        "{}",
        toml::to_string(&config).context("printing the configuration")?
    );
    Ok(ExitCode::SUCCESS)
}
