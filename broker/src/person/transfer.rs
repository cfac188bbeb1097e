//! `broker migrate` and `broker records export|import`: the schema, and moving records as
//! NDJSON (one [`records::Entry`] a line: keyed hashes and sealed values, never a number in
//! clear) between deployments and backends.

use std::io::{BufRead, Write};

use records::{Entry, RecordsError};

use crate::config::Settings;

/// Applies the migrations the records lack.
pub async fn migrate(settings: &Settings) -> Result<String, String> {
    super::records::migrate(settings)
        .await
        .map_err(|e| e.to_string())
}

/// Writes every record to `out`, one JSON line each, as it is read (the records are never
/// all in memory); returns how many.
pub async fn export(settings: &Settings, out: &mut (dyn Write + Send)) -> Result<u64, String> {
    let records = super::records::open(settings)
        .await
        .map_err(|e| e.to_string())?;
    let n = records
        .export_each(&mut |entry| {
            serde_json::to_writer(&mut *out, &entry).map_err(|e| {
                if e.is_io() {
                    RecordsError::Unavailable(format!("cannot write: {e}"))
                } else {
                    RecordsError::Corrupt(format!("cannot encode a record: {e}"))
                }
            })?;
            writeln!(out).map_err(|e| RecordsError::Unavailable(format!("cannot write: {e}")))
        })
        .await
        .map_err(|e| match e {
            // The sink's own words (a full disk, a closed pipe) say it best.
            RecordsError::Unavailable(m) if m.starts_with("cannot write") => m,
            other => other.to_string(),
        })?;
    out.flush().map_err(|e| format!("cannot write: {e}"))?;
    Ok(n)
}

/// Entries written per call of [`records::Records::import`]: the file is never all in memory.
const IMPORT_BATCH: usize = 10_000;

/// Reads an exported file and adds its records; refuses records that are not empty unless
/// `force` (and then skips what exists). The file is read twice: once to check every line
/// (a bad line stops the import before anything is written), then in batches of
/// [`IMPORT_BATCH`] entries. Returns (entries read, entries written).
pub async fn import(
    settings: &Settings,
    path: &std::path::Path,
    force: bool,
) -> Result<(u64, u64), String> {
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let entries = |reader: std::io::BufReader<std::fs::File>| {
        reader
            .lines()
            .enumerate()
            .filter_map(|(i, line)| match line {
                Err(e) => Some(Err(format!("cannot read line {}: {e}", i + 1))),
                Ok(l) if l.trim().is_empty() => None,
                Ok(l) => Some(
                    serde_json::from_str::<Entry>(&l)
                        .map_err(|e| format!("line {}: not an exported record: {e}", i + 1)),
                ),
            })
    };
    let mut read = 0u64;
    for entry in entries(open()?) {
        entry?;
        read += 1;
    }
    let records = super::records::open(settings)
        .await
        .map_err(|e| e.to_string())?;
    let mut written = 0u64;
    let mut batch = Vec::with_capacity(IMPORT_BATCH.min(read as usize));
    let mut first = true;
    let mut lines = entries(open()?);
    loop {
        let next = lines.next().transpose()?;
        if let Some(e) = next.as_ref() {
            batch.push(e.clone());
        }
        if batch.len() == IMPORT_BATCH || (next.is_none() && (!batch.is_empty() || first)) {
            // After the first batch the records are ours, no longer empty.
            match records.import(std::mem::take(&mut batch), force || !first).await {
                Ok(n) => written += n,
                Err(RecordsError::NotEmpty(m)) => return Err(m),
                Err(e) if first => return Err(e.to_string()),
                Err(e) => {
                    return Err(format!(
                        "{e} after {written} entries were written: run the import again with --force (what is there is kept, nothing is duplicated)"
                    ))
                }
            }
            first = false;
        }
        if next.is_none() {
            return Ok((read, written));
        }
    }
}

/// What a move from the store found and wrote.
#[derive(Debug, Default)]
pub struct Moved {
    /// Persons read from the store.
    pub persons: u64,
    /// Consents read.
    pub consents: u64,
    /// Settings read (maintenance).
    pub settings: u64,
    /// Bindings the store's index gave to another person (kept suspended, with a review item).
    pub conflicts: u64,
    /// Entries written (the rest were there already).
    pub written: u64,
}

/// Moves the durable records earlier versions kept in the `Store` (keys `person:`,
/// `idx:cid:`, `idx:ext:`, `consent:`, `maintenance`) into the records. The store's indexes
/// decide who holds a number or a way in, so a person split by a race of an earlier version
/// moves as two persons with one binding (the other suspended and queued for review) instead
/// of failing the move. Nothing is deleted from the store.
pub async fn move_from_store(settings: &Settings, force: bool) -> Result<Moved, String> {
    let (store, _) = crate::stores::open_store(settings)
        .await
        .map_err(|e| format!("store: {e}"))?;
    let now = crate::util::now_millis();
    let text = |raw: Option<Vec<u8>>| raw.map(|v| String::from_utf8_lossy(&v).into_owned());
    let mut moved = Moved::default();
    let mut entries = Vec::new();
    let mut reviews = Vec::new();
    let keys = store
        .keys_with_prefix("person:", now)
        .await
        .map_err(|e| e.to_string())?;
    for key in keys {
        let Some(raw) = store.get(&key, now).await.map_err(|e| e.to_string())? else {
            continue;
        };
        let mut person: super::Person =
            serde_json::from_slice(&raw).map_err(|e| format!("{key}: not a person record: {e}"))?;
        person.version = 0;
        moved.persons += 1;
        // Ways in the index gives to someone else (an earlier merge) stay there.
        let mut links = Vec::new();
        for l in person.links.drain(..) {
            let owner = text(
                store
                    .get(&super::link_key(settings, &l.connector, &l.subject), now)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            if owner.is_none_or(|o| o == person.id) {
                links.push(l);
            }
        }
        person.links = links;
        for c in person
            .citizen_ids
            .iter_mut()
            .filter(|c| c.status == super::IdStatus::Active)
        {
            let bound = store
                .get(&super::id_key(settings, &c.value), now)
                .await
                .map_err(|e| e.to_string())?
                .and_then(|b| serde_json::from_slice::<super::Binding>(&b).ok());
            if let Some(b) = bound.filter(|b| b.person != person.id) {
                c.status = super::IdStatus::Suspended;
                moved.conflicts += 1;
                reviews.push(records::ReviewItem::open(
                    records::ReviewKind::Conflict,
                    &super::id_hash(settings, &c.value),
                    &b.person,
                    &person.id,
                    now,
                ));
            }
        }
        entries.push(Entry::Person(
            super::to_record(settings, &person).map_err(|e| e.to_string())?,
        ));
    }
    entries.extend(reviews.into_iter().map(Entry::Review));
    for key in store
        .keys_with_prefix("consent:", now)
        .await
        .map_err(|e| e.to_string())?
    {
        let Some((person, client)) = key["consent:".len()..].split_once(':') else {
            continue;
        };
        let Some(raw) = store.get(&key, now).await.map_err(|e| e.to_string())? else {
            continue;
        };
        let scopes: Vec<String> =
            serde_json::from_slice(&raw).map_err(|e| format!("{key}: {e}"))?;
        moved.consents += 1;
        entries.push(Entry::Consent(records::Consent {
            person: person.to_string(),
            client: client.to_string(),
            scopes,
            at: now,
        }));
    }
    if let Some(raw) = store
        .get(crate::maintenance::KEY, now)
        .await
        .map_err(|e| e.to_string())?
    {
        let value: serde_json::Value = serde_json::from_slice(&raw)
            .map_err(|e| format!("{}: {e}", crate::maintenance::KEY))?;
        moved.settings += 1;
        entries.push(Entry::Setting {
            name: crate::maintenance::KEY.to_string(),
            value,
        });
    }
    let records = super::records::open(settings)
        .await
        .map_err(|e| e.to_string())?;
    moved.written = match records.import(entries, force).await {
        Ok(n) => n,
        Err(RecordsError::NotEmpty(m)) => return Err(m),
        Err(e) => return Err(e.to_string()),
    };
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit_lines(n: usize) -> String {
        (0..n)
            .map(|i| {
                let row = records::AuditRow::new(
                    i as u64,
                    "admin",
                    "test.row",
                    "test",
                    "ref",
                    serde_json::json!({}),
                );
                serde_json::to_string(&Entry::Audit(row)).expect("json") + "\n"
            })
            .collect()
    }

    #[tokio::test]
    async fn an_import_is_checked_whole_then_written_in_batches_once() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = crate::config::for_tests(dir.path(), "");
        let n = IMPORT_BATCH + 7;
        let bad = dir.path().join("bad.ndjson");
        std::fs::write(&bad, audit_lines(n) + "{\"type\": \"nonsense\"}\n").expect("write");
        let err = import(&settings, &bad, false)
            .await
            .expect_err("a bad line");
        assert!(err.contains(&format!("line {}", n + 1)), "{err}");
        let good = dir.path().join("good.ndjson");
        std::fs::write(&good, audit_lines(n)).expect("write");
        // Nothing of the bad file was written: the good one goes into empty records.
        assert_eq!(
            import(&settings, &good, false).await,
            Ok((n as u64, n as u64))
        );
        let again = import(&settings, &good, false)
            .await
            .expect_err("not empty");
        assert!(
            again.contains("not empty") || again.contains("force"),
            "{again}"
        );
        assert_eq!(
            import(&settings, &good, true).await,
            Ok((n as u64, 0)),
            "nothing twice"
        );
    }
}
