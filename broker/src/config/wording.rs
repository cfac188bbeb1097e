//! Problems of shape told in the operator's words, not serde's: `invalid type: string "60",
//! expected u64` becomes `must be a number of seconds, found the text "60"`, an unknown key
//! gets a "did you mean", an untagged secret reference says how secrets are written.

/// `reason` (possibly serde's wording) for the value at `key`, in words.
pub fn in_words(key: &str, reason: &str) -> String {
    // The TOML deserializer adds "\nin `key`": the key is named already.
    let reason = reason.split("\nin `").next().unwrap_or(reason).trim();
    let field = last_name(key);
    if let Some(rest) = reason.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            // A citizen ID number or a password written as the wrong type: its kind only,
            // never the value (problems go to terminals and logs).
            let leaf = key.rsplit('.').next().unwrap_or(key);
            let leaf = leaf.split('[').next().unwrap_or(leaf);
            let found = if PRIVATE_FIELDS.contains(&leaf) {
                kind_of(found)
            } else {
                found_in_words(found)
            };
            return format!(
                "must be {}, found {found}",
                expected_in_words(field, expected)
            );
        }
    }
    if let Some(rest) = reason.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!(
                "must be {}, found {}",
                expected_in_words(field, expected),
                found_in_words(found)
            );
        }
    }
    if let Some(rest) = reason.strip_prefix("unknown field ") {
        let (name, known) = name_and_choices(rest);
        return match suggest(&name, &known) {
            Some(best) => format!("unknown key `{name}` (did you mean `{best}`?)"),
            None if known.is_empty() => format!("unknown key `{name}`: this table takes no keys"),
            None => format!("unknown key `{name}` (known keys: {})", quoted(&known)),
        };
    }
    if let Some(rest) = reason.strip_prefix("unknown variant ") {
        let (name, known) = name_and_choices(rest);
        return match suggest(&name, &known) {
            Some(best) => format!("unknown value `{name}` (did you mean `{best}`?)"),
            None => format!("unknown value `{name}`: use one of {}", quoted(&known)),
        };
    }
    if let Some(rest) = reason.strip_prefix("missing field ") {
        return format!("needs `{}`", rest.trim_matches('`'));
    }
    if let Some(rest) = reason.strip_prefix("duplicate field ") {
        return format!("`{}` is given twice", rest.trim_matches('`'));
    }
    if let Some(name) = reason.strip_prefix("data did not match any variant of untagged enum ") {
        return match name.trim() {
            "SecretRef" if key.starts_with("clients") => {
                "secrets are never written inline: use { env = … }, { file = … } or { sha256 = … }"
                    .into()
            }
            "SecretRef" => {
                "secrets are never written inline: use { env = … } or { file = … }".into()
            }
            "ClientName" => {
                "must be a text, or a table of texts per language ({ en = …, vi = … })".into()
            }
            other => format!("does not have the expected shape ({other})"),
        };
    }
    reason.to_string()
}

/// The last key name of a path (`tokens.code_ttl` → `code_ttl`, `a.b[0]` → `b`).
fn last_name(key: &str) -> &str {
    let base = key.split('[').next().unwrap_or(key);
    let name = base.rsplit('.').next().unwrap_or(base);
    if name.is_empty() {
        key
    } else {
        name
    }
}

fn expected_in_words(field: &str, expected: &str) -> String {
    let number = |kind: &str| {
        if field.ends_with("_ms") {
            format!("{kind} of milliseconds")
        } else if field.contains("ttl") || field.contains("seconds") || field.ends_with("_secs") {
            format!("{kind} of seconds")
        } else {
            kind.to_string()
        }
    };
    match expected.trim() {
        "u8" | "u16" | "u32" | "u64" | "usize" => number("a number"),
        "i8" | "i16" | "i32" | "i64" | "isize" => number("a number"),
        "f32" | "f64" => number("a number"),
        "a boolean" => "true or false".into(),
        "a string" | "a borrowed string" => "a text in quotes".into(),
        "a sequence" => "a list [ … ]".into(),
        "a map" => "a table { … }".into(),
        e if e.starts_with("struct ") => "a table { … }".into(),
        e if e.starts_with("enum ") => "one of the documented values".into(),
        e => e.to_string(),
    }
}

/// Fields whose values a problem never repeats.
const PRIVATE_FIELDS: [&str; 4] = ["citizen_id", "password", "password_hash", "card_number"];

/// What kind of value serde found, without the value.
fn kind_of(found: &str) -> String {
    let found = found.trim();
    let kind = if found.starts_with("integer") || found.starts_with("floating point") {
        "a number"
    } else if found.starts_with("string") {
        "a text"
    } else if found.starts_with("boolean") {
        "true or false"
    } else if found == "sequence" {
        "a list"
    } else if found == "map" {
        "a table"
    } else {
        "another kind of value"
    };
    kind.to_string()
}

fn found_in_words(found: &str) -> String {
    let found = found.trim();
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the text {s}");
    }
    for (prefix, words) in [
        ("integer ", "the number "),
        ("floating point ", "the number "),
        ("boolean ", ""),
    ] {
        if let Some(v) = found.strip_prefix(prefix) {
            return format!("{words}{}", v.trim_matches('`'));
        }
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        other => other.to_string(),
    }
}

/// `` `name`, expected one of `a`, `b` `` → (`name`, [a, b]).
fn name_and_choices(rest: &str) -> (String, Vec<String>) {
    let (name, tail) = rest.split_once(", ").unwrap_or((rest, ""));
    let known = tail
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    (name.trim_matches('`').to_string(), known)
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The known name closest to `name`, if it is close enough to be a typo.
pub fn suggest(name: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (distance(name, k), k))
        .filter(|(d, k)| {
            *d <= (k.chars().count().max(3) / 3).max(1) || k.starts_with(name) && name.len() >= 4
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance (with adjacent swaps counted as one edit).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_citizen_id_number_of_the_wrong_type_is_not_repeated() {
        let told = in_words(
            "console.operators[0].citizen_id",
            "invalid type: integer `79201001234`, expected a string",
        );
        assert!(!told.contains("79201001234"), "{told}");
        assert!(told.contains("found a number"), "{told}");
    }

    use super::*;

    #[test]
    fn serde_wording_becomes_words() {
        assert_eq!(
            in_words(
                "tokens.code_ttl",
                "invalid type: string \"60\", expected u64"
            ),
            "must be a number of seconds, found the text \"60\""
        );
        assert_eq!(
            in_words(
                "registry.timeout_ms",
                "invalid type: string \"5\", expected u64"
            ),
            "must be a number of milliseconds, found the text \"5\""
        );
        assert_eq!(
            in_words(
                "allow_test_citizens",
                "invalid type: string \"yes\", expected a boolean"
            ),
            "must be true or false, found the text \"yes\""
        );
        assert_eq!(
            in_words(
                "pairwise_secret",
                "data did not match any variant of untagged enum SecretRef"
            ),
            "secrets are never written inline: use { env = … } or { file = … }"
        );
        assert_eq!(
            in_words(
                "clients[\"x\"].redirect_url",
                "unknown field `redirect_url`, expected one of `id`, `name`, `redirect_uris`"
            ),
            "unknown key `redirect_url` (did you mean `redirect_uris`?)"
        );
        assert_eq!(
            in_words(
                "store.kind",
                "unknown variant `reddis`, expected `embedded` or `redis`"
            ),
            "unknown value `reddis` (did you mean `redis`?)"
        );
        assert_eq!(
            in_words("clients[0]", "missing field `name`"),
            "needs `name`"
        );
        assert_eq!(
            in_words(
                "clients[0].secret",
                "data did not match any variant of untagged enum SecretRef\nin `secret`"
            ),
            "secrets are never written inline: use { env = … }, { file = … } or { sha256 = … }"
        );
        assert_eq!(in_words("x", "is not a URL"), "is not a URL");
    }

    #[test]
    fn suggestions_are_for_typos_only() {
        let known: Vec<String> = ["require_pkce", "issuer", "listen"]
            .map(String::from)
            .into();
        assert_eq!(
            suggest("require_pkec", &known).as_deref(),
            Some("require_pkce")
        );
        assert_eq!(suggest("isuer", &known).as_deref(), Some("issuer"));
        assert_eq!(suggest("colour", &known), None);
    }
}
