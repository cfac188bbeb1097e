//! The OpenID Connect federation broker: one issuer for every regional platform, many
//! identity sources behind it.
//!
//! Layers, each using only the ones below it:
//! 1. [`server`] and the binary: HTTP wiring, error mapping at the edge, background jobs;
//! 2. flows: [`oidc`] (the provider's endpoints), [`login`] (drives connectors), `demo` (only
//!    with the `demo` cargo feature, on by default; production builds leave it out);
//! 3. domain: [`config`], [`person`] (who a verified identity is), [`session`];
//! 4. foundations: the `connectors` crate, [`store`], [`keys`], [`pages`] and [`i18n`].
#![forbid(unsafe_code)]

pub mod client_keys;
pub mod clock;
pub mod config;
pub mod connector_kv;
pub mod csrf;
#[cfg(feature = "demo")]
pub mod demo;
pub mod i18n;
pub mod jobs;
pub mod keys;
pub mod keyspace;
pub mod login;
pub mod maintenance;
pub mod observe;
pub mod oidc;
pub mod person;
pub mod protocol;
pub mod recent_logins;

pub mod session;
pub mod stores;

pub mod util;
pub mod versions;
pub mod web;
