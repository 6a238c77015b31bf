//! Headless Chromium for end-to-end tests of the web UI and the hosted forms.
//!
//! [`Browser::start`] runs Debian's `chromedriver` (package `chromium-driver`) and opens one
//! WebDriver session in Debian's `chromium`, with a new empty profile in a temporary folder.
//! Each test starts its own `Browser`, so tests running in parallel share no cookies, storage
//! or windows. Dropping the `Browser` kills chromedriver and Chromium and deletes the folder.
//!
//! chromedriver is started with `--port=0` and reports the port it bound, so parallel tests
//! cannot race for a port. Without `--allowed-ips` it only accepts connections from the
//! loopback addresses (127.0.0.1 and ::1). Chromium gets the flags in [`CHROMIUM_ARGS`], which
//! stop the connections it would open by itself, and a `HOME` and `TMPDIR` inside the
//! temporary folder, so that its crash-report database, certificate store and temporary files
//! stay out of the user's home and `/tmp`. Chromium resolves no host name, so the pages under
//! test must be served on 127.0.0.1 and opened by that address.
//!
//! The WebDriver client is fantoccini, built without default features: it speaks plain HTTP
//! to chromedriver on 127.0.0.1, so no TLS stack is compiled. It is maintained, needs only
//! Rust 1.67 (this workspace requires 1.85), and never downloads a driver or a browser.
//! thirtyfour 0.38, the other maintained WebDriver client, needs Rust 1.88 and by default
//! builds rustls and a driver downloader, which cannot work on a machine without internet.
//!
//! The helpers panic with the page's URL in the message when the page does not have what a
//! test asks for. [`Browser::client`] gives the fantoccini client for anything else.

use fantoccini::elements::{Element, ElementRef};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;
use url::Url;

/// Debian's Chromium launcher.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's chromedriver, of the same version as Chromium.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

const INSTALL_HINT: &str = "on Debian: apt-get install chromium chromium-driver";

/// Chromium's command-line flags: headless mode, no connections of Chromium's own, and a
/// fixed window size, so that screenshots (of the viewport, 1280×657 in Chromium 156) have a
/// stable size.
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    // Even with the flags above, Chromium 156 looks up the hosts of Google's autofill,
    // accounts and update services and of its default search engine. This rule makes every
    // lookup fail with "not found", so Chromium sends no DNS query.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1280,800",
];

/// Time allowed for chromedriver to report its port and for Chromium to open the session.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Time allowed for Chromium's processes to exit after they were killed.
const GROUP_EXIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Interval between two checks of [`Browser::wait_for_text`].
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Key of an element reference in WebDriver's JSON, fixed by the W3C WebDriver standard.
const WEB_ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// JavaScript that finds a form control by name, then by id, then by the text of its label.
/// The label text is compared after collapsing whitespace, without the text of a `select` or
/// `textarea` nested in the label.
const FIND_FIELD_SCRIPT: &str = r#"
const [locator] = arguments;
const controls = Array.from(document.querySelectorAll('input, select, textarea'));
const byName = controls.find((control) => control.name === locator);
if (byName) return byName;
const byId = controls.find((control) => control.id === locator);
if (byId) return byId;
const normalize = (text) => text.replace(/\s+/g, ' ').trim();
for (const label of document.querySelectorAll('label')) {
    const copy = label.cloneNode(true);
    copy.querySelectorAll('select, textarea').forEach((nested) => nested.remove());
    if (label.control && normalize(copy.textContent) === locator) return label.control;
}
return null;
"#;

/// JavaScript that finds a button by its text, or an input button by its value.
const FIND_BUTTON_SCRIPT: &str = r#"
const [label] = arguments;
const normalize = (text) => text.replace(/\s+/g, ' ').trim();
const selector = 'button, input[type=submit], input[type=button], input[type=reset]';
for (const button of document.querySelectorAll(selector)) {
    const text = button.tagName === 'BUTTON' ? button.textContent : button.value;
    if (normalize(text) === label) return button;
}
return null;
"#;

/// A WebDriver session in a headless Chromium of its own.
pub struct Browser {
    client: Client,
    // Declared before `dir`, so that the processes are killed before their folder is deleted.
    _driver: Chromedriver,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and Chromium and opens a session on `about:blank`.
    ///
    /// Panics when either program is missing, naming the Debian package to install.
    pub async fn start() -> Self {
        assert!(
            Path::new(CHROMIUM).exists(),
            "Chromium is not installed at {CHROMIUM}; {INSTALL_HINT}"
        );
        let dir = tempfile::tempdir().unwrap();
        let driver = Chromedriver::start(dir.path()).await;

        let profile = dir.path().join("profile");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|arg| arg.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("the capabilities are a JSON object literal");
        };

        let url = format!("http://127.0.0.1:{}", driver.port);
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let client = match tokio::time::timeout(START_TIMEOUT, builder.connect(&url)).await {
            Ok(Ok(client)) => client,
            // Dropping `driver` while panicking prints the end of chromedriver's log.
            Ok(Err(error)) => panic!("starting Chromium through chromedriver failed: {error}"),
            Err(_) => panic!("Chromium did not start within {START_TIMEOUT:?}"),
        };
        Self {
            client,
            _driver: driver,
            dir,
        }
    }

    /// Returns the fantoccini client of this session, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Returns the folder of this session's Chromium profile and chromedriver log, which is
    /// deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn open(&self, url: &str) {
        if let Err(error) = self.client.goto(url).await {
            panic!("opening {url} failed: {error}");
        }
    }

    /// Returns the URL of the current page.
    pub async fn current_url(&self) -> Url {
        self.client.current_url().await.unwrap()
    }

    /// Replaces the value of a text field, found by name, id or label text.
    pub async fn fill(&self, field: &str, value: &str) {
        let element = self.find_field(field).await;
        let filled = match element.clear().await {
            Ok(()) => element.send_keys(value).await,
            Err(error) => Err(error),
        };
        if let Err(error) = filled {
            panic!("filling field {field:?} failed: {error}");
        }
    }

    /// Ticks a checkbox or selects a radio button, found by name, id or label text. Does
    /// nothing when it is already ticked.
    pub async fn check(&self, field: &str) {
        self.set_checked(field, true).await;
    }

    /// Clears a checkbox, found by name, id or label text. Does nothing when it is clear.
    pub async fn uncheck(&self, field: &str) {
        self.set_checked(field, false).await;
    }

    /// Selects the option whose label is `option` in a `select`, found by name, id or label
    /// text. Panics with the select's option labels when none matches.
    pub async fn choose(&self, field: &str, option: &str) {
        let select = self.find_field(field).await;
        let tag = select.tag_name().await.unwrap();
        assert_eq!(tag, "select", "field {field:?} is not a select");

        let mut labels = Vec::new();
        for candidate in select.find_all(Locator::Css("option")).await.unwrap() {
            // An option's `label` property is its label attribute or else its text.
            let label = candidate.prop("label").await.unwrap().unwrap_or_default();
            if label == option {
                candidate.click().await.unwrap();
                return;
            }
            labels.push(label);
        }
        panic!("select {field:?} has no option {option:?}; its options are {labels:?}");
    }

    /// Clicks the button whose text, or value for an input button, is `label`.
    ///
    /// A click that submits a form starts the navigation but may return before the next page
    /// has loaded: wait for something on that page before reading it.
    pub async fn click_button(&self, label: &str) {
        let found = self.execute(FIND_BUTTON_SCRIPT, label).await;
        let Some(button) = self.element_from_json(&found) else {
            panic!("no button {label:?} on {}", self.current_url().await);
        };
        if let Err(error) = button.click().await {
            panic!("clicking button {label:?} failed: {error}");
        }
    }

    /// Returns the rendered text of the first element that matches the CSS `selector`.
    pub async fn text(&self, selector: &str) -> String {
        match self.client.find(Locator::Css(selector)).await {
            Ok(element) => element.text().await.unwrap(),
            Err(error) => panic!(
                "no element {selector:?} on {}: {error}",
                self.current_url().await
            ),
        }
    }

    /// Returns the rendered text of the whole page.
    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    /// Waits until an element matches the CSS `selector` and returns it. Panics after
    /// `timeout`.
    pub async fn wait_for_element(&self, selector: &str, timeout: Duration) -> Element {
        let wait = self.client.wait().at_most(timeout).every(POLL_INTERVAL);
        match wait.for_element(Locator::Css(selector)).await {
            Ok(element) => element,
            Err(error) => panic!(
                "no element {selector:?} on {} after {timeout:?}: {error}",
                self.current_url().await
            ),
        }
    }

    /// Waits until the page's rendered text contains `text`. Panics after `timeout` with the
    /// page's URL and text.
    pub async fn wait_for_text(&self, text: &str, timeout: Duration) {
        self.wait_for_text_in("body", text, timeout).await;
    }

    /// Waits until the rendered text of the first element matching the CSS `selector`
    /// contains `text`. Panics after `timeout` with the page's URL and the element's text.
    pub async fn wait_for_text_in(&self, selector: &str, text: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Reading fails while a navigation replaces the page, so an error means not yet.
            let page = match self.client.find(Locator::Css(selector)).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if page.contains(text) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "text {text:?} did not appear in {selector:?} on {} within {timeout:?}; it reads:\n{page}",
                    self.current_url().await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Writes a PNG screenshot of the window to `path`, creating its folder.
    pub async fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let png = self.client.screenshot().await.unwrap();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        if let Err(error) = std::fs::write(path, png) {
            panic!("writing screenshot {} failed: {error}", path.display());
        }
    }

    async fn set_checked(&self, field: &str, checked: bool) {
        let element = self.find_field(field).await;
        let kind = element.attr("type").await.unwrap().unwrap_or_default();
        assert!(
            kind == "checkbox" || kind == "radio",
            "field {field:?} is not a checkbox or radio button but of type {kind:?}"
        );
        assert!(
            checked || kind == "checkbox",
            "field {field:?} is a radio button, which is cleared by checking another of its group"
        );
        if element.is_selected().await.unwrap() != checked {
            element.click().await.unwrap();
        }
        let state = element.is_selected().await.unwrap();
        assert_eq!(state, checked, "clicking field {field:?} did not change it");
    }

    /// Finds an input, select or textarea by name, id or label text, or panics.
    async fn find_field(&self, field: &str) -> Element {
        let found = self.execute(FIND_FIELD_SCRIPT, field).await;
        match self.element_from_json(&found) {
            Some(element) => element,
            None => panic!(
                "no field with name, id or label {field:?} on {}",
                self.current_url().await
            ),
        }
    }

    async fn execute(&self, script: &str, argument: &str) -> Value {
        self.client
            .execute(script, vec![Value::from(argument)])
            .await
            .unwrap()
    }

    /// Turns a script's result into an element, or `None` when it returned no element.
    fn element_from_json(&self, value: &Value) -> Option<Element> {
        let id = value.get(WEB_ELEMENT_KEY)?.as_str()?;
        let id = ElementRef::from(id.to_owned());
        Some(Element::from_element_id(self.client.clone(), id))
    }
}

/// A chromedriver process, leader of its own process group. Chromium and its helper processes
/// join that group, so killing the group on drop stops them all, even when the session was
/// never closed. Chromium's crash handlers leave the group but exit with Chromium.
struct Chromedriver {
    port: u16,
    log: PathBuf,
    child: Child,
}

impl Chromedriver {
    async fn start(dir: &Path) -> Self {
        let log = dir.join("chromedriver.log");
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .arg(format!("--log-path={}", log.display()))
            .env("HOME", dir)
            .env("TMPDIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("starting {CHROMEDRIVER} failed: {error}; {INSTALL_HINT}")
            });
        let stdout = child.stdout.take().unwrap();
        let mut driver = Self {
            port: 0,
            log,
            child,
        };

        let (sender, receiver) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || read_port(stdout, sender));
        driver.port = match tokio::time::timeout(START_TIMEOUT, receiver).await {
            Ok(Ok(Ok(port))) => port,
            Ok(Ok(Err(output))) => panic!("chromedriver did not start:\n{output}"),
            Ok(Err(_)) => panic!("chromedriver's output reader stopped"),
            Err(_) => panic!("chromedriver did not report its port within {START_TIMEOUT:?}"),
        };
        driver
    }

    /// Returns the last lines of chromedriver's log, for a failure message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!("end of chromedriver's log:\n{}", lines[start..].join("\n"))
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        // The group id is chromedriver's pid, which stays reserved until the wait below.
        let group = Pid::from_child(&self.child);
        let _ = kill_process_group(group, Signal::KILL);
        let _ = self.child.wait();

        // Chromium's processes are not children of this process, and init may take seconds to
        // reap them. Waiting until each is at least a zombie keeps them from writing into the
        // folder that is deleted next.
        let group = group.as_raw_nonzero().to_string();
        let started = std::time::Instant::now();
        while group_has_running_process(&group) && started.elapsed() < GROUP_EXIT_TIMEOUT {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Returns whether a process of the process group `group` is running, which a zombie is not.
fn group_has_running_process(group: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // The fields after the command name, which is in parentheses and may contain spaces,
        // start with the state, the parent's pid and the process group (see proc_pid_stat(5)).
        let Some((_, fields)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = fields.split_whitespace().take(3).collect();
        fields.len() == 3 && fields[0] != "Z" && fields[2] == group
    })
}

/// Reads chromedriver's standard output until it reports its port, sends the port, then
/// keeps reading so that chromedriver never blocks on a full pipe. Sends the output read so
/// far when chromedriver exits first.
fn read_port(stdout: ChildStdout, sender: tokio::sync::oneshot::Sender<Result<u16, String>>) {
    // chromedriver 156 prints "ChromeDriver was started successfully on port 36911."
    const STARTED: &str = "started successfully on port ";
    let mut output = String::new();
    let mut sender = Some(sender);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(unsent) = sender.take() else {
            continue;
        };
        let port = line
            .split_once(STARTED)
            .and_then(|(_, rest)| rest.trim_end_matches('.').parse::<u16>().ok());
        match port {
            Some(port) => {
                let _ = unsent.send(Ok(port));
            }
            None => {
                output.push_str(&line);
                output.push('\n');
                sender = Some(unsent);
            }
        }
    }
    if let Some(sender) = sender {
        let _ = sender.send(Err(output));
    }
}
