//! A small WebDriver client for the browser journeys: Debian's Chromium driven headless through
//! its chromedriver, over the reqwest client the tests already use (no second HTTP stack).
//!
//! ```ignore
//! let driver = Chromedriver::start().await;
//! let mut browser = Browser::new(&driver, "first-run", Javascript::On).await;
//! browser.goto(&app.url("/login")).await;
//! browser.fill("input[name=email]", "a@example.com").await;
//! browser.click("button[type=submit]").await;
//! browser.check_page("login").await; // screenshot, console, CSP, axe
//! browser.assert_clean(); // fails on anything any checked page showed
//! ```
//!
//! Pages that are not the portal's (an identity provider's login, say) can be visited without
//! `check_page`; call `logs()` after them so their console output is not blamed on the next
//! checked page.
//!
//! Chromium reaches only loopback: every other host is unresolvable and every proxied
//! request goes to a closed local port, so a test never sends traffic off the machine.

// A harness shared by several journeys; not every journey calls every helper.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The W3C key under which an element reference travels.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn chromedriver_path() -> PathBuf {
    std::env::var_os("TRUSTPLANE_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

fn chromium_path() -> PathBuf {
    std::env::var_os("TRUSTPLANE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// axe-core as installed by `npm ci --prefix tests/browser` (read from disk, never fetched).
fn axe_source() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}); run `npm ci --prefix tests/browser` first",
            path.display()
        )
    })
}

/// Where screenshots go: `target/browser-screenshots/<journey>/` (kept as CI artefacts).
pub fn screenshot_dir(journey: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("browser-screenshots").join(journey)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A chromedriver process on a free loopback port; killed when dropped.
pub struct Chromedriver {
    pub url: String,
    child: Child,
}

impl Chromedriver {
    pub async fn start() -> Self {
        let exe = chromedriver_path();
        assert!(
            exe.exists() && chromium_path().exists(),
            "the browser journeys need Debian's chromium and chromium-driver \
             (apt-get install chromium chromium-driver); .ci/run installs them"
        );
        let http = reqwest::Client::new();
        // Another process may take the port between our probe and chromedriver's bind: retry.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&exe)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if let Ok(r) = http.get(format!("{url}/status")).send().await
                    && let Ok(body) = r.json::<Value>().await
                    && body["value"]["ready"] == true
                {
                    return Self { url, child };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("chromedriver did not become ready");
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether pages may run scripts. `Off` is the portal's no-JavaScript promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Javascript {
    On,
    Off,
}

/// One axe-core finding, as printed in a failure.
#[derive(Debug, Clone)]
pub struct AxeViolation {
    pub id: String,
    pub impact: String,
    pub help: String,
    pub targets: Vec<String>,
    /// axe's explanation for the first element (colours and ratio, the missing label…).
    pub first_failure: String,
}

/// What one checked page showed.
#[derive(Debug, Clone, Default)]
pub struct PageReport {
    pub name: String,
    pub url: String,
    pub screenshot: PathBuf,
    /// SEVERE browser-log entries (console errors, failed loads, CSP refusals).
    pub console_errors: Vec<String>,
    /// `securitypolicyviolation` events seen by the page (JavaScript sessions only).
    pub csp_violations: Vec<String>,
    /// axe-core violations of impact serious or critical.
    pub axe_serious: Vec<AxeViolation>,
    /// axe-core violations of lesser impact (reported, not failed on).
    pub axe_minor: Vec<AxeViolation>,
}

impl PageReport {
    pub fn is_clean(&self) -> bool {
        self.console_errors.is_empty()
            && self.csp_violations.is_empty()
            && self.axe_serious.is_empty()
    }
}

/// One WebDriver session (one headless Chromium).
pub struct Browser {
    http: reqwest::Client,
    session: String,
    pub journey: String,
    pub javascript: Javascript,
    axe: String,
    shots: usize,
    /// Every page passed to `check_page`, in order.
    pub reports: Vec<PageReport>,
}

/// Records `securitypolicyviolation` events from the first moment of every document.
const CSP_LISTENER: &str = r#"
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") +
    " (" + (e.sourceFile || "") + ":" + e.lineNumber + ")");
});
"#;

impl Browser {
    /// A new headless Chromium session. `journey` names the screenshot folder.
    pub async fn new(driver: &Chromedriver, journey: &str, javascript: Javascript) -> Self {
        let args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,900",
            "--lang=en-GB",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-domain-reliability",
            "--disable-sync",
            "--disable-extensions",
            "--disable-client-side-phishing-detection",
            "--disable-features=Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions",
            // Loopback only: nothing else resolves, and anything proxied hits a closed port.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
            "--proxy-server=http://127.0.0.1:9",
        ];
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "pageLoadStrategy": "normal",
                "timeouts": { "pageLoad": 30000, "script": 30000, "implicit": 0 },
                "goog:loggingPrefs": { "browser": "ALL" },
                "goog:chromeOptions": {
                    "binary": chromium_path(),
                    "args": args,
                },
            }}
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        let response: Value = http
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("chromedriver JSON");
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {response}"))
            .to_owned();
        let browser = Self {
            http,
            session: format!("{}/session/{session}", driver.url),
            journey: journey.to_owned(),
            javascript,
            axe: axe_source(),
            shots: 0,
            reports: Vec::new(),
        };
        browser
            .cdp(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": CSP_LISTENER }),
            )
            .await;
        if javascript == Javascript::Off {
            // Scripts off in the renderer for every document of this tab, as with the
            // browser's own setting; unlike that setting, axe can be let in for its checks.
            browser.scripts_disabled(true).await;
        }
        let dir = screenshot_dir(journey);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            panic!(
                "WebDriver {method} {path} failed ({status}): {} — {}",
                body["value"]["error"], body["value"]["message"]
            );
        }
        body["value"].clone()
    }

    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.session))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let ok = response.status().is_success();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if ok {
            Ok(body["value"].clone())
        } else {
            Err(format!(
                "{}: {}",
                body["value"]["error"], body["value"]["message"]
            ))
        }
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .await
    }

    async fn scripts_disabled(&self, disabled: bool) {
        self.cdp(
            "Emulation.setScriptExecutionDisabled",
            json!({ "value": disabled }),
        )
        .await;
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn refresh(&self) {
        self.call(reqwest::Method::POST, "/refresh", None).await;
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The path (and query) of the current page.
    pub async fn path(&self) -> String {
        let url = url::Url::parse(&self.current_url().await).expect("page URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching `css`, if any.
    pub async fn try_find(&self, css: &str) -> Option<String> {
        self.try_call(
            reqwest::Method::POST,
            "/element",
            json!({ "using": "css selector", "value": css }),
        )
        .await
        .ok()
        .and_then(|v| v[ELEMENT].as_str().map(str::to_owned))
    }

    /// The first element matching `css`; fails the test (with the page's path) if none.
    pub async fn find(&self, css: &str) -> String {
        match self.try_find(css).await {
            Some(id) => id,
            None => panic!("no element `{css}` on {}", self.path().await),
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<String> {
        self.call(
            reqwest::Method::POST,
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .await
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v[ELEMENT].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Clears the field matching `css` and types `text` into it, as a person would.
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/clear"), None)
            .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the element matching `css` (a checkbox, a summary…); see `click_to_navigate`.
    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.click_element(&id).await;
    }

    pub async fn click_element(&self, id: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), None)
            .await;
    }

    /// Clicks a link or submit button matching `css` and waits until the next document has
    /// loaded. chromedriver waits for navigations only while pages run scripts, so the old
    /// document is marked and the new one awaited either way.
    pub async fn click_to_navigate(&self, css: &str) {
        let id = self.find(css).await;
        self.execute("window.__tpLeaving = true; return true;", json!([]))
            .await;
        self.click_element(&id).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self
                .try_call(
                    reqwest::Method::POST,
                    "/execute/sync",
                    json!({
                        "script": "return [window.__tpLeaving === true, document.readyState];",
                        "args": [],
                    }),
                )
                .await;
            if let Ok(state) = state
                && state[0] == false
                && state[1] == "complete"
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "clicking `{css}` did not load a new page"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The rendered (visible) text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.element_text(&id).await
    }

    pub async fn element_text(&self, id: &str) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A DOM property (`textContent`, `value`, `checked`, …) of the element matching `css`;
    /// unlike `text`, it also reads content a closed `<details>` hides.
    pub async fn property(&self, css: &str, name: &str) -> Value {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{id}/property/{name}"),
            None,
        )
        .await
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Whether pages can run their own scripts: loads a `data:` page whose script renames it.
    /// Leaves the browser on that page.
    pub async fn page_scripts_run(&self) -> bool {
        self.goto("data:text/html,<title>off</title><script>document.title='on'</script>")
            .await;
        let on = self.title().await == "on";
        let _ = self.logs().await;
        on
    }

    /// Browser-log entries since the last call (chromedriver drains them).
    pub async fn logs(&self) -> Vec<(String, String)> {
        self.call(
            reqwest::Method::POST,
            "/se/log",
            Some(json!({ "type": "browser" })),
        )
        .await
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["level"].as_str().unwrap_or_default().to_owned(),
                        e["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// A full-page PNG of the current page, saved as `<nn>-<name>.png`.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        self.shots += 1;
        let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let width = size["width"].as_f64().unwrap_or(1280.0).max(1.0);
        let height = size["height"]
            .as_f64()
            .unwrap_or(900.0)
            .clamp(1.0, 16_000.0);
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
                }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = screenshot_dir(&self.journey).join(format!("{:02}-{safe}.png", self.shots));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// `securitypolicyviolation` events the current document has seen.
    pub async fn csp_violations(&self) -> Vec<String> {
        self.execute("return window.__cspViolations || [];", json!([]))
            .await
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs axe-core on the current page; returns every violation.
    pub async fn axe(&self) -> Vec<AxeViolation> {
        // Injected through WebDriver (not a <script> tag), so the page's CSP is not loosened.
        // axe schedules its work with timers, which run only while scripts may; the page's
        // own scripts were skipped while it loaded and are not run by this.
        if self.javascript == Javascript::Off {
            self.scripts_disabled(false).await;
        }
        self.execute(&format!("{}\nreturn true;", self.axe), json!([]))
            .await;
        let result = self
            .call(
                reqwest::Method::POST,
                "/execute/async",
                Some(json!({
                    "script": "var done = arguments[arguments.length - 1];
                       axe.run(document, { resultTypes: ['violations'] })
                         .then(function (r) { done(r.violations); })
                         .catch(function (e) { done({ error: String(e) }); });",
                    "args": [],
                })),
            )
            .await;
        if self.javascript == Javascript::Off {
            self.scripts_disabled(true).await;
        }
        if let Some(error) = result.get("error") {
            panic!("axe-core failed: {error}");
        }
        result
            .as_array()
            .expect("axe violations")
            .iter()
            .map(|v| AxeViolation {
                id: v["id"].as_str().unwrap_or_default().to_owned(),
                impact: v["impact"].as_str().unwrap_or("unknown").to_owned(),
                help: v["help"].as_str().unwrap_or_default().to_owned(),
                targets: v["nodes"]
                    .as_array()
                    .map(|nodes| nodes.iter().map(|n| n["target"].to_string()).collect())
                    .unwrap_or_default(),
                first_failure: v["nodes"][0]["failureSummary"]
                    .as_str()
                    .unwrap_or_default()
                    .replace('\n', " "),
            })
            .collect()
    }

    /// Screenshot, browser log, CSP events and axe-core for the current page; the report is
    /// kept for `assert_clean` and returned.
    pub async fn check_page(&mut self, name: &str) -> PageReport {
        let url = self.current_url().await;
        let screenshot = self.screenshot(name).await;
        let console_errors = self
            .logs()
            .await
            .into_iter()
            .filter(|(level, _)| level == "SEVERE")
            .map(|(_, message)| message)
            .collect();
        let csp_violations = self.csp_violations().await;
        let (axe_serious, axe_minor): (Vec<_>, Vec<_>) = self
            .axe()
            .await
            .into_iter()
            .partition(|v| v.impact == "serious" || v.impact == "critical");
        let report = PageReport {
            name: name.to_owned(),
            url,
            screenshot,
            console_errors,
            csp_violations,
            axe_serious,
            axe_minor,
        };
        // axe itself must not have caused console output that a later page is blamed for.
        let _ = self.logs().await;
        self.reports.push(report.clone());
        report
    }

    /// A readable account of every checked page: what was found and where the screenshot is.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for r in &self.reports {
            let _ = writeln!(
                out,
                "{} {} ({}) — console errors {}, CSP violations {}, axe serious/critical {}, \
                 axe minor {}; {}",
                if r.is_clean() { "ok  " } else { "FAIL" },
                r.name,
                r.url,
                r.console_errors.len(),
                r.csp_violations.len(),
                r.axe_serious.len(),
                r.axe_minor.len(),
                r.screenshot.display()
            );
            for e in &r.console_errors {
                let _ = writeln!(out, "     console: {e}");
            }
            for e in &r.csp_violations {
                let _ = writeln!(out, "     CSP: {e}");
            }
            for v in r.axe_serious.iter().chain(&r.axe_minor) {
                let _ = writeln!(
                    out,
                    "     axe {} [{}]: {} at {} — {}",
                    v.id,
                    v.impact,
                    v.help,
                    v.targets.join(", "),
                    v.first_failure
                );
            }
        }
        out
    }

    /// Fails the test if any checked page had a console error, a CSP violation or a serious
    /// or critical axe-core finding, printing all of them.
    pub fn assert_clean(&self) {
        let summary = self.summary();
        println!(
            "{} pages checked ({}):\n{summary}",
            self.reports.len(),
            self.journey
        );
        assert!(
            self.reports.iter().all(PageReport::is_clean),
            "pages with console errors, CSP violations or serious accessibility problems:\n{summary}"
        );
    }

    /// Ends the session (closes Chromium).
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}
