//! `info`: what the controller at `--api` is: its version, certificate
//! fingerprints, listen addresses and features.

use std::process::ExitCode;

use clap::Args;
use hyper::Method;

use super::output::{columns, field, json as print_json};
use super::ApiArgs;

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn run(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let info = client.call(Method::GET, "/api/v1/info", None).await?;
    if args.api.json {
        print_json(&info)?;
        return Ok(ExitCode::SUCCESS);
    }
    let listen = &info["listen"];
    let fingerprints = &info["fingerprints"];
    let row = |name: &str, value: String| vec![name.to_string(), value];
    columns(&[
        row("version", field(&info, "version")),
        row("fingerprint", field(fingerprints, "controller")),
        row("https-fingerprint", field(fingerprints, "https")),
        row("quic", field(listen, "quic")),
        row("api", field(listen, "api")),
        row("https", field(listen, "https")),
        row("stun", field(listen, "stun")),
        row("dns", field(listen, "dns")),
        row("features", field(&info, "features")),
    ]);
    Ok(ExitCode::SUCCESS)
}
