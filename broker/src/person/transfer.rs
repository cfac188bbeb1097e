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

/// Reads exported lines and adds them to the records; refuses records that are not empty
/// unless `force` (and then skips what exists). Returns (lines read, entries written).
pub async fn import(
    settings: &Settings,
    input: &mut dyn BufRead,
    force: bool,
) -> Result<(u64, u64), String> {
    let mut entries = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read line {}: {e}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(&line)
            .map_err(|e| format!("line {}: not an exported record: {e}", i + 1))?;
        entries.push(entry);
    }
    let read = entries.len() as u64;
    let records = super::records::open(settings)
        .await
        .map_err(|e| e.to_string())?;
    match records.import(entries, force).await {
        Ok(written) => Ok((read, written)),
        Err(RecordsError::NotEmpty(m)) => Err(m),
        Err(e) => Err(e.to_string()),
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
