//! Integration tests of the library, in one test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod captured;
mod couch;
mod discourse;
mod example_config;
mod forms;
mod intake;
mod limits;
mod mailchimp;
mod outbound;
mod redis;
mod relay;
mod retention;
mod secrets;
mod sqlite;
mod ui;
mod ui_activity;
mod ui_attacks;
mod ui_browser;
mod ui_config;
