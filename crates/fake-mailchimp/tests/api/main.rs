//! Tests of the fake Mailchimp server over real HTTP on 127.0.0.1, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod archive;
mod auth;
mod batch;
mod common;
mod control;
mod email_change;
mod injection;
mod limits;
mod members;
mod merge_fields;
mod routes;
mod status;
mod tags;
