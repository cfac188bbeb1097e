//! The OpenID Provider: discovery, authorization, token, UserInfo, revocation and
//! introspection endpoints, and the records behind codes and tokens.

pub mod authorize;
pub mod backchannel;
pub mod client_auth;
pub mod discovery;
pub mod dpop;
pub mod dpop_proof;
pub mod grants;
pub mod introspect;
pub mod jarm;
pub mod jws;
pub mod logout;
pub mod par;
pub mod proof_keys;
pub mod request_object;
pub mod signed_response;
pub mod token;
pub mod userinfo;

pub use crate::protocol::{parse_params, OAuthError, Params};
