//! The Discourse deliveries under `fixtures/` at the repository root.

use std::path::{Path, PathBuf};

/// Secret that signed every synthetic fixture.
pub const FIXTURE_SECRET: &str = "fixture-secret";

/// One delivery: the exact body bytes and the request headers.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub name: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Returns the event name from `X-Discourse-Event`.
    pub fn event(&self) -> &str {
        self.header("X-Discourse-Event").unwrap_or_default()
    }

    /// Replaces (or adds) a header.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    pub fn remove_header(&mut self, name: &str) {
        self.headers
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn read_headers(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    object
        .into_iter()
        .map(|(key, value)| (key, value.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Loads one synthetic signed delivery by name, such as `topic_created`.
pub fn signed(name: &str) -> Delivery {
    let dir = root().join("discourse");
    let body = std::fs::read(dir.join(format!("{name}.json"))).unwrap();
    let mut headers = read_headers(&dir.join(format!("{name}.headers.json")));
    // Connection, Host and Content-Length describe the original transport, not this one.
    headers.retain(|(key, _)| !["Host", "Content-Length", "Connection"].contains(&key.as_str()));
    Delivery {
        name: name.to_string(),
        body,
        headers,
    }
}

/// Loads all twelve synthetic signed deliveries.
pub fn all_signed() -> Vec<Delivery> {
    let dir = root().join("discourse");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".headers.json").map(str::to_string)
        })
        .collect();
    names.sort();
    names.iter().map(|name| signed(name)).collect()
}

/// Loads the 59 captured real deliveries, unsigned, with headers mapped to Discourse's names.
pub fn captured() -> Vec<Delivery> {
    let dir = root().join("discourse-deliveries");
    let mut deliveries = Vec::new();
    for type_dir in sorted_dirs(&dir) {
        for event_dir in sorted_dirs(&type_dir) {
            for entry in std::fs::read_dir(&event_dir).unwrap() {
                let path = entry.unwrap().path();
                let file = path.file_name().unwrap().to_string_lossy().to_string();
                let Some(prefix) = file.strip_suffix("-body.json") else {
                    continue;
                };
                let body = std::fs::read(&path).unwrap();
                let headers = captured_headers(
                    &event_dir.join(format!("{prefix}-header.json")),
                    &type_dir,
                    &event_dir,
                );
                let name = format!(
                    "{}/{}",
                    type_dir.file_name().unwrap().to_string_lossy(),
                    file
                );
                deliveries.push(Delivery {
                    name,
                    body,
                    headers,
                });
            }
        }
    }
    deliveries
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn captured_headers(path: &Path, type_dir: &Path, event_dir: &Path) -> Vec<(String, String)> {
    let short = read_headers(path);
    let get = |key: &str| short.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let folder = |dir: &Path| dir.file_name().unwrap().to_string_lossy().to_string();
    // The notification folders are named notification_created_<type>; the event is not.
    let event = get("Event").unwrap_or_else(|| folder(event_dir));
    let mut headers = vec![
        ("X-Discourse-Event".to_string(), event),
        (
            "X-Discourse-Event-Type".to_string(),
            get("EventType").unwrap_or_else(|| folder(type_dir)),
        ),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    if let Some(id) = get("EventId") {
        headers.push(("X-Discourse-Event-Id".to_string(), id));
    }
    if let Some(instance) = get("Instance") {
        headers.push(("X-Discourse-Instance".to_string(), instance));
    }
    if let Some(agent) = get("UserAgent") {
        headers.push(("User-Agent".to_string(), agent));
    }
    headers
}
