//! Geoffrey: an automation hub for Discourse communities.
//!
//! A forum's webhook arrives at the [`api`], which finds the instance's configuration in the
//! [`store`], verifies the delivery and enqueues one job per subscribed app feature on the
//! [`queue`]. A [`worker`] takes each job, runs it through the [`apps`] and writes the outcome
//! to the instance's database. [`run`] wires these together in one process; the `geoffrey`
//! binary in the `cli` crate is a thin layer over this library.

#![warn(clippy::print_stdout)]

pub mod api;
pub mod app_status;
pub mod apps;
pub mod audit;
pub mod cache;
pub mod clock;
pub mod config;
pub mod config_edit;
pub mod discourse;
pub mod event;
pub mod instance;
pub mod keyring;
pub mod limit;
pub mod metrics;
pub mod outbound;
pub mod queue;
pub mod retention;
pub mod run;
pub mod secret;
pub mod services;
mod sqlite;
pub mod store;
pub mod ui;
pub mod worker;
