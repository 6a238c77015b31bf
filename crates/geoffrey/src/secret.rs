//! A string that must never reach a log, an error message or the UI.
//!
//! `Secret` serializes to its real value, because the store has to keep it, but its `Debug`
//! and `Display` print a fixed mask, so a `tracing` field or an error that formats a
//! configuration cannot leak it by accident.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The text shown in place of a secret value.
pub const MASK: &str = "********";

/// A secret value: a webhook secret, an API key, a URL that carries a token.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the real value. Call it only where the value is used, never to display it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Generates a random secret of 32 bytes, hex-encoded.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(hex::encode(bytes))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Returns a URL's scheme, host and port, without credentials or path, for logs and errors
/// about a server whose URL may carry a password.
pub fn server_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        ),
        Err(_) => "an invalid URL".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_masked() {
        let secret = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), MASK);
        assert_eq!(format!("{secret}"), MASK);
        assert_eq!(secret.expose(), "hunter2-hunter2");
    }

    #[test]
    fn server_of_drops_credentials() {
        let server = server_of("redis://:hunter2@10.0.0.5:6380/0");
        assert_eq!(server, "redis://10.0.0.5:6380");
    }

    #[test]
    fn generated_secrets_differ() {
        let first = Secret::generate();
        let second = Secret::generate();
        assert_eq!(first.expose().len(), 64);
        assert_ne!(first.expose(), second.expose());
    }
}
