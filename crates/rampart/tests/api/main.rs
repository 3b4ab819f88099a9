//! The API as a user meets it: HTTP against the app `main` builds. One test binary for
//! the crate, one module per area.

mod access;
mod audit;
mod auth;
mod backup;
mod cancellation;
mod cli;
mod cluster;
mod console;
mod detection;
mod edge;
mod errors;
mod hardening;
mod helpers;
mod jobs;
mod keys;
mod mfa;
mod notify;
mod objects;
mod observations;
mod ops;
mod payment_attempts;
mod payments;
mod proxy;
mod resilience;
mod shutdown;
mod signing;
mod storage;
mod tenants;
mod tls;
mod traces;
mod transit;
mod vault;
mod waf;
