//! The protocol's vocabulary, below every flow: OAuth 2.0 error data, `prompt` values,
//! scopes, request parameters and newtypes for protocol strings (secret ones redact in
//! `Debug`). No HTTP framework and no store calls here.

pub mod algorithms;
pub mod error;
pub mod fapi;
pub mod ids;
pub mod params;
pub mod prompt;
pub mod scopes;
pub mod secret;

pub use error::OAuthError;
pub use ids::{ClientId, ConnectorId, PersonId, RedirectUri, Sid};
pub use params::{parse_params, Params};
pub use prompt::Prompt;
pub use secret::Secret;
