//! The OpenID Connect federation broker: one issuer for every regional platform, many
//! identity sources behind it.
//!
//! Layers, each using only the ones below it:
//! 1. [`server`] and the binary: HTTP wiring, error mapping at the edge, background jobs;
//! 2. flows: [`oidc`] (the provider's endpoints), [`login`] (drives connectors), [`demo`];
//! 3. domain: [`config`], [`person`] (who a verified identity is), [`session`];
//! 4. foundations: the `connectors` crate, [`store`], [`keys`], [`pages`] and [`i18n`].
#![forbid(unsafe_code)]

pub mod account;
pub mod admin;
pub mod config;
pub mod connector_public;
pub mod demo;
pub mod i18n;
pub mod jobs;
pub mod keys;
pub mod login;
pub mod maintenance;
pub mod notify;
pub mod observe;
pub mod oidc;
pub mod pages;
pub mod person;
pub mod review;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
pub mod util;
