//! A headless Chromium for the tests, driven by chromedriver over the W3C WebDriver HTTP
//! protocol (blocking `ureq`). [`Browser::start`] fails loudly when chromium or chromedriver is
//! missing; dropping a [`Browser`] ends the session and kills the chromedriver it spawned.
//! The browser only talks to loopback: background networking, updates and sync are off.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where Debian's `chromium` and `chromium-driver` packages put them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// See [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Generous: starting a browser on a small shared machine takes seconds.
pub const BROWSER_WAIT: Duration = Duration::from_secs(30);

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with one headless Chromium session.
pub struct Browser {
    driver: Child,
    driver_log: Arc<Mutex<Vec<u8>>>,
    http: ureq::Agent,
    base: String,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

/// A WebDriver error answer: its `error` code and message.
#[derive(Debug)]
pub struct WdError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session.
    pub fn start() -> Browser {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the dashboard test needs a real browser; install Debian's \
                 packages with `apt-get install chromium chromium-driver` (`bash scripts/test.sh` does)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chromedriver");
        let driver_log = Arc::new(Mutex::new(Vec::new()));
        for mut pipe in [
            Box::new(driver.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(driver.stderr.take().unwrap()),
        ] {
            let sink = driver_log.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let profile = tempfile::tempdir().expect("a browser profile dir");
        let mut browser = Browser {
            driver,
            driver_log,
            http,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            _profile: profile,
        };

        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let ready = browser
                .http
                .get(format!("{}/status", browser.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!("chromedriver exited ({status}): {}", browser.driver_log());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready on port {port}: {}",
                browser.driver_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        let profile = format!("--user-data-dir={}", browser._profile.path().display());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,720", profile,
                ],
            },
        }}});
        let value = browser
            .send("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("no browser session: {e:?}\n{}", browser.driver_log()));
        browser.session = Some(value["sessionId"].as_str().unwrap().to_string());
        browser
    }

    /// What chromedriver printed so far.
    pub fn driver_log(&self) -> String {
        String::from_utf8_lossy(&self.driver_log.lock().unwrap()).into_owned()
    }

    /// One WebDriver command; the answer's `value`, or its error.
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, body) => self.http.post(&url).send_json(body.unwrap_or(json!({}))),
        };
        let mut response = response.map_err(|e| WdError {
            status: 0,
            error: "transport".into(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body: Value = response.body_mut().read_json().map_err(|e| WdError {
            status,
            error: "bad answer".into(),
            message: e.to_string(),
        })?;
        let value = body["value"].clone();
        if status >= 300 {
            return Err(WdError {
                status,
                error: value["error"].as_str().unwrap_or("?").into(),
                message: value["message"].as_str().unwrap_or("").into(),
            });
        }
        Ok(value)
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().unwrap())
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.send(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        )
        .unwrap_or_else(|e| panic!("navigate to {url}: {e:?}"));
    }

    /// The address the page shows now.
    pub fn current_url(&self) -> String {
        let value = self
            .send("GET", &self.session_path("/url"), None)
            .unwrap_or_else(|e| panic!("the current url: {e:?}"));
        value.as_str().unwrap_or_default().to_string()
    }

    /// The first element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Result<String, WdError> {
        let value = self.send(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )?;
        match value[ELEMENT].as_str() {
            Some(element) => Ok(element.to_string()),
            None => panic!("not an element reference: {value}"),
        }
    }

    /// The rendered text of the first element matching `css`.
    pub fn text(&self, css: &str) -> Result<String, WdError> {
        let element = self.find(css)?;
        let value = self.send(
            "GET",
            &self.session_path(&format!("/element/{element}/text")),
            None,
        )?;
        Ok(value.as_str().unwrap_or_default().to_string())
    }

    /// Clicks the first element matching `css`, retrying while it is missing or replaced.
    pub fn click(&self, css: &str) {
        let mut last = None;
        let deadline = Instant::now() + BROWSER_WAIT;
        while Instant::now() < deadline {
            let clicked = self.find(css).and_then(|element| {
                self.send(
                    "POST",
                    &self.session_path(&format!("/element/{element}/click")),
                    Some(json!({})),
                )
            });
            match clicked {
                Ok(_) => return,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("could not click {css}: {last:?}");
    }

    /// Polls the text of `css` until `pred` accepts it; returns it. Panics with the last text
    /// (or error) after [`BROWSER_WAIT`].
    pub fn wait_text(&self, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let text = self.text(css);
            if let Ok(t) = &text {
                if pred(t) {
                    return t.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what} at {css}; last: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page as a PNG, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let value = self
            .send("GET", &self.session_path("/screenshot"), None)
            .expect("a screenshot");
        let png = decode_base64(value.as_str().unwrap());
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = self.send("DELETE", &format!("/session/{session}"), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (what WebDriver screenshots are in); no crate needed for a test helper.
fn decode_base64(text: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    } as u32;
    let bytes: Vec<u8> = text.bytes().filter(|c| !b"=\r\n".contains(c)).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0, |n, (i, &c)| n | digit(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
