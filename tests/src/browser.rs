//! Headless Chromium in a lab namespace, driven by `chromedriver` over
//! plain W3C WebDriver (JSON over HTTP/1.1), as a person at a browser would
//! sign in.
//!
//! Each browser has its own directory under the lab's (HOME, TMPDIR, XDG
//! dirs and the Chromium profile), so nothing is left in the host's home or
//! `/tmp`. Closing deletes the session, stops chromedriver by its PID and
//! waits for every Chromium process it started to end.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{LabError, Result};
use crate::http1::{self, Request};
use crate::lab::Lab;
use crate::netns::Netns;
use crate::process::Process;
use crate::wait::{self, Poll};

/// Debian's packages (`chromium`, `chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver gets to listen and a session to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `find` looks for an element before it fails.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one page load may take (a WebDriver session timeout).
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one WebDriver command may take to answer; more than a page
/// load, which navigation commands wait for.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long Chromium's processes get to end after the session is deleted.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The W3C key under which an element reference travels.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium's flags. Headless, and as root it needs `--no-sandbox` (else
/// chromedriver says only "session not created"). The lab's pages use
/// self-signed certificates. The rest keeps it from calling out to the
/// internet for updates, sync, metrics and the like; see also
/// [`resolver_rules`].
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--ignore-certificate-errors",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-pings",
    "--dns-prefetch-disable",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--password-store=basic",
    "--use-mock-keychain",
    // Links to a member's http:// service go there, not to https:// first.
    "--disable-features=HttpsUpgrades",
];

/// Numbers the browsers of one test process, for labels and directories.
static NEXT_BROWSER: AtomicU32 = AtomicU32::new(1);

/// A reference to an element of the current page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementId(pub String);

/// One headless Chromium with one WebDriver session.
#[derive(Debug)]
pub struct Browser {
    netns: String,
    driver: Option<Process>,
    addr: SocketAddr,
    session: Option<String>,
    dir: PathBuf,
}

impl Browser {
    /// Starts chromedriver inside `ns` and opens a session. The browser
    /// resolves no host names: pages are reached by address.
    pub fn start(lab: &Lab, ns: &Netns) -> Result<Browser> {
        Self::start_with_hosts(lab, ns, &[])
    }

    /// [`Browser::start`], with `hosts` (name, address) as the only names
    /// the browser resolves.
    pub fn start_with_hosts(lab: &Lab, ns: &Netns, hosts: &[(&str, IpAddr)]) -> Result<Browser> {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(tool).exists() {
                return Err(LabError::Invalid(format!(
                    "{tool} is missing: apt-get install chromium chromium-driver"
                )));
            }
        }
        // chromedriver listens on loopback, and Chromium reaches the
        // namespace's own addresses through it too.
        ns.ip(["link", "set", "lo", "up"])?;
        let n = NEXT_BROWSER.fetch_add(1, Ordering::Relaxed);
        let label = format!("browser-{n}");
        let dir = lab.subdir(&label)?;
        let home = make_dir(&dir, "home")?;
        let tmp = make_dir(&dir, "tmp")?;
        let config = make_dir(&dir, "home/.config")?;
        let cache = make_dir(&dir, "home/.cache")?;
        let profile = make_dir(&dir, "profile")?;
        let log = dir.join("chromedriver.log");
        let mut envs = Vec::new();
        for (key, path) in [
            ("HOME", &home),
            ("TMPDIR", &tmp),
            ("XDG_CONFIG_HOME", &config),
            ("XDG_CACHE_HOME", &cache),
        ] {
            envs.push((key, path_str(path)?.to_owned()));
        }
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let started = Instant::now();
        // Port 0: chromedriver picks a free port and says which, so two
        // browsers in one namespace never collide.
        let driver = lab.spawn_in(
            ns,
            &format!("chromedriver-{n}"),
            CHROMEDRIVER,
            [
                "--port=0".to_owned(),
                format!("--log-path={}", path_str(&log)?),
            ],
            &envs,
        )?;
        let mut browser = Browser {
            netns: ns.name().to_owned(),
            driver: Some(driver),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            session: None,
            dir,
        };
        let port = browser.wait_port(started)?;
        browser.addr.set_port(port);
        browser.wait_status()?;
        browser.new_session(&profile, hosts)?;
        Ok(browser)
    }

    /// The browser's own directory (home, temp, profile, driver log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn driver(&mut self) -> Result<&mut Process> {
        self.driver
            .as_mut()
            .ok_or_else(|| LabError::Invalid("the browser is closed".into()))
    }

    /// chromedriver prints "... started successfully on port N."
    fn wait_port(&mut self, started: Instant) -> Result<u16> {
        let left = START_TIMEOUT.saturating_sub(started.elapsed());
        wait::until("chromedriver to say its port", left, || {
            let driver = self.driver()?;
            driver.ensure_running()?;
            let out = driver.stdout();
            Ok(match port_in(&out) {
                Some(port) => Poll::Ready(port),
                None => Poll::Pending(format!("stdout {out:?}")),
            })
        })
    }

    fn wait_status(&mut self) -> Result<()> {
        wait::until("chromedriver to answer /status", START_TIMEOUT, || {
            self.driver()?.ensure_running()?;
            Ok(match self.call("GET", "/status", None) {
                Ok(v) if v["ready"] == json!(true) => Poll::Ready(()),
                Ok(v) => Poll::Pending(v.to_string()),
                Err(e) => Poll::Pending(e.to_string()),
            })
        })
    }

    fn new_session(&mut self, profile: &Path, hosts: &[(&str, IpAddr)]) -> Result<()> {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", path_str(profile)?));
        args.push(format!("--host-resolver-rules={}", resolver_rules(hosts)));
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": true,
                    "pageLoadStrategy": "normal",
                    "timeouts": {
                        "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() as u64,
                        "script": 10_000,
                        "implicit": 0,
                    },
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }
            }
        });
        let value = self.call("POST", "/session", Some(&caps))?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| LabError::Output {
                what: "WebDriver new session".into(),
                detail: value.to_string(),
            })?;
        self.session = Some(id.to_owned());
        Ok(())
    }

    /// One WebDriver command; returns the reply's `value`.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let command = format!("{method} {path}");
        let mut req = Request::new(method, path, COMMAND_TIMEOUT);
        if let Some(body) = body {
            req = req.json(body);
        }
        let reply = http1::send(&self.netns, self.addr, &req)?;
        let mut json = reply.json(&format!("WebDriver {command}"))?;
        let value = json
            .get_mut("value")
            .map(Value::take)
            .unwrap_or(Value::Null);
        if reply.status != 200 {
            let text = |key: &str| value[key].as_str().unwrap_or("").to_owned();
            return Err(LabError::WebDriver {
                command,
                error: format!("HTTP {} {}", reply.status, text("error")),
                message: text("message"),
            });
        }
        Ok(value)
    }

    /// A command on the current session.
    fn session_call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let session = self
            .session
            .as_deref()
            .ok_or_else(|| LabError::Invalid("the browser has no session".into()))?;
        self.call(method, &format!("/session/{session}{path}"), body)
    }

    /// Loads `url` and waits for the page to load. A load that ends on
    /// Chromium's own network-error page is an error naming the error
    /// (`ERR_...`), after one more try a second later: Chromium now and
    /// then drops its first TLS connection to a lab server before sending
    /// anything, which the server sees as an aborted handshake.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.session_call("POST", "/url", Some(&json!({ "url": url })))?;
        let Some(error) = self.network_error()? else {
            return Ok(());
        };
        eprintln!("loading {url} showed {error}; trying once more");
        std::thread::sleep(Duration::from_secs(1));
        self.session_call("POST", "/url", Some(&json!({ "url": url })))?;
        match self.network_error()? {
            None => Ok(()),
            Some(error) => Err(LabError::Output {
                what: format!("loading {url}"),
                detail: format!("Chromium's error page, twice: {error}"),
            }),
        }
    }

    /// The error code on the page if it is Chromium's network-error page.
    fn network_error(&self) -> Result<Option<String>> {
        let script = "const body = document.body; \
            if (!body || !body.classList.contains('neterror')) return null; \
            const code = document.querySelector('.error-code'); \
            return code ? code.textContent.trim() : 'a network error';";
        let v = self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// The value of the cookie `name` the browser holds for the current
    /// page, if any (HttpOnly ones too: WebDriver sees them all).
    pub fn cookie(&self, name: &str) -> Result<Option<String>> {
        match self.session_call("GET", &format!("/cookie/{name}"), None) {
            Ok(v) => Ok(v["value"].as_str().map(str::to_owned)),
            Err(LabError::WebDriver { error, .. }) if error.contains("no such cookie") => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn current_url(&self) -> Result<String> {
        let v = self.session_call("GET", "/url", None)?;
        string_value(v, "current URL")
    }

    pub fn title(&self) -> Result<String> {
        let v = self.session_call("GET", "/title", None)?;
        string_value(v, "title")
    }

    pub fn page_source(&self) -> Result<String> {
        let v = self.session_call("GET", "/source", None)?;
        string_value(v, "page source")
    }

    /// The first element matching `css` now, if any.
    pub fn find_now(&self, css: &str) -> Result<Option<ElementId>> {
        let body = json!({ "using": "css selector", "value": css });
        match self.session_call("POST", "/element", Some(&body)) {
            Ok(v) => match v[ELEMENT_KEY].as_str() {
                Some(id) => Ok(Some(ElementId(id.to_owned()))),
                None => Err(LabError::Output {
                    what: format!("WebDriver find {css:?}"),
                    detail: v.to_string(),
                }),
            },
            Err(LabError::WebDriver { error, .. }) if error.ends_with("no such element") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The first element matching `css`, waiting up to [`FIND_TIMEOUT`]
    /// for it to appear.
    pub fn find(&self, css: &str) -> Result<ElementId> {
        wait::until(format!("an element {css:?}"), FIND_TIMEOUT, || {
            Ok(match self.find_now(css)? {
                Some(id) => Poll::Ready(id),
                None => Poll::Pending(self.whereabouts()),
            })
        })
    }

    /// Where the browser is, for messages: URL and title.
    pub fn whereabouts(&self) -> String {
        match (self.current_url(), self.title()) {
            (Ok(url), Ok(title)) => format!("page {url} titled {title:?}"),
            (Err(e), _) | (_, Err(e)) => format!("cannot tell the page: {e}"),
        }
    }

    /// Clears the field matching `css` and types `text` into it.
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        let ElementId(id) = self.find(css)?;
        self.session_call("POST", &format!("/element/{id}/clear"), Some(&json!({})))?;
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        )
        .map(|_| ())
    }

    /// Clicks the element matching `css` (and waits for a navigation it
    /// starts, as WebDriver does). An element a live page replaced between
    /// finding and clicking (so it was never clicked) is found again.
    pub fn click(&self, css: &str) -> Result<()> {
        wait::until(format!("a click on {css:?}"), FIND_TIMEOUT, || {
            let ElementId(id) = self.find(css)?;
            match self.session_call("POST", &format!("/element/{id}/click"), Some(&json!({}))) {
                Ok(_) => Ok(Poll::Ready(())),
                Err(error) if is_stale(&error) => {
                    Ok(Poll::Pending(format!("{css:?} was replaced: {error}")))
                }
                Err(e) => Err(e),
            }
        })
    }

    /// The rendered text of the element matching `css`.
    /// An element is found again if the page replaced it in between (a
    /// navigation that was still finishing).
    pub fn text(&self, css: &str) -> Result<String> {
        wait::until(format!("the text of {css:?}"), FIND_TIMEOUT, || {
            let ElementId(id) = self.find(css)?;
            match self.session_call("GET", &format!("/element/{id}/text"), None) {
                Ok(v) => Ok(Poll::Ready(string_value(v, "element text")?)),
                Err(error) if is_stale(&error) => {
                    Ok(Poll::Pending(format!("{css:?} was replaced: {error}")))
                }
                Err(e) => Err(e),
            }
        })
    }

    /// The rendered text of element `id`, found earlier: an error if the
    /// page it belonged to is gone (a reload or a navigation), which is
    /// how a test tells an update in place from a new page.
    pub fn element_text(&self, id: &ElementId) -> Result<String> {
        let v = self.session_call("GET", &format!("/element/{}/text", id.0), None)?;
        string_value(v, "element text")
    }

    /// A DOM property (`value` of an input) of the element matching `css`.
    /// An element a live page replaced in between is found again.
    pub fn property(&self, css: &str, name: &str) -> Result<String> {
        wait::until(format!("the {name} of {css:?}"), FIND_TIMEOUT, || {
            let ElementId(id) = self.find(css)?;
            match self.session_call("GET", &format!("/element/{id}/property/{name}"), None) {
                Ok(v) => Ok(Poll::Ready(string_value(v, "element property")?)),
                Err(error) if is_stale(&error) => {
                    Ok(Poll::Pending(format!("{css:?} was replaced: {error}")))
                }
                Err(e) => Err(e),
            }
        })
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        use base64::Engine as _;
        let v = self.session_call("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(string_value(v, "screenshot")?)
            .map_err(|e| LabError::Output {
                what: "WebDriver screenshot".into(),
                detail: e.to_string(),
            })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        }
        std::fs::write(path, png)
            .map_err(|e| LabError::io(format!("writing {}", path.display()), e))
    }

    /// Resizes the window (a phone is 390 by 844).
    pub fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        let rect = json!({ "width": width, "height": height });
        self.session_call("POST", "/window/rect", Some(&rect))
            .map(|_| ())
    }

    /// Waits until the current URL satisfies `accept`; returns it.
    pub fn wait_for_url(
        &self,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Result<String> {
        wait::until(format!("the browser's URL to be {what}"), timeout, || {
            let url = self.current_url()?;
            Ok(if accept(&url) {
                Poll::Ready(url)
            } else {
                Poll::Pending(self.whereabouts())
            })
        })
    }

    /// Waits until the current URL starts with `prefix`; returns it.
    pub fn wait_for_url_prefix(&self, prefix: &str, timeout: Duration) -> Result<String> {
        self.wait_for_url(&format!("under {prefix}"), timeout, |url| {
            url.starts_with(prefix)
        })
    }

    /// Waits until the page's visible text contains `text`.
    pub fn wait_for_text(&self, text: &str, timeout: Duration) -> Result<()> {
        wait::until(format!("the page to show {text:?}"), timeout, || {
            let shown = match self.find_now("body")? {
                Some(ElementId(id)) => {
                    match self.session_call("GET", &format!("/element/{id}/text"), None) {
                        Ok(v) => string_value(v, "body text")?,
                        // A click or form submission was still navigating:
                        // the body found belonged to the page it left.
                        Err(error) if is_stale(&error) => String::new(),
                        Err(e) => return Err(e),
                    }
                }
                None => String::new(),
            };
            Ok(if shown.contains(text) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{}: {shown:?}", self.whereabouts()))
            })
        })
    }

    /// Deletes the session, stops chromedriver and waits for every process
    /// it started to end; errors if one had to be killed or would not end.
    pub fn close(&mut self) -> Result<()> {
        let Some(mut driver) = self.driver.take() else {
            return Ok(());
        };
        // Chromium and its helpers, to be waited for after the driver.
        let children = descendants(driver.pid());
        let mut first_error = None;
        if self.session.is_some() {
            if let Err(e) = self.session_call("DELETE", "", None) {
                first_error = Some(e);
            }
            self.session = None;
        }
        if let Err(e) = driver.stop() {
            first_error.get_or_insert(e);
        }
        if let Err(e) = end_all(&children) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            eprintln!("warren-lab: closing browser {}: {e}", self.dir.display());
        }
    }
}

fn make_dir(base: &Path, sub: &str) -> Result<PathBuf> {
    let path = base.join(sub);
    std::fs::create_dir_all(&path)
        .map_err(|e| LabError::io(format!("creating {}", path.display()), e))?;
    Ok(path)
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| LabError::Invalid(format!("path {} is not UTF-8", path.display())))
}

fn string_value(v: Value, what: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(LabError::Output {
            what: format!("WebDriver {what}"),
            detail: other.to_string(),
        }),
    }
}

/// Chromium's `--host-resolver-rules`: `hosts`, and every other name
/// unknown at once. Without it a fresh profile looks up Google's and the
/// default search engine's names through the host's resolver (traffic the
/// lab must not send), and in a namespace whose route to that resolver
/// leads nowhere the first page load waits 8 to 16 s behind those lookups.
/// The rules match address literals too, so those are excluded: IPv4
/// literals start with a digit and IPv6 ones hold a colon (which no host
/// name does; a name that starts with a digit is resolved as usual).
fn resolver_rules(hosts: &[(&str, IpAddr)]) -> String {
    let mut rules: Vec<String> = hosts
        .iter()
        .map(|(name, addr)| match addr {
            IpAddr::V4(a) => format!("MAP {name} {a}"),
            IpAddr::V6(a) => format!("MAP {name} [{a}]"),
        })
        .collect();
    rules.push("MAP * ~NOTFOUND".to_owned());
    rules.extend((0..10).map(|d| format!("EXCLUDE {d}*")));
    rules.push("EXCLUDE *:*".to_owned());
    rules.push("EXCLUDE localhost".to_owned());
    rules.join(", ")
}

/// The port in chromedriver's "started successfully on port N." line.
fn port_in(stdout: &str) -> Option<u16> {
    let rest = stdout.split("started successfully on port ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&p| p != 0)
}

/// A process as seen once: its PID and its start time (in clock ticks after
/// boot), which tells it apart from a later process given the same PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessMark {
    pid: u32,
    started: u64,
}

/// State, parent PID and start time from `/proc/PID/stat`.
fn stat_of(pid: u32) -> Option<(String, u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces or ')': the fields
    // after the last ')' start with state (field 3) and ppid (4); the start
    // time is field 22.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        (*fields.first()?).to_owned(),
        fields.get(1)?.parse().ok()?,
        fields.get(19)?.parse().ok()?,
    ))
}

/// Every process below `pid` (children, grandchildren, ...), read from /proc.
fn descendants(pid: u32) -> Vec<ProcessMark> {
    let mut all = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((_, ppid, started)) = stat_of(child) {
                all.push((
                    ProcessMark {
                        pid: child,
                        started,
                    },
                    ppid,
                ));
            }
        }
    }
    let mut found: Vec<ProcessMark> = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for (mark, _) in all.iter().filter(|(_, ppid)| *ppid == parent) {
            found.push(*mark);
            parents.push(mark.pid);
        }
    }
    found
}

/// Whether the process seen as `mark` still runs (not a zombie, and its PID
/// not taken over by another process).
fn alive(mark: ProcessMark) -> bool {
    stat_of(mark.pid)
        .is_some_and(|(state, _, started)| started == mark.started && state != "Z" && state != "X")
}

/// Waits for `marks` (all started by our chromedriver) to end; kills the
/// ones still there after [`QUIT_TIMEOUT`] and says so.
fn end_all(marks: &[ProcessMark]) -> Result<()> {
    let deadline = Instant::now() + QUIT_TIMEOUT;
    while marks.iter().any(|&m| alive(m)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<u32> = marks.iter().filter(|&&m| alive(m)).map(|m| m.pid).collect();
    if left.is_empty() {
        return Ok(());
    }
    for &pid in &left {
        // It may end between the look and the signal.
        let _ = crate::command::signal(pid, "KILL");
    }
    Err(LabError::Timeout {
        what: format!("Chromium processes {left:?} to end after the session closed (killed)"),
        after: QUIT_TIMEOUT,
    })
}

/// WebDriver's answer for an element the page has replaced since it was
/// found. Chromium says so either as the error code ("stale element
/// reference") or as an "unknown error" whose message is the inspector's
/// "Node with given id does not belong to the document".
fn is_stale(error: &LabError) -> bool {
    match error {
        LabError::WebDriver { error, message, .. } => [error, message].iter().any(|text| {
            text.contains("stale element") || text.contains("does not belong to the document")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chromedriver_port() {
        let out = "Starting ChromeDriver 156 on port 0\nOnly local connections are allowed.\n\
                   ChromeDriver was started successfully on port 35839.\n";
        assert_eq!(port_in(out), Some(35839));
        assert_eq!(port_in("Starting ChromeDriver 156 on port 0\n"), None);
    }

    #[test]
    fn knows_both_ways_chromium_says_an_element_was_replaced() {
        let webdriver = |error: &str, message: &str| LabError::WebDriver {
            command: "GET /session/s/element/e/text".into(),
            error: error.into(),
            message: message.into(),
        };
        assert!(is_stale(&webdriver(
            "HTTP 404 stale element reference",
            "stale element reference: element is not attached"
        )));
        assert!(is_stale(&webdriver(
            "HTTP 500 unknown error",
            "unknown error: unhandled inspector error: {\"code\":-32000,\
             \"message\":\"Node with given id does not belong to the document\"}"
        )));
        assert!(!is_stale(&webdriver(
            "HTTP 404 no such element",
            "no such element"
        )));
        assert!(!is_stale(&LabError::Invalid("stale element".into())));
    }

    #[test]
    fn resolves_only_the_given_names() {
        let rules = resolver_rules(&[]);
        assert!(
            rules.starts_with("MAP * ~NOTFOUND, EXCLUDE 0*, "),
            "{rules}"
        );
        assert!(
            rules.ends_with(", EXCLUDE 9*, EXCLUDE *:*, EXCLUDE localhost"),
            "{rules}"
        );
        let hosts = [
            ("ctl.lab", IpAddr::from([192, 0, 2, 10])),
            (
                "v6.lab",
                "2001:db8::1".parse().unwrap_or(IpAddr::from([0; 16])),
            ),
        ];
        assert!(resolver_rules(&hosts)
            .starts_with("MAP ctl.lab 192.0.2.10, MAP v6.lab [2001:db8::1], MAP * ~NOTFOUND, "));
    }
}
