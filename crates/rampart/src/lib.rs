//! The Rampart program: builds the application from configuration and runs it.
//!
//! [`app::build`] is the one function that assembles storage, keys, identity and the HTTP
//! router; `main` and the test suite both call it, so tests exercise what ships.
#![forbid(unsafe_code)]

mod alerts_api;
pub mod app;
pub mod backup;
pub mod cli;
pub mod detect;
mod keyring_backend;
pub mod listener;
mod openapi;
mod ops;
mod ops_api;
pub mod proxy;
mod queue_rate;
pub mod telemetry;
pub mod tls;
