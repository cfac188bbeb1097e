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

/// Writes every record to `out`, one JSON line each; returns how many.
pub async fn export(settings: &Settings, out: &mut dyn Write) -> Result<u64, String> {
    let records = super::records::open(settings)
        .await
        .map_err(|e| e.to_string())?;
    let entries = records.export().await.map_err(|e| e.to_string())?;
    let mut n = 0;
    for entry in &entries {
        let line = serde_json::to_string(entry).map_err(|e| e.to_string())?;
        writeln!(out, "{line}").map_err(|e| format!("cannot write: {e}"))?;
        n += 1;
    }
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
