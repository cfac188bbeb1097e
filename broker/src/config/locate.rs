//! Where a problem is: entries of the `[[keys]]`, `[[connectors]]` and `[[clients]]` lists
//! named by their id (`clients["rp-basic"]` rather than `clients[3]`), and the line of the
//! file the key is on.

/// The lists whose entries have an id, and the key of that id.
const NAMED_LISTS: [(&str, &str); 3] = [("keys", "kid"), ("connectors", "id"), ("clients", "id")];

/// `key` with a leading `list[n]` named by the entry's id, when it has one.
pub fn named(key: &str, table: &toml::Table) -> String {
    for (list, id_key) in NAMED_LISTS {
        let Some((index, rest)) = index_of(key, list) else {
            continue;
        };
        let id = table
            .get(list)
            .and_then(|l| l.as_array())
            .and_then(|l| l.get(index))
            .and_then(|e| e.get(id_key))
            .and_then(|id| id.as_str())
            .filter(|id| !id.is_empty() && !id.contains(['"', '\\']));
        if let Some(id) = id {
            return format!("{list}[\"{id}\"]{rest}");
        }
    }
    key.to_string()
}

/// `list[n]rest` → (n, rest).
fn index_of<'a>(key: &'a str, list: &str) -> Option<(usize, &'a str)> {
    let rest = key.strip_prefix(list)?.strip_prefix('[')?;
    let (n, rest) = rest.split_once(']')?;
    Some((n.parse().ok()?, rest))
}

/// The 1-based line of `text` where `key` (as reported, with list indexes) is written, as
/// near as can be found: the key's own line, else its table's header.
pub fn line(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut names: Vec<String> = Vec::new();
    let mut from = 0;
    let mut to = lines.len();
    let mut found = None;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let (name, index) = match part.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if name.is_empty() {
            break;
        }
        names.push(name.to_string());
        let path = names.join(".");
        if let Some(n) = index {
            // The n-th `[[path]]` header in the range.
            let header = format!("[[{path}]]");
            let starts: Vec<usize> = (from..to)
                .filter(|&i| lines[i].trim_start().starts_with(&header))
                .collect();
            match starts.get(n) {
                Some(&start) => {
                    found = Some(start);
                    from = start + 1;
                    to = starts.get(n + 1).copied().unwrap_or(to);
                    // The entry ends at the next header of its own list or of a list above.
                    to = (from..to)
                        .find(|&i| {
                            let l = lines[i].trim_start();
                            l.starts_with("[[") && !l.starts_with(&format!("[[{path}."))
                                || l.starts_with('[') && !l.contains(&format!("{path}."))
                        })
                        .unwrap_or(to);
                    continue;
                }
                None => {
                    // An inline list (`name = [...]`): the line of `name`.
                    if let Some(i) = assignment(&lines, from, to, name) {
                        found = Some(i);
                    }
                    break;
                }
            }
        }
        let header = format!("[{path}]");
        if let Some(i) = assignment(&lines, from, to, name) {
            found = Some(i);
            if parts.peek().is_none() {
                break;
            }
            from = i;
        } else if let Some(i) = (from..to).find(|&i| lines[i].trim_start().starts_with(&header)) {
            found = Some(i);
            from = i + 1;
        } else {
            break;
        }
    }
    found.map(|i| i + 1)
}

/// The first line in `from..to` that assigns `name` (`name = …`), outside other tables.
fn assignment(lines: &[&str], from: usize, to: usize, name: &str) -> Option<usize> {
    (from..to).find(|&i| {
        let l = lines[i].trim_start();
        l.strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "issuer = \"x\"\n\n[tokens]\ncode_ttl = \"60\"\n\n[[clients]]\nid = \"a\"\nname = \"A\"\n\n[[clients]]\nid = \"rp-basic\"\nredirect_uris = [\"http://x\"]\nsecret = \"inline\"\n";

    #[test]
    fn entries_are_named_by_id_and_found_on_their_line() {
        let table: toml::Table = TEXT.parse().expect("toml");
        assert_eq!(
            named("clients[1].secret", &table),
            "clients[\"rp-basic\"].secret"
        );
        assert_eq!(named("clients[7].secret", &table), "clients[7].secret");
        assert_eq!(named("tokens.code_ttl", &table), "tokens.code_ttl");
        assert_eq!(line(TEXT, "clients[1].secret"), Some(13));
        assert_eq!(line(TEXT, "clients[1].redirect_uris[0]"), Some(12));
        assert_eq!(line(TEXT, "clients[0]"), Some(6));
        assert_eq!(line(TEXT, "tokens.code_ttl"), Some(4));
        assert_eq!(line(TEXT, "issuer"), Some(1));
        assert_eq!(line(TEXT, "nowhere"), None);
    }
}
