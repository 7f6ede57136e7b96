//! `serve` and `check-config`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use warren_controller::server::{self, ServerOptions};

use super::config::{resolve, ServeArgs};

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = resolve(&args)?;
    let running = server::start(ServerOptions {
        data_dir: config.data_dir.clone(),
        listen_quic: config.listen_quic,
        quic_fallback_v4: config.quic_is_default,
        listen_api: config.listen_api,
        api_hosts: config.api_hosts.clone(),
    })
    .await
    .context("starting the controller")?;
    // Scripts (and the crash test) read these lines to find the controller.
    let mut out = std::io::stdout().lock();
    writeln!(out, "fingerprint: {}", running.fingerprint)?;
    writeln!(out, "quic: {}", running.quic_addr)?;
    writeln!(out, "api: http://{}", running.api_addr)?;
    out.flush()?;
    drop(out);
    tracing::info!(
        quic = %running.quic_addr,
        api = %running.api_addr,
        fingerprint = %running.fingerprint,
        data_dir = %config.data_dir.display(),
        "controller running"
    );
    wait_for_signal().await?;
    tracing::info!("stopping");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<()> {
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
    print!(
        "{}",
        toml::to_string(&config).context("printing the configuration")?
    );
    Ok(ExitCode::SUCCESS)
}
