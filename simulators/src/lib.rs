//! Simulated upstream identity sources, for the broker's demo and end-to-end tests. They
//! behave like the real services from the outside (protocols, login pages, their own
//! keys) and hold only made-up test citizens.
//!
//! This crate does not depend on the broker: the broker's demo starts a simulator in its
//! own process, tests start one beside the broker binary, and the `simulators` command
//! runs one alone.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bank;
pub mod ctid;
pub mod legacy;
pub mod people;
pub mod registry;
pub mod sms;
pub mod vneid;
