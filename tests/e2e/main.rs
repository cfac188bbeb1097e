//! End-to-end tests against the real `broker` binary. Each test starts its own broker on a
//! free port with its own store, so no test depends on another's order or leftovers.

mod bank_card;
mod check_config;
mod connectors_browser;
mod console;
mod console_browser;
mod ctid;
mod dpop;
mod fapi;
mod fapi_profile;
mod harness;
mod interop;
mod jwks_uri;
mod legacy;
mod login_pages;
mod logout;
mod metrics;
mod operators;
mod pages_browser;
mod persons;
mod persons_sims;
mod protocol;
mod records;
mod records_fault;
mod sims;
mod tokens;
mod upstream_oidc;
mod ways_on;
