//! The JOSE signature algorithms the broker accepts, by name.

use jsonwebtoken::Algorithm;

/// The algorithms FAPI 2.0 Security Profile allows: PS256, ES256 and EdDSA (Ed25519).
pub const FAPI_ALGS: &[Algorithm] = &[Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];

/// JOSE names of `algs`, space-separated (`WWW-Authenticate: DPoP algs="…"`), in order.
pub fn alg_names(algs: &[Algorithm]) -> Vec<&'static str> {
    algs.iter().filter_map(|a| alg_name(*a)).collect()
}

fn alg_name(alg: Algorithm) -> Option<&'static str> {
    Some(match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::PS256 => "PS256",
        Algorithm::RS256 => "RS256",
        Algorithm::EdDSA => "EdDSA",
        _ => return None,
    })
}

/// The algorithm a header's `alg` names, among the asymmetric ones the broker knows.
/// `Ed25519` (RFC 9864, sent by current openid-client for Ed25519 keys) is EdDSA.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "ES256" => Algorithm::ES256,
        "PS256" => Algorithm::PS256,
        "RS256" => Algorithm::RS256,
        "EdDSA" | "Ed25519" => Algorithm::EdDSA,
        _ => return None,
    })
}
