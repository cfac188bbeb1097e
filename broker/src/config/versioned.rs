//! Connectors and clients as versioned configuration in the records (with a `[console]`
//! section): the file stays the bootstrap (listen address, stores, keys, the console's own
//! access) and its `[[connectors]]` and `[[clients]]` seed version 1; every later version is
//! published by the console or the admin API, checked by the same code as `check-config`
//! first, and taken up by every instance within seconds.

use std::path::Path;
use std::sync::Arc;

use records::ConfigVersion;

use super::{load_str, Mode, Problem, Settings};

/// The top-level keys a version holds; everything else is the file's.
pub const EDITED_KEYS: [&str; 2] = ["connectors", "clients"];

/// The name problems of a draft give as their file.
pub const DRAFT: &str = "draft";

/// The document of version 1: the file's connectors and clients.
pub fn seed(file_text: &str) -> Result<String, String> {
    let table: toml::Table = toml::from_str(file_text).map_err(|e| e.message().to_string())?;
    let edited: toml::Table = table
        .into_iter()
        .filter(|(k, _)| EDITED_KEYS.contains(&k.as_str()))
        .collect();
    toml::to_string(&edited).map_err(|e| e.to_string())
}

/// The document's own problems: TOML, and only connectors and clients in it.
fn document_table(document: &str, label: &str) -> Result<toml::Table, Vec<Problem>> {
    let problem = |key: &str, reason: String| Problem {
        file: label.to_string(),
        line: None,
        key: key.to_string(),
        reason,
    };
    let table: toml::Table = toml::from_str(document).map_err(|e| {
        let mut p = problem("", format!("is not valid TOML: {}", e.message()));
        p.line = e.span().map(|s| {
            document[..s.start.min(document.len())]
                .matches('\n')
                .count()
                + 1
        });
        vec![p]
    })?;
    let foreign: Vec<Problem> = table
        .keys()
        .filter(|k| !EDITED_KEYS.contains(&k.as_str()))
        .map(|k| {
            problem(
                k,
                format!("only `connectors` and `clients` are versioned; `{k}` stays in the configuration file"),
            )
        })
        .collect();
    if foreign.is_empty() {
        Ok(table)
    } else {
        Err(foreign)
    }
}

/// The file's bootstrap with the document's connectors and clients, as one configuration
/// text.
fn compose(
    file_text: &str,
    document: &str,
    label: &str,
    file: &str,
) -> Result<String, Vec<Problem>> {
    let edited = document_table(document, label)?;
    let mut table: toml::Table = toml::from_str(file_text).map_err(|e| {
        vec![Problem {
            file: file.to_string(),
            line: None,
            key: String::new(),
            reason: format!("is not valid TOML: {}", e.message()),
        }]
    })?;
    table.retain(|k, _| !EDITED_KEYS.contains(&k));
    table.extend(edited);
    toml::to_string(&table).map_err(|e| {
        vec![Problem {
            file: label.to_string(),
            line: None,
            key: String::new(),
            reason: e.to_string(),
        }]
    })
}

/// The whole configuration file a version makes with the bootstrap file at `path`
/// (`broker config export`): usable as a file again, comments aside.
pub fn export(path: &Path, document: &str) -> Result<String, Vec<Problem>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            file: file.clone(),
            line: None,
            key: String::new(),
            reason: format!("cannot read: {e}"),
        }]
    })?;
    compose(&text, document, DRAFT, &file)
}

/// Validates the file at `path` with `document` as its connectors and clients, as
/// `check-config` would; problems of the document name `label` as their file.
pub fn check(
    path: &Path,
    mode: Mode,
    document: &str,
    label: &str,
) -> Result<Settings, Vec<Problem>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            file: file.clone(),
            line: None,
            key: String::new(),
            reason: format!("cannot read: {e}"),
        }]
    })?;
    let composed = compose(&text, document, label, &file)?;
    load_str(&composed, path, mode).map_err(|problems| {
        problems
            .into_iter()
            .map(|mut p| {
                // Lines of the composed text mean nothing to anyone: the document's problems
                // are told by key.
                if EDITED_KEYS.iter().any(|k| p.key.starts_with(k)) {
                    p.file = label.to_string();
                }
                p.line = None;
                p
            })
            .collect()
    })
}

/// The label of a published version in problems.
pub fn label(version: u64) -> String {
    format!("configuration version {version}")
}

/// Opens a published version with the file at `path`.
pub fn open(
    path: &Path,
    mode: Mode,
    version: &Arc<ConfigVersion>,
) -> Result<Settings, Vec<Problem>> {
    let mut settings = check(path, mode, &version.document, &label(version.version))?;
    settings.versioned = Some(version.clone());
    Ok(settings)
}

/// Past this many cells of the common-subsequence table, [`diff`] does not pair lines.
const MAX_DIFF_CELLS: usize = 4_000_000;

/// A line-by-line difference of two documents (`-` removed, `+` added, ` ` kept), for the
/// console's "what changes" view and the history.
pub fn diff(old: &str, new: &str) -> Vec<(char, String)> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // The table below is |a|·|b| cells: past a few million, every line of each is told as
    // removed and added rather than paired (a bounded page, never an instance's memory).
    if a.len().saturating_mul(b.len()) > MAX_DIFF_CELLS {
        return a
            .iter()
            .map(|l| ('-', l.to_string()))
            .chain(b.iter().map(|l| ('+', l.to_string())))
            .collect();
    }
    // Longest common subsequence: documents are a few hundred lines.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push((' ', a[i].to_string()));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(('+', b[j].to_string()));
            j += 1;
        } else {
            out.push(('-', a[i].to_string()));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_holds_only_connectors_and_clients() {
        let text =
            "issuer = \"https://id\"\n[[connectors]]\nid = \"a\"\n[[clients]]\nid = \"rp\"\n";
        let seed = seed(text).expect("seed");
        let t: toml::Table = toml::from_str(&seed).expect("toml");
        assert_eq!(t.keys().collect::<Vec<_>>(), vec!["clients", "connectors"]);
    }

    #[test]
    fn a_document_with_other_keys_is_refused_by_key() {
        let err = document_table("issuer = \"x\"\n[[clients]]\nid = \"rp\"\n", DRAFT)
            .expect_err("refused");
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].key, "issuer");
        assert_eq!(err[0].file, DRAFT);
        let err = document_table("[[clients]\n", DRAFT).expect_err("not toml");
        assert_eq!(err[0].line, Some(1));
    }

    #[test]
    fn a_diff_of_huge_documents_is_bounded() {
        let big: String = (0..3000).map(|i| format!("# {i}\n")).collect();
        let d = diff(&big, &format!("{big}x\n"));
        assert_eq!(
            d.len(),
            6001,
            "every line removed and added, no table of 9 million cells"
        );
    }

    #[test]
    fn diff_marks_removed_and_added_lines() {
        let d = diff("a\nb\nc\n", "a\nx\nc\nd\n");
        assert_eq!(
            d,
            vec![
                (' ', "a".into()),
                ('+', "x".into()),
                ('-', "b".into()),
                (' ', "c".into()),
                ('+', "d".into())
            ]
        );
    }
}
