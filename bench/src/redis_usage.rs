//! What a broker keeps in Redis: `used_memory` before and after a scenario, and the keys
//! under its prefix grouped by kind with their `MEMORY USAGE`, so a run shows which state is
//! in Redis and that no durable record (persons, citizen-ID index, consents, maintenance, as
//! earlier versions kept there) is.

use std::collections::BTreeMap;

use redis::Commands as _;

/// Key kinds earlier versions used for durable records in the store.
pub const DURABLE_KINDS: &[&str] = &["person", "idx", "consent", "maintenance"];

/// `used_memory` of `INFO memory`, in bytes.
pub fn used_memory(con: &mut redis::Connection) -> Option<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query(con).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Keys and bytes of one kind.
#[derive(Default, Debug, Clone, Copy)]
pub struct KindUsage {
    /// Keys.
    pub keys: u64,
    /// Sum of their `MEMORY USAGE`.
    pub bytes: u64,
}

/// The kind of a key below `prefix`: what comes before the first `:` (`sess`, `fam`, ...).
pub fn kind_of<'a>(prefix: &str, key: &'a str) -> &'a str {
    let rest = key.strip_prefix(prefix).unwrap_or(key);
    let end = rest.find([':', '{']).unwrap_or(rest.len());
    &rest[..end]
}

/// Every key under `prefix`, by kind, with `MEMORY USAGE` (pipelined, 500 keys a trip).
pub fn usage_by_kind(
    con: &mut redis::Connection,
    prefix: &str,
) -> Result<BTreeMap<String, KindUsage>, String> {
    let keys: Vec<String> = con
        .scan_match::<_, String>(format!("{prefix}*"))
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut out: BTreeMap<String, KindUsage> = BTreeMap::new();
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("MEMORY").arg("USAGE").arg(k);
        }
        let sizes: Vec<Option<u64>> = pipe.query(con).map_err(|e| e.to_string())?;
        for (k, size) in chunk.iter().zip(sizes) {
            let entry = out.entry(kind_of(prefix, k).to_string()).or_default();
            entry.keys += 1;
            entry.bytes += size.unwrap_or(0);
        }
    }
    Ok(out)
}

/// The report lines of a login scenario: memory growth per login and per citizen, and keys
/// by kind, the durable ones apart.
pub fn report(
    label: &str,
    used_before: Option<u64>,
    used_after: Option<u64>,
    usage: &BTreeMap<String, KindUsage>,
    logins: u64,
    citizens: usize,
) -> Vec<String> {
    let mut lines = Vec::new();
    let total: u64 = usage.values().map(|u| u.bytes).sum();
    let keys: u64 = usage.values().map(|u| u.keys).sum();
    let durable =
        DURABLE_KINDS
            .iter()
            .filter_map(|k| usage.get(*k))
            .fold(KindUsage::default(), |a, u| KindUsage {
                keys: a.keys + u.keys,
                bytes: a.bytes + u.bytes,
            });
    let per = |bytes: u64, n: u64| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{:.0} B", bytes as f64 / n as f64)
        }
    };
    let growth = used_before
        .zip(used_after)
        .map(|(b, a)| a.saturating_sub(b));
    lines.push(format!(
        "redis after `{label}`: {logins} logins of {citizens} distinct citizens; used_memory grew by {}{}",
        growth.map_or("?".to_string(), |g| format!("{g} B")),
        growth.map_or(String::new(), |g| format!(
            " ({} per login, {} per citizen)",
            per(g, logins),
            per(g, citizens as u64)
        )),
    ));
    let kinds: Vec<String> = usage
        .iter()
        .map(|(k, u)| format!("{k}: {} keys, {} B", u.keys, u.bytes))
        .collect();
    lines.push(format!(
        "  keys of this broker: {keys} ({total} B by MEMORY USAGE) = {}",
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join("; ")
        }
    ));
    lines.push(format!(
        "  durable records in Redis ({}): {} keys, {} B = {} per citizen",
        DURABLE_KINDS
            .iter()
            .map(|k| format!("{k}:"))
            .collect::<Vec<_>>()
            .join(", "),
        durable.keys,
        durable.bytes,
        per(durable.bytes, citizens as u64)
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_the_first_segment() {
        assert_eq!(kind_of("b:", "b:sess:abc"), "sess");
        assert_eq!(kind_of("b:", "b:fam:{x}"), "fam");
        assert_eq!(kind_of("b:", "b:rt:{x}:y"), "rt");
        assert_eq!(kind_of("b:", "b:idx:cid:z"), "idx");
        assert_eq!(kind_of("b:", "b:maintenance"), "maintenance");
    }

    #[test]
    fn durable_keys_are_counted_apart() {
        let mut usage = BTreeMap::new();
        usage.insert(
            "sess".to_string(),
            KindUsage {
                keys: 10,
                bytes: 1000,
            },
        );
        usage.insert(
            "person".to_string(),
            KindUsage {
                keys: 2,
                bytes: 400,
            },
        );
        let lines = report("login", Some(100), Some(1100), &usage, 10, 2);
        assert!(lines[0].contains("100 B per login"), "{}", lines[0]);
        assert!(lines[0].contains("500 B per citizen"), "{}", lines[0]);
        assert!(
            lines[2].contains("2 keys, 400 B = 200 B per citizen"),
            "{}",
            lines[2]
        );
    }
}
