//! `fingerprint`: the certificate hash nodes pin.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use warren_cli_assets::outln;
use warren_controller::data_dir;

#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// The controller's data directory, or a relay-only instance's state directory.
    #[arg(long, env = "WARREN_DATA_DIR")]
    data_dir: PathBuf,
}

pub fn run(args: FingerprintArgs) -> anyhow::Result<ExitCode> {
    let fingerprint = data_dir::read_fingerprint(&args.data_dir).with_context(|| {
        format!(
            "reading the certificate in {} (has `serve`, or `relay` for its state directory, run there yet?)",
            args.data_dir.display()
        )
    })?;
    outln!("{fingerprint}");
    Ok(ExitCode::SUCCESS)
}
