//! The one rule for every URL the broker calls or sends browsers to: https, or plain http
//! only on this machine (development, tests, the demo), never with a fragment.

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Whether a URL names this machine: `localhost`, `127.0.0.1` or `[::1]`.
pub fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        None => false,
    }
}

/// Whether a parsed URL may be used: https, or http on loopback.
pub fn is_allowed(u: &Url) -> bool {
    match u.scheme() {
        "https" => true,
        "http" => is_loopback(u),
        _ => false,
    }
}

/// Parses and checks a service or redirect URL: absolute, https (http only on localhost),
/// no fragment. The error is an operator-readable reason naming the URL.
pub fn check_url(raw: &str) -> Result<Url, String> {
    let u = Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if u.fragment().is_some() {
        return Err(format!("`{raw}` must not have a fragment"));
    }
    match u.scheme() {
        "https" | "http" if is_allowed(&u) => Ok(u),
        "http" => Err(format!(
            "`{raw}` must use https (plain http only on localhost)"
        )),
        s => Err(format!("`{raw}` has an unsupported scheme `{s}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_localhost_and_the_two_loopback_addresses() {
        for ok in [
            "http://localhost:8080/",
            "http://LOCALHOST/",
            "http://127.0.0.1/",
            "http://[::1]:9/",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://example.org/",
            "http://localhost.example.org/",
            "http://10.0.0.1/",
            "http://[::2]/",
            "ftp://localhost/",
        ] {
            assert!(check_url(refused).is_err(), "{refused}");
        }
        assert!(check_url("https://example.org/x").is_ok());
        assert!(check_url("https://example.org/#f").is_err());
        assert!(check_url("not a url").is_err());
    }
}
