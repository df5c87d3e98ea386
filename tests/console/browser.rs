//! Headless Chromium driven over WebDriver (chromedriver) for the console
//! tests: start, wait for things, screenshots, and the axe-core check.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// axe-core 4.10.3 (MPL-2.0), vendored: see tests/vendor/.
const AXE: &str = include_str!("../vendor/axe.min.js");

/// How long any awaited condition may take (a loaded 2-core machine).
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    label: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Where screenshots and the accessibility report go.
pub fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// Starts chromedriver and a headless Chromium. `None` (the test is
    /// skipped, saying so) when chromedriver is not installed, unless CI is
    /// set: then the test fails.
    pub async fn start(label: &str) -> Option<Browser> {
        let driver_path = std::env::var_os("EVENTD_CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| on_path("chromedriver"));
        let Some(driver_path) = driver_path else {
            if crate::common::in_ci() {
                panic!(
                    "chromedriver is not installed (Debian: apt-get install chromium chromium-driver; .ci/run does)"
                );
            }
            eprintln!("SKIPPED: chromedriver not found; install chromium and chromium-driver to run the console tests");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver_path.display()));
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            client: connect(port, &profile).await,
            driver,
            _profile: profile,
            label: label.to_string(),
        };
        browser.client.set_window_size(1280, 1000).await.unwrap();
        // axe-core takes seconds per page, more on a loaded machine.
        let timeouts = fantoccini::wd::TimeoutConfiguration::new(Some(PATIENCE * 3), Some(PATIENCE), None);
        browser.client.update_timeouts(timeouts).await.unwrap();
        browser.label = label.to_string();
        Some(browser)
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Waits for an element matching `css`.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(el) => el,
            Err(e) => self.fail(&format!("no element '{css}' within {PATIENCE:?}: {e}")).await,
        }
    }

    /// Fails the test with what the page showed (and a FAILED screenshot).
    async fn fail<T>(&self, what: &str) -> T {
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(out_dir().join(format!("FAILED-{}.png", self.label)), png);
        }
        let page = self
            .client
            .execute("return location.href + '\\n' + document.body.innerText", vec![])
            .await
            .unwrap_or_default();
        panic!("{what}\npage: {}", page.as_str().unwrap_or_default());
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Clicks the button or link whose text is `text`.
    pub async fn click_text(&self, text: &str) {
        let xpath = format!("//*[(self::button or self::a) and normalize-space(.)='{text}']");
        let el = self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no button or link '{text}': {e}"));
        el.click().await.unwrap();
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Runs `script` (a function body) and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until `script` returns a truthy value; `what` names it in the failure.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.js(script).await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if Instant::now() >= deadline {
                self.fail::<()>(&format!("not within {PATIENCE:?}: {what}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot as `<label>-<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        // From the top, without a passing notification over the page.
        self.js("window.scrollTo(0, 0); document.getElementById('toast').hidden = true")
            .await;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(out_dir().join(format!("{}-{name}.png", self.label)), png).unwrap();
    }

    /// Runs axe-core on the page; fails on serious or critical violations.
    /// Every violation found is appended to `axe-report.txt`.
    pub async fn check_accessibility(&self, page: &str) {
        if self.js("return typeof window.axe === 'object'").await != json!(true) {
            self.client.execute(AXE, vec![]).await.unwrap();
        }
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                       nodes: v.nodes.map(n => n.target.join(' ')) }))))
                   .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
                vec![],
            )
            .await
            .unwrap();
        let violations = found.as_array().cloned().unwrap_or_default();
        let mut report = format!("{} {page}: {} violation(s)\n", self.label, violations.len());
        for v in &violations {
            report.push_str(&format!(
                "  [{}] {}: {} {}\n",
                v["impact"], v["id"], v["help"], v["nodes"]
            ));
        }
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out_dir().join("axe-report.txt"))
            .unwrap();
        f.write_all(report.as_bytes()).unwrap();
        let serious: Vec<&Value> = violations
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        assert!(serious.is_empty(), "accessibility violations on {page}:\n{report}");
    }

    /// The page fits the window: no horizontal scrolling.
    pub async fn assert_no_horizontal_scroll(&self, page: &str) {
        let v = self
            .js("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await;
        let (scroll, width) = (v[0].as_i64().unwrap(), v[1].as_i64().unwrap());
        assert!(scroll <= width, "{page} scrolls sideways at {width}px: {scroll}px wide");
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

async fn connect(port: u16, profile: &tempfile::TempDir) -> Client {
    let mut caps = serde_json::Map::new();
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        "--lang=en-US".into(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    if let Ok(extra) = std::env::var("EVENTD_CHROMIUM_ARGS") {
        args.extend(extra.split_whitespace().map(String::from));
    }
    let mut options = json!({ "args": args });
    if let Some(bin) = std::env::var_os("EVENTD_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path("chromium"))
    {
        options["binary"] = json!(bin.display().to_string());
    }
    caps.insert("goog:chromeOptions".into(), options);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "chromedriver on {url} did not start a browser: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
