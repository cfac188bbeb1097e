//! Foundations shared by the broker and its connectors, so each security rule exists once:
//!
//! * [`secret`]: secrets named by `{ env = … }` or `{ file = … }`, never inline, never empty;
//! * [`url_policy`]: https, or plain http only on this machine;
//! * [`hash`]: keyed hashes of personal data and the framing of the broker's pairwise
//!   identifiers;
//! * [`signing_key`]: PKCS#8 signing keys (RS256, PS256, ES256, EdDSA) and their JWKs;
//! * [`localized`]: operator-written texts per language;
//! * [`seal`]: AES-256-GCM sealing of small records that carry personal data;
//! * [`http`] and [`outage`]: the bounded JSON client of documented service contracts and
//!   its memory of recent outages.
//!
//! Nothing here knows of a web framework.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hash;
pub mod http;
pub mod localized;
pub mod outage;
pub mod records_seal;
pub mod seal;
pub mod secret;
pub mod signing_key;
pub mod url_policy;
