//! `audit [--since TIME] [--until TIME] [--network ID] [--actor TEXT]
//! [--action TEXT] [--member NODE] [--text TEXT]` (a timeline, or every
//! page as JSON), `audit verify [--against FILE]` and `audit export --out FILE`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use warren_cli_assets::{out, outln};
use warren_proto::NetworkId;

use super::client::ApiClient;
use super::output::{columns, field, items, json as print_json, percent_encode};
use super::timeline;
use super::ApiArgs;
use warren_controller::audit_anchor::{self, SignedHead};

/// What `audit export` writes: the entries up to a head, and that head
/// signed by the controller.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Export {
    format: String,
    head: SignedHead,
    entries: Vec<Value>,
}

const EXPORT_FORMAT: &str = "warren-audit-export-v1";

/// Entries fetched per request while following pages.
const PAGE: u32 = 1000;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: Option<AuditCommand>,
    #[command(flatten)]
    filters: AuditFilterArgs,
    /// Only entries after this ID.
    #[arg(long)]
    after: Option<i64>,
    /// At most this many entries (default: all).
    #[arg(long)]
    limit: Option<usize>,
}

/// What to show of the log; the controller checks every filter.
#[derive(Debug, Args)]
struct AuditFilterArgs {
    /// Only entries at or after TIME: RFC 3339 (2026-12-01T00:00:00Z) or a
    /// duration before now (30m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only entries at or before TIME (as for --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only entries about this network.
    #[arg(long)]
    network: Option<NetworkId>,
    /// Only entries whose actor contains TEXT (token:ci, user:ana@, node:, system).
    #[arg(long, value_name = "TEXT")]
    actor: Option<String>,
    /// Only entries whose action contains TEXT (member.authorize, member., policy).
    #[arg(long, value_name = "TEXT")]
    action: Option<String>,
    /// Only entries about this member: a node ID or a name.
    #[arg(long, value_name = "NODE")]
    member: Option<String>,
    /// Only entries that contain TEXT anywhere (actor, action, target, before, after).
    #[arg(long, value_name = "TEXT")]
    text: Option<String>,
}

impl AuditFilterArgs {
    /// The filters as query parameters (`&since=...`), each value encoded.
    fn query(&self) -> String {
        let network = self.network.map(|n| n.to_string());
        [
            ("since", self.since.as_deref()),
            ("until", self.until.as_deref()),
            ("network", network.as_deref()),
            ("actor", self.actor.as_deref()),
            ("action", self.action.as_deref()),
            ("member", self.member.as_deref()),
            ("text", self.text.as_deref()),
        ]
        .iter()
        .filter_map(|(key, value)| value.map(|v| format!("&{key}={}", percent_encode(v, b""))))
        .collect()
    }
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; exit 1 if it is broken. With --against,
    /// also check that the head kept in an export is still in the chain.
    Verify {
        /// A file written by `audit export` earlier.
        #[arg(long, value_name = "FILE")]
        against: Option<PathBuf>,
        /// The controller's certificate fingerprint (as `fingerprint`
        /// prints it) that must have signed the export; default: the
        /// certificate the running controller signs with now.
        #[arg(long, requires = "against")]
        fingerprint: Option<String>,
    },
    /// Write every entry and the signed head to FILE (an anchor for a later
    /// `verify --against`).
    Export {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

pub async fn run(mut args: AuditArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    match args.command {
        Some(AuditCommand::Verify {
            against,
            fingerprint,
        }) => return verify(&client, &args.api, against.as_deref(), fingerprint).await,
        Some(AuditCommand::Export { out }) => return export(&client, &args.api, &out).await,
        None => {}
    }
    let mut entries: Vec<Value> = Vec::new();
    let mut after = args.after;
    loop {
        let mut query = format!("limit={PAGE}{}", args.filters.query());
        if let Some(after) = after {
            query.push_str(&format!("&after={after}"));
        }
        let page = client
            .call(Method::GET, &format!("/api/v1/audit?{query}"), None)
            .await?;
        entries.extend(items(&page, "entries").iter().cloned());
        // `2h` means two hours before the first page's time, on every page.
        for (filter, key) in [
            (&mut args.filters.since, "since"),
            (&mut args.filters.until, "until"),
        ] {
            if let Some(resolved) = page.get(key).and_then(Value::as_str) {
                *filter = Some(resolved.to_string());
            }
        }
        after = page.get("next_after").and_then(Value::as_i64);
        let full = args.limit.is_some_and(|l| entries.len() >= l);
        if after.is_none() || full {
            break;
        }
    }
    if let Some(limit) = args.limit {
        entries.truncate(limit);
    }
    if args.api.json {
        return print_json(&json!({ "entries": entries })).map(|()| ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        warren_cli_assets::errln!("no audit entries match");
    }
    columns(&timeline::rows(&entries));
    Ok(ExitCode::SUCCESS)
}

fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `audit export --out FILE`: the signed head first, then the entries up to
/// it, so the file's last entry is the head it carries.
async fn export(client: &ApiClient, api: &ApiArgs, out: &Path) -> anyhow::Result<ExitCode> {
    let head = client.call(Method::GET, "/api/v1/audit/head", None).await?;
    let head: SignedHead =
        serde_json::from_value(head).context("the API's audit head is not a signed head")?;
    let mut entries: Vec<Value> = Vec::new();
    let mut after: Option<i64> = None;
    while head.id > after.unwrap_or(0) {
        let query = match after {
            Some(after) => format!("limit={PAGE}&after={after}"),
            None => format!("limit={PAGE}"),
        };
        let page = client
            .call(Method::GET, &format!("/api/v1/audit?{query}"), None)
            .await?;
        let page = items(&page, "entries");
        let Some(last) = page
            .last()
            .and_then(|e| e.get("id"))
            .and_then(Value::as_i64)
        else {
            break;
        };
        entries.extend(
            page.iter()
                .filter(|e| e.get("id").and_then(Value::as_i64) <= Some(head.id))
                .cloned(),
        );
        after = Some(last);
    }
    let ends_at_head = match entries.last() {
        Some(last) => {
            last.get("id").and_then(Value::as_i64) == Some(head.id)
                && last.get("hash").and_then(Value::as_str) == Some(head.hash.as_str())
        }
        None => head.id == 0,
    };
    if !ends_at_head {
        bail!("the audit log does not end at the head the controller signed; run `audit verify`");
    }
    let count = entries.len();
    let export = Export {
        format: EXPORT_FORMAT.to_string(),
        head,
        entries,
    };
    let text = serde_json::to_vec_pretty(&export)?;
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    if api.json {
        print_json(&json!({ "file": out, "entries": count, "head": export.head }))?;
    } else {
        outln!(
            "exported {count} entries to {}; head {} {}",
            out.display(),
            export.head.id,
            export.head.hash
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads an export and checks it is one, before anything is asked of the API.
fn read_export(path: &Path) -> anyhow::Result<Export> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let export: Export = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an audit export", path.display()))?;
    if export.format != EXPORT_FORMAT {
        bail!(
            "{}: format {:?}, expected {EXPORT_FORMAT:?}",
            path.display(),
            export.format
        );
    }
    if !is_hash(&export.head.hash) {
        bail!("{}: the head's hash is not 64 hex digits", path.display());
    }
    Ok(export)
}

/// What an export says against the current chain, besides the chain itself.
fn anchor_problems(
    export: &Export,
    report: &Value,
    fingerprint: Option<String>,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let expected = match fingerprint {
        Some(f) => f,
        None => report["head"]["fingerprint"]
            .as_str()
            .context("the controller's head is unsigned; pass --fingerprint")?
            .to_string(),
    };
    if let Err(e) = audit_anchor::verify(&export.head, &expected) {
        problems.push(format!("the export's head: {e}"));
    }
    let last = export.entries.last();
    let ends_at_head = last.and_then(|e| e.get("id")).and_then(Value::as_i64)
        == Some(export.head.id)
        && last.and_then(|e| e.get("hash")).and_then(Value::as_str)
            == Some(export.head.hash.as_str());
    if !ends_at_head && export.head.id != 0 {
        problems.push("the export's entries do not end at its head".to_string());
    }
    let id = export.head.id;
    match report["anchor"]["status"].as_str() {
        Some("matches") => {}
        Some("missing") => problems.push(format!(
            "entry {id} of the export is missing (the chain ends at {}): its tail was cut",
            field(&report["head"], "id")
        )),
        Some("differs") => problems.push(format!(
            "entry {id} has another hash than in the export: history was rewritten"
        )),
        _ => problems.push(format!("the API did not check the anchor: {report}")),
    }
    Ok(problems)
}

/// `audit verify [--against FILE [--fingerprint FP]]`.
async fn verify(
    client: &ApiClient,
    api: &ApiArgs,
    against: Option<&Path>,
    fingerprint: Option<String>,
) -> anyhow::Result<ExitCode> {
    let export = against.map(read_export).transpose()?;
    let path = match &export {
        Some(e) => format!(
            "/api/v1/audit/verify?anchor_id={}&anchor_hash={}",
            e.head.id, e.head.hash
        ),
        None => "/api/v1/audit/verify".to_string(),
    };
    let mut report = client.call(Method::GET, &path, None).await?;
    let chain_ok = report.get("first_bad").is_none_or(Value::is_null);
    let problems = match &export {
        Some(export) => anchor_problems(export, &report, fingerprint)?,
        None => Vec::new(),
    };
    let ok = report.get("ok").and_then(Value::as_bool).unwrap_or(false) && problems.is_empty();
    if api.json {
        report["ok"] = json!(ok);
        report["problems"] = json!(problems);
        print_json(&report)?;
    } else if ok {
        out!(
            "audit chain ok: {} entries, head {}",
            field(&report, "entries"),
            field(&report["head"], "id")
        );
        match &export {
            Some(e) => outln!("; the export's head {} is in it", e.head.id),
            None => outln!(),
        }
    } else {
        if !chain_ok {
            outln!(
                "audit chain BROKEN at entry {} ({} entries)",
                field(&report, "first_bad"),
                field(&report, "entries")
            );
        }
        for problem in &problems {
            outln!("audit chain BROKEN: {problem}");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
