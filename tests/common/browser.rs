//! A minimal W3C WebDriver client: a real headless Chromium driven through `chromedriver`
//! (both from the distribution: `apt-get install chromium chromium-driver`; `.ci/run` installs
//! them). One `Browser` is one chromedriver child on a free loopback port with one session;
//! dropping it ends the session (closing the browser) and kills the driver's process group.
//!
//! `execute` runs script in the page for the test's own inspection (reading state the UI does
//! not print); the tests drive the UI itself only through clicks and typed keys.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver error answer (`no such element`, `stale element reference`...).
#[derive(Debug, Clone)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

pub struct Browser {
    http: reqwest::Client,
    port: u16,
    session: String,
    driver: Child,
}

/// An element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    pub id: String,
}

impl std::fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({})", self.id)
    }
}

fn chromium_binary() -> Option<String> {
    if let Ok(b) = std::env::var("CHROMIUM") {
        return Some(b);
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .map(String::from)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose window is `width`x`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = super::free_port();
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(&driver_bin)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group: Drop ends the driver and every browser process it
                // started, and nothing else.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{driver_bin} not found ({e}): apt-get install chromium chromium-driver")
                })
        };
        let mut b = Browser {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            port,
            session: String::new(),
            driver,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = b
                .http
                .get(format!("http://127.0.0.1:{port}/status"))
                .send()
                .await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--no-first-run",
                "--hide-scrollbars",
                format!("--window-size={width},{height}"),
            ],
        });
        if let Some(binary) = chromium_binary() {
            options["binary"] = json!(binary);
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": options,
                    "timeouts": {"implicit": 0, "pageLoad": 30000, "script": 30000},
                }
            }
        });
        let v = b
            .raw(
                "POST",
                &format!("http://127.0.0.1:{port}/session"),
                Some(caps),
            )
            .await
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}"));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    async fn raw(&self, method: &str, url: &str, body: Option<Value>) -> Result<Value, WdError> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(|e| WdError {
            error: "transport".into(),
            message: e.to_string(),
        })?;
        let ok = res.status().is_success();
        let v: Value = res.json().await.map_err(|e| WdError {
            error: "transport".into(),
            message: e.to_string(),
        })?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(WdError {
                error: v["value"]["error"].as_str().unwrap_or("unknown").into(),
                message: v["value"]["message"].as_str().unwrap_or_default().into(),
            })
        }
    }

    /// One command of this session: `path` relative to `/session/{id}`.
    pub async fn cmd(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        let url = format!(
            "http://127.0.0.1:{}/session/{}{path}",
            self.port, self.session
        );
        self.raw(method, &url, body).await
    }

    async fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn refresh(&self) {
        self.must("POST", "/refresh", Some(json!({}))).await;
    }

    pub async fn current_url(&self) -> String {
        self.must("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The current URL's path and query (`/ui/login?next=%2Fui`).
    pub async fn path(&self) -> String {
        let url = self.current_url().await;
        match url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/".into(), |i| rest[i..].to_string()),
            None => url,
        }
    }

    pub async fn title(&self) -> String {
        self.must("GET", "/title", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.must("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn element(&self, v: &Value) -> Element<'_> {
        Element {
            browser: self,
            id: v[ELEMENT]
                .as_str()
                .expect("an element reference")
                .to_string(),
        }
    }

    /// The first element matching `css`, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element<'_>> {
        let body = json!({"using": "css selector", "value": css});
        match self.cmd("POST", "/element", Some(body)).await {
            Ok(v) => Some(self.element(&v)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("find {css}: {e}"),
        }
    }

    pub async fn find(&self, css: &str) -> Element<'_> {
        match self.try_find(css).await {
            Some(e) => e,
            None => panic!("no element {css} on {}", self.current_url().await),
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let body = json!({"using": "css selector", "value": css});
        let v = self.must("POST", "/elements", Some(body)).await;
        v.as_array()
            .map(|a| a.iter().map(|e| self.element(e)).collect())
            .unwrap_or_default()
    }

    /// The text of the first element matching `css` (None: no such element).
    pub async fn text_of(&self, css: &str) -> Option<String> {
        let e = self.try_find(css).await?;
        e.try_text().await
    }

    /// Runs `script` (a function body: `return ...`; a returned promise is awaited) with
    /// `args` (`arguments[0]`...). For the test's inspection only.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls until `css` matches an element.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element<'_> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "no {css} within {timeout:?} on {}:\n{}",
                    self.current_url().await,
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `check` until it answers `Some` (what: for the failure message).
    pub async fn wait_until<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = check().await {
                return t;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not within {timeout:?} on {}:\n{}",
                    self.current_url().await,
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until the text of `css` contains `needle`; returns the text.
    pub async fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        self.wait_until(
            &format!("{css} containing {needle:?}"),
            timeout,
            || async move { self.text_of(css).await.filter(|t| t.contains(needle)) },
        )
        .await
    }

    /// Polls until the current URL's path (and query) satisfies `want`.
    pub async fn wait_path(
        &self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let want = &want;
        self.wait_until(what, timeout, || async move {
            let p = self.path().await;
            want(&p).then_some(p)
        })
        .await
    }

    /// The HTTP status of the current document (the browser's Navigation Timing entry).
    pub async fn status(&self) -> u16 {
        self.execute(
            "const n = performance.getEntriesByType('navigation')[0]; return n ? n.responseStatus : 0;",
            vec![],
        )
        .await
        .as_u64()
        .unwrap_or(0) as u16
    }

    /// The browser's cookies for the current page (HttpOnly ones too).
    pub async fn cookies(&self) -> Vec<Value> {
        self.must("GET", "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn set_window_rect(&self, width: u32, height: u32) {
        self.must(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// The page's viewport at exactly `width`x`height` CSS pixels (Chromium's device
    /// emulation over the DevTools protocol; `mobile`: a phone's meta viewport handling).
    pub async fn set_viewport(&self, width: u32, height: u32, mobile: bool) {
        let params = json!({
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile,
        });
        self.must(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": params})),
        )
        .await;
    }

    /// The viewport as a PNG at `path` (directories made as needed).
    pub async fn screenshot(&self, path: &Path) {
        let v = self.must("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("a base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Ends the session at once (synchronous: usable from Drop). Best effort.
    fn delete_session(&mut self) {
        if self.session.is_empty() {
            return;
        }
        let session = std::mem::take(&mut self.session);
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        if s.write_all(request.as_bytes()).is_ok() {
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.delete_session();
        // The driver and whatever is left of the browsers it started (its process group).
        let pgid = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

impl<'a> Element<'a> {
    fn path(&self, tail: &str) -> String {
        format!("/element/{}{tail}", self.id)
    }

    /// The reference to pass as an `execute` argument.
    pub fn json(&self) -> Value {
        json!({ ELEMENT: self.id })
    }

    pub async fn click(&self) {
        self.browser
            .must("POST", &self.path("/click"), Some(json!({})))
            .await;
    }

    pub async fn clear(&self) {
        self.browser
            .must("POST", &self.path("/clear"), Some(json!({})))
            .await;
    }

    /// Types `text` into the element (W3C element send keys).
    pub async fn send_keys(&self, text: &str) {
        self.browser
            .must("POST", &self.path("/value"), Some(json!({ "text": text })))
            .await;
    }

    async fn try_text(&self) -> Option<String> {
        let v = self
            .browser
            .cmd("GET", &self.path("/text"), None)
            .await
            .ok()?;
        Some(v.as_str().unwrap_or_default().to_string())
    }

    pub async fn text(&self) -> String {
        self.browser
            .must("GET", &self.path("/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// An attribute as written in the markup (None: absent).
    pub async fn attribute(&self, name: &str) -> Option<String> {
        self.browser
            .must("GET", &self.path(&format!("/attribute/{name}")), None)
            .await
            .as_str()
            .map(String::from)
    }

    /// A DOM property (`value` of a field as it is now).
    pub async fn property(&self, name: &str) -> Value {
        self.browser
            .must("GET", &self.path(&format!("/property/{name}")), None)
            .await
    }

    pub async fn value(&self) -> String {
        self.property("value")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn enabled(&self) -> bool {
        self.browser
            .must("GET", &self.path("/enabled"), None)
            .await
            .as_bool()
            .unwrap_or(false)
    }

    /// Whether a checkbox (or option) is checked.
    pub async fn selected(&self) -> bool {
        self.browser
            .must("GET", &self.path("/selected"), None)
            .await
            .as_bool()
            .unwrap_or(false)
    }

    pub async fn displayed(&self) -> bool {
        self.browser
            .must("GET", &self.path("/displayed"), None)
            .await
            .as_bool()
            .unwrap_or(false)
    }

    /// The first descendant matching `css`, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element<'a>> {
        let body = json!({"using": "css selector", "value": css});
        match self
            .browser
            .cmd("POST", &self.path("/element"), Some(body))
            .await
        {
            Ok(v) => Some(self.browser.element(&v)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("find {css}: {e}"),
        }
    }
}
