//! Claim mapping and value normalisation of the OpenID Connect connector.
//!
//! Upstream providers name and format attributes their own way (a `cccd` claim, birth dates
//! as `15/03/1990`, local phone numbers, names in decomposed Unicode). The operator says in
//! configuration which upstream claim holds what; this module finds the values and turns
//! them into the broker's standard claims. Nothing here logs values: callers only ever see
//! claim *names* in errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use crate::CitizenId;

/// Which upstream claim holds each attribute. Claim names may be dotted paths into nested
/// objects (`person.cccd`); an exact key always wins over a path.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// The upstream claim holding the citizen ID number (none by default).
    #[serde(default)]
    pub citizen_id: Option<String>,
    /// Whether the upstream proves the ID number (a state identity app does; a provider
    /// where citizens type their own number does not).
    #[serde(default)]
    pub citizen_id_proven: bool,
    /// Full name.
    #[serde(default = "default_name")]
    pub name: String,
    /// Given name.
    #[serde(default = "default_given_name")]
    pub given_name: String,
    /// Family name.
    #[serde(default = "default_family_name")]
    pub family_name: String,
    /// Birth date (normalised to ISO 8601 `YYYY-MM-DD`).
    #[serde(default = "default_birthdate")]
    pub birthdate: String,
    /// Phone number (normalised towards E.164).
    #[serde(default = "default_phone_number")]
    pub phone_number: String,
    /// Country calling code for phone numbers in national format (`0901234567` with `84`
    /// becomes `+84901234567`). Without it, national numbers are kept as digits.
    #[serde(default)]
    pub phone_country_code: Option<String>,
    /// Postal address (an OpenID Connect address object, or text).
    #[serde(default = "default_address")]
    pub address: String,
}

fn default_name() -> String {
    "name".into()
}
fn default_given_name() -> String {
    "given_name".into()
}
fn default_family_name() -> String {
    "family_name".into()
}
fn default_birthdate() -> String {
    "birthdate".into()
}
fn default_phone_number() -> String {
    "phone_number".into()
}
fn default_address() -> String {
    "address".into()
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            citizen_id: None,
            citizen_id_proven: false,
            name: default_name(),
            given_name: default_given_name(),
            family_name: default_family_name(),
            birthdate: default_birthdate(),
            phone_number: default_phone_number(),
            phone_country_code: None,
            address: default_address(),
        }
    }
}

impl ClaimMapping {
    /// Configuration problems as (key below `claims`, reason).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut names: Vec<(&str, &str)> = vec![
            ("name", &self.name),
            ("given_name", &self.given_name),
            ("family_name", &self.family_name),
            ("birthdate", &self.birthdate),
            ("phone_number", &self.phone_number),
            ("address", &self.address),
        ];
        if let Some(c) = &self.citizen_id {
            names.push(("citizen_id", c));
        }
        for (key, claim) in names {
            if claim.trim().is_empty() || claim.starts_with('.') || claim.ends_with('.') {
                out.push((key.to_string(), "must name an upstream claim".into()));
            }
        }
        if let Some(cc) = &self.phone_country_code {
            if cc.is_empty() || cc.len() > 3 || !cc.chars().all(|c| c.is_ascii_digit()) {
                out.push((
                    "phone_country_code".into(),
                    "must be 1 to 3 digits, without `+` (`84` for Viet Nam)".into(),
                ));
            }
        }
        if self.citizen_id_proven && self.citizen_id.is_none() {
            out.push((
                "citizen_id_proven".into(),
                "is set but `citizen_id` names no claim".into(),
            ));
        }
        out
    }
}

/// Why mapped claims cannot be used. Holds claim names only, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The citizen ID claim is there but is not an ID number.
    #[error("claim `{0}` is not a valid citizen ID number")]
    InvalidCitizenId(String),
}

/// The broker's view of the upstream claims.
#[derive(Clone, PartialEq)]
pub struct Mapped {
    /// The citizen ID number, when the mapping names one and the upstream sent it.
    pub citizen_id: Option<CitizenId>,
    /// Standard claims (`name`, `given_name`, `family_name`, `birthdate`, `phone_number`,
    /// `address`), normalised.
    pub claims: BTreeMap<String, Value>,
    /// Names of claims that were present but could not be understood and were left out.
    pub dropped: Vec<String>,
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped")
            .field("citizen_id", &self.citizen_id)
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .field("dropped", &self.dropped)
            .finish()
    }
}

/// Finds a claim by exact name, then as a dotted path into nested objects.
pub fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v).filter(|v| !v.is_null());
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current).filter(|v| !v.is_null())
}

/// Maps upstream claims with `mapping`.
pub fn map_claims(
    mapping: &ClaimMapping,
    claims: &Map<String, Value>,
) -> Result<Mapped, MappingError> {
    let mut out = BTreeMap::new();
    let mut dropped = Vec::new();

    let citizen_id = match &mapping.citizen_id {
        Some(claim) => match lookup(claims, claim) {
            None => None,
            Some(v) => {
                let value = v
                    .as_str()
                    .and_then(normalise_citizen_id)
                    .ok_or_else(|| MappingError::InvalidCitizenId(claim.clone()))?;
                Some(CitizenId {
                    value,
                    proven: mapping.citizen_id_proven,
                })
            }
        },
        None => None,
    };

    let mut text = |target: &str, claim: &str, f: fn(&str) -> Option<String>| {
        if let Some(v) = lookup(claims, claim) {
            match v.as_str().and_then(f) {
                Some(s) => {
                    out.insert(target.to_string(), Value::String(s));
                }
                None => dropped.push(claim.to_string()),
            }
        }
    };
    text("name", &mapping.name, normalise_text);
    text("given_name", &mapping.given_name, normalise_text);
    text("family_name", &mapping.family_name, normalise_text);
    text("birthdate", &mapping.birthdate, normalise_date);

    if let Some(v) = lookup(claims, &mapping.phone_number) {
        match v
            .as_str()
            .and_then(|s| normalise_phone(s, mapping.phone_country_code.as_deref()))
        {
            Some(p) => {
                out.insert("phone_number".into(), Value::String(p));
            }
            None => dropped.push(mapping.phone_number.clone()),
        }
    }
    if let Some(v) = lookup(claims, &mapping.address) {
        match normalise_address(v) {
            Some(a) => {
                out.insert("address".into(), a);
            }
            None => dropped.push(mapping.address.clone()),
        }
    }
    Ok(Mapped {
        citizen_id,
        claims: out,
        dropped,
    })
}

/// Text: Unicode NFC (Vietnamese names often arrive decomposed), trimmed, inner runs of
/// whitespace collapsed to one space. Empty text is no value.
pub fn normalise_text(raw: &str) -> Option<String> {
    let composed: String = raw.nfc().collect();
    let joined = composed.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() || joined.chars().any(char::is_control) {
        None
    } else {
        Some(joined)
    }
}

/// A citizen ID number: spaces and the separators `-`, `.` and `/` removed; what is left
/// must be 6 to 20 ASCII digits. Anything else is refused rather than guessed at.
pub fn normalise_citizen_id(raw: &str) -> Option<String> {
    let kept: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '.' | '/'))
        .collect();
    if (6..=20).contains(&kept.len()) && kept.chars().all(|c| c.is_ascii_digit()) {
        Some(kept)
    } else {
        None
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year == 0 => 29, // year unknown (OpenID Connect `0000-MM-DD`)
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

fn iso(year: u32, month: u32, day: u32) -> Option<String> {
    let year_ok = year == 0 || (1800..=2999).contains(&year);
    if year_ok && (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month) {
        Some(format!("{year:04}-{month:02}-{day:02}"))
    } else {
        None
    }
}

fn number(s: &str, min_len: usize, max_len: usize) -> Option<u32> {
    if (min_len..=max_len).contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// A date to ISO 8601 (`YYYY-MM-DD`). Understood: `YYYY-MM-DD` (with or without a time
/// after it), `YYYY/MM/DD`, `YYYY.MM.DD`, `DD/MM/YYYY`, `DD-MM-YYYY`, `DD.MM.YYYY` (day
/// first, as in Viet Nam; never month first), `YYYYMMDD`, and a year alone (`YYYY`, which
/// OpenID Connect allows). Impossible dates (30 February) are refused.
pub fn normalise_date(raw: &str) -> Option<String> {
    let s = raw.trim();
    // An ISO date-time: keep the date.
    let s = match s.find(['T', ' ']) {
        Some(10) => &s[..10],
        _ => s,
    };
    if let Some(year) = number(s, 4, 4) {
        return (1800..=2999).contains(&year).then(|| format!("{year:04}"));
    }
    if s.len() == 8 && s.chars().all(|c| c.is_ascii_digit()) {
        let (y, rest) = s.split_at(4);
        let (m, d) = rest.split_at(2);
        return iso(number(y, 4, 4)?, number(m, 2, 2)?, number(d, 2, 2)?);
    }
    let sep = s.chars().find(|c| matches!(c, '-' | '/' | '.'))?;
    let parts: Vec<&str> = s.split(sep).collect();
    let [a, b, c] = parts.as_slice() else {
        return None;
    };
    if a.len() == 4 {
        iso(number(a, 4, 4)?, number(b, 1, 2)?, number(c, 1, 2)?)
    } else if c.len() == 4 {
        iso(number(c, 4, 4)?, number(b, 1, 2)?, number(a, 1, 2)?)
    } else {
        None
    }
}

/// A phone number towards E.164: spaces, `-`, `.`, `(` and `)` removed; `00` becomes `+`;
/// a national number (one leading `0`) gets `+` and the country code when one is
/// configured. Anything but digits after that is refused.
pub fn normalise_phone(raw: &str, country_code: Option<&str>) -> Option<String> {
    let kept: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '.' | '(' | ')'))
        .collect();
    let (international, digits) = if let Some(rest) = kept.strip_prefix('+') {
        (true, rest.to_string())
    } else if let Some(rest) = kept.strip_prefix("00") {
        (true, rest.to_string())
    } else {
        (false, kept)
    };
    if !(4..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if international {
        return Some(format!("+{digits}"));
    }
    match (country_code, digits.strip_prefix('0')) {
        (Some(cc), Some(national)) if !national.starts_with('0') => {
            Some(format!("+{cc}{national}"))
        }
        _ => Some(digits),
    }
}

/// An address: an object keeps its text members (normalised); text becomes
/// `{ "formatted": ... }`.
pub fn normalise_address(v: &Value) -> Option<Value> {
    const MEMBERS: [&str; 6] = [
        "formatted",
        "street_address",
        "locality",
        "region",
        "postal_code",
        "country",
    ];
    match v {
        Value::String(s) => normalise_text(s).map(|t| serde_json::json!({ "formatted": t })),
        Value::Object(o) => {
            let mut out = Map::new();
            for m in MEMBERS {
                if let Some(t) = o.get(m).and_then(Value::as_str).and_then(normalise_text) {
                    out.insert(m.to_string(), Value::String(t));
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn dates_become_iso_8601() {
        for (raw, want) in [
            ("1990-03-15", Some("1990-03-15")),
            (" 1990-03-15 ", Some("1990-03-15")),
            ("1990-03-15T00:00:00Z", Some("1990-03-15")),
            ("15/03/1990", Some("1990-03-15")),
            ("5/3/1990", Some("1990-03-05")),
            ("15-03-1990", Some("1990-03-15")),
            ("15.03.1990", Some("1990-03-15")),
            ("1990/03/15", Some("1990-03-15")),
            ("19900315", Some("1990-03-15")),
            ("1990", Some("1990")),
            ("0000-03-15", Some("0000-03-15")),
            ("29/02/2000", Some("2000-02-29")),
            ("29/02/1900", None),
            ("31/04/1990", None),
            ("03/15/1990", None), // month first is never guessed
            ("15/03/90", None),
            ("yesterday", None),
            ("", None),
            ("1990-3", None),
        ] {
            assert_eq!(normalise_date(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn id_numbers_keep_digits_only() {
        assert_eq!(
            normalise_citizen_id(" 0792 0100-1234 ").as_deref(),
            Some("079201001234")
        );
        assert_eq!(
            normalise_citizen_id("079.201.001.234").as_deref(),
            Some("079201001234")
        );
        // Letters are not silently dropped: the number would change.
        assert_eq!(normalise_citizen_id("07920100123X"), None);
        assert_eq!(normalise_citizen_id("12345"), None);
        assert_eq!(normalise_citizen_id(""), None);
    }

    #[test]
    fn phones_move_towards_e164() {
        assert_eq!(
            normalise_phone("090 123 4567", Some("84")).as_deref(),
            Some("+84901234567")
        );
        assert_eq!(
            normalise_phone("+84 (90) 123-4567", None).as_deref(),
            Some("+84901234567")
        );
        assert_eq!(
            normalise_phone("0084901234567", None).as_deref(),
            Some("+84901234567")
        );
        assert_eq!(
            normalise_phone("0901234567", None).as_deref(),
            Some("0901234567")
        );
        assert_eq!(normalise_phone("call me", Some("84")), None);
    }

    #[test]
    fn names_are_composed_and_trimmed() {
        // "Nguyễn" in decomposed form (e + circumflex + tilde as combining marks).
        let decomposed = "  Nguye\u{302}\u{303}n   Va\u{306}n  An ";
        assert_eq!(normalise_text(decomposed).as_deref(), Some("Nguyễn Văn An"));
        assert_eq!(normalise_text("   "), None);
    }

    #[test]
    fn addresses_are_objects() {
        assert_eq!(
            normalise_address(&json!(" 1 Lê Lợi, Quận 1 ")),
            Some(json!({"formatted": "1 Lê Lợi, Quận 1"}))
        );
        assert_eq!(
            normalise_address(&json!({"locality": " Hà Nội ", "other": 3})),
            Some(json!({"locality": "Hà Nội"}))
        );
        assert_eq!(normalise_address(&json!(12)), None);
    }

    #[test]
    fn mapping_follows_the_configuration() {
        let mapping = ClaimMapping {
            citizen_id: Some("person.cccd".into()),
            citizen_id_proven: true,
            name: "full_name".into(),
            birthdate: "dob".into(),
            phone_number: "mobile".into(),
            phone_country_code: Some("84".into()),
            ..ClaimMapping::default()
        };
        let claims = obj(json!({
            "sub": "u-1",
            "full_name": " Trần  Thị Lan ",
            "given_name": "Lan",
            "dob": "02/11/1995",
            "mobile": "0912 345 678",
            "person": {"cccd": "0011 9500 6789"},
            "name": "ignored: not the configured claim"
        }));
        let m = map_claims(&mapping, &claims).expect("maps");
        let cid = m.citizen_id.clone().expect("citizen id");
        assert_eq!(cid.value, "001195006789");
        assert!(cid.proven);
        assert_eq!(m.claims["name"], "Trần Thị Lan");
        assert_eq!(m.claims["given_name"], "Lan");
        assert_eq!(m.claims["birthdate"], "1995-11-02");
        assert_eq!(m.claims["phone_number"], "+84912345678");
        assert!(!m.claims.contains_key("family_name"));
        assert!(m.dropped.is_empty());
    }

    #[test]
    fn exact_names_win_over_paths_and_bad_values_are_dropped() {
        let mapping = ClaimMapping {
            citizen_id: Some("a.b".into()),
            ..ClaimMapping::default()
        };
        let claims = obj(json!({
            "a.b": "079201001234",
            "a": {"b": "999999999999"},
            "birthdate": "31/02/1990",
            "name": 42
        }));
        let m = map_claims(&mapping, &claims).expect("maps");
        assert_eq!(
            m.citizen_id.map(|c| (c.value, c.proven)),
            Some(("079201001234".to_string(), false))
        );
        assert!(!m.claims.contains_key("birthdate"));
        assert!(!m.claims.contains_key("name"));
        assert_eq!(m.dropped, vec!["name".to_string(), "birthdate".to_string()]);
    }

    #[test]
    fn an_invalid_id_number_is_an_error_that_names_only_the_claim() {
        let mapping = ClaimMapping {
            citizen_id: Some("cccd".into()),
            ..ClaimMapping::default()
        };
        for bad in [json!("07920100123X"), json!(79201001234u64), json!("")] {
            let err = map_claims(&mapping, &obj(json!({ "cccd": bad }))).expect_err("refused");
            assert_eq!(err, MappingError::InvalidCitizenId("cccd".into()));
            assert!(!err.to_string().contains("0792"));
        }
        // Absent is not an error: the identity simply has no ID number.
        let m = map_claims(&mapping, &obj(json!({}))).expect("maps");
        assert!(m.citizen_id.is_none());
    }

    #[test]
    fn configuration_problems_name_their_key() {
        let mapping = ClaimMapping {
            citizen_id_proven: true,
            name: " ".into(),
            phone_country_code: Some("+84".into()),
            ..ClaimMapping::default()
        };
        let keys: Vec<String> = mapping.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec!["name", "phone_country_code", "citizen_id_proven"]
        );
    }
}
