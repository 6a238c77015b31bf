//! Test harness shared by Geoffrey's integration tests: the Discourse fixtures, a chat webhook
//! receiver whose responses a test scripts, and a Geoffrey started in-process on port 0 with a
//! fresh data folder. [`browser`] drives a headless Chromium for end-to-end tests of web pages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod discourse;
pub mod fixtures;
pub mod geoffrey;
pub mod receiver;
pub mod servers;
pub mod suites;
pub mod ui;

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 20 ms until it returns `Some`, panicking with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends test logs to the test's output when `GEOFFREY_LOG` is set, for example to `debug`.
pub fn init_logging() {
    if let Ok(filter) = std::env::var("GEOFFREY_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}
