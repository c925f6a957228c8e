//! Real headless Chromium driven through WebDriver (Debian's `chromium` and `chromium-driver`;
//! `.ci/run` installs them): a chromedriver process per browser, closed with it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use thirtyfour::prelude::*;

/// A browser session and its chromedriver (killed when dropped).
pub struct Browser {
    /// Never dropped by us: thirtyfour's drop of an un-quit session blocks the thread on an HTTP
    /// call to chromedriver, which hangs a panicking test; chromedriver is stopped instead.
    pub driver: std::mem::ManuallyDrop<WebDriver>,
    chromedriver: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9515)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (1366×900).
    pub async fn start() -> anyhow::Result<Self> {
        // The WebDriver client's TLS needs a crypto provider even for plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let chromedriver =
            Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| {
                    anyhow::anyhow!("cannot start chromedriver (install chromium-driver): {e}")
                })?;
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(&std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))?;
        for arg in [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--window-size=1366,900",
        ] {
            caps.add_arg(arg)?;
        }
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..50 {
            match WebDriver::new(&url, caps.clone()).await {
                Ok(driver) => {
                    return Ok(Self {
                        driver: std::mem::ManuallyDrop::new(driver),
                        chromedriver,
                    });
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(anyhow::anyhow!("chromedriver did not answer: {last:?}"))
    }

    /// Saves a screenshot as `<name>.png` in `WFO_SCREENSHOTS` (default: the temp directory).
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = std::env::var_os("WFO_SCREENSHOTS").map_or_else(
            || std::env::temp_dir().join("wfo-screenshots"),
            PathBuf::from,
        );
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        self.driver.screenshot(&path).await?;
        Ok(path)
    }

    /// Signs in on the login page as `email` (the fixtures' password) and waits for the
    /// dashboard to show who is signed in.
    pub async fn sign_in(&self, app: &crate::TestApp, email: &str) -> anyhow::Result<()> {
        self.driver.goto(app.url("/login")).await?;
        self.driver
            .find(By::Id("email"))
            .await?
            .send_keys(email)
            .await?;
        self.driver
            .find(By::Id("password"))
            .await?
            .send_keys(crate::app::FIXTURE_PASSWORD)
            .await?;
        self.driver.find(By::Id("sign-in")).await?.click().await?;
        self.until("the dashboard", || async {
            self.text("who").await.contains(email)
        })
        .await
    }

    /// A browser signed in to `app` as `email`: how most browser tests start. A failed sign-in
    /// leaves a screenshot (`sign-in-failed`) and closes the browser.
    pub async fn signed_in(app: &crate::TestApp, email: &str) -> anyhow::Result<Self> {
        let b = Self::start().await?;
        if let Err(e) = b.sign_in(app, email).await {
            let _ = b.screenshot("sign-in-failed").await;
            b.close().await;
            return Err(e);
        }
        Ok(b)
    }

    /// Closes the browser after a test's `steps`; when they failed, first saves a screenshot
    /// (`<name>-failed`), then fails the test with their error.
    pub async fn finish(self, name: &str, steps: anyhow::Result<()>) {
        if let Err(e) = steps {
            let _ = self.screenshot(&format!("{name}-failed")).await;
            self.close().await;
            panic!("{e:#}");
        }
        self.close().await;
    }

    /// Runs `script` in the page; what it returns.
    pub async fn js(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.driver.execute(script, vec![]).await?.json().clone())
    }

    /// Waits until the element `id` shows `needle`; the error says what it showed instead.
    pub async fn until_text(&self, id: &str, needle: &str) -> anyhow::Result<()> {
        let what = format!("#{id} to show {needle:?}");
        match self
            .until(&what, || async { self.text(id).await.contains(needle) })
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("{e}; it shows {:?}", self.text(id).await)),
        }
    }

    /// Waits until `check` holds (polling every 100 ms, up to 20 s).
    pub async fn until<F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..200 {
            if check().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(anyhow::anyhow!("timed out waiting for {what}"))
    }

    /// The text of the element with this id ("" when absent).
    pub async fn text(&self, id: &str) -> String {
        match self.driver.find(By::Id(id)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Ends the session, chromedriver and the browser.
    pub async fn close(self) {
        let _ = WebDriver::clone(&self.driver).quit().await;
        // Drop stops chromedriver (and with it the browser).
    }

    /// Stops chromedriver and the browsers it started (its direct children, found in /proc:
    /// the browser's own helpers end with it).
    fn kill_driver(&mut self) {
        let driver = self.chromedriver.id();
        let children: Vec<u32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                // `pid (comm) state ppid …`: the fields after the last ')'.
                let ppid: u32 = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                (ppid == driver && pid != driver).then_some(pid)
            })
            .collect();
        for pid in children {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_driver();
    }
}
