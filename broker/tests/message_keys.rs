//! Every message key the code shows a citizen exists in all four languages, so no page ever
//! shows `Unknown localization key`. The keys are read from the sources: the broker's and
//! the connectors' Rust files and the page templates.
//!
//! What counts as a use of a key:
//! - `t.get("k")` and `t.with("k", …)` (Rust and templates);
//! - `Message::new("k")`, and `Message::new(MSG_…)` through the `const MSG_…: &str = "k"`;
//! - a form's `title`, `intro`, `submit` or an action's `label` (`"k".into()`) and a field's
//!   label (`Field::new("name", "k", …)`);
//! - `scope-…` for every scope of [`broker::config::SCOPES`] (the consent page derives them);
//! - keys with a hint: an error page's key (a status code then the key, as in
//!   `error_page(lang, 400, "k", …)`), a failure page's message and a connector's
//!   `Failed { message }` show `k` and `k-hint`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

const LANGUAGES: [&str; 4] = ["en", "vi", "zh", "es"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// The message ids of a Fluent file (`key = …` at the start of a line).
fn locale_keys(lang: &str) -> BTreeSet<String> {
    let path = root().join(format!("broker/locales/{lang}/main.ftl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let id = Regex::new(r"(?m)^([a-z][a-z0-9-]*)[ \t]*=").expect("regex");
    id.captures_iter(&text).map(|c| c[1].to_string()).collect()
}

/// A key the code uses, and where.
#[derive(Default)]
struct Uses(BTreeMap<String, BTreeSet<String>>);

impl Uses {
    fn add(&mut self, key: &str, at: &str) {
        self.0
            .entry(key.to_string())
            .or_default()
            .insert(at.to_string());
    }

    fn add_with_hint(&mut self, key: &str, at: &str) {
        self.add(key, at);
        self.add(&format!("{key}-hint"), at);
    }
}

/// Where a match is, as `file:line`.
fn site(root: &Path, path: &Path, text: &str, offset: usize) -> String {
    let line = text[..offset].matches('\n').count() + 1;
    let name = path.strip_prefix(root).unwrap_or(path);
    format!("{}:{line}", name.display())
}

fn collect() -> (Uses, Vec<String>) {
    let root = root();
    let mut sources = Vec::new();
    files(&root.join("broker/src"), "rs", &mut sources);
    files(&root.join("connectors/src"), "rs", &mut sources);
    let mut templates = Vec::new();
    files(&root.join("broker/templates"), "html", &mut templates);

    let key = r#""([a-z][a-z0-9]*(?:-[a-z0-9]+)+)""#;
    let re = |p: &str| Regex::new(&p.replace("KEY", key)).expect("regex");
    let plain = [
        re(r"\bt\.(?:get|with)\(\s*KEY"),
        re(r"Message::new\(\s*KEY"),
        re(r"\b(?:title|intro|submit|label)\s*:\s*(?:Some\()?KEY\.into\(\)"),
        re(r#"Field::new\(\s*"[^"]*",\s*KEY"#),
    ];
    let hinted = [
        // A status code, then the key: error pages (`error_page(lang, 400, "k", …)`).
        re(r"\b[1-5][0-9][0-9],\s*KEY"),
        re(r"failure_page\([^;]*?Message::new\(\s*KEY"),
        re(r"Failure::message\([^;]*?Message::new\(\s*KEY"),
        // The refusals of an authorization request (`page("error-…", detail)`).
        re(r"\bpage\(\s*KEY"),
        re(r"Failed\s*\{\s*message:\s*Message::new\(\s*KEY"),
    ];
    let constant = Regex::new(&format!(r"const (MSG_[A-Z_]+): &str = {key};")).expect("regex");
    let by_constant =
        Regex::new(r"(Failed\s*\{\s*message:\s*)?Message::new\(\s*(MSG_[A-Z_]+)\)").expect("regex");
    // Error pages are built by `error_page`, and by the flows' `Failure::page` and the web
    // layer's `PageError::new`, which `PageError` renders with `error_page`.
    let error_page_call =
        Regex::new(r"\b(?:error_page|Failure::page|PageError::new)\(").expect("regex");
    let error_page_with_key = Regex::new(&format!(
        r"^(?:error_page|Failure::page|PageError::new)\(\s*[^,()]+(?:\([^)]*\))?,\s*[^,]+,\s*{key}"
    ))
    .expect("regex");
    // A call that passes on a `key` variable: the key was read where it was written (a
    // literal in a `page(…)` refusal, a `Failure`), which the patterns above check.
    let forwards_key = Regex::new(
        r"^(?:error_page|Failure::page|PageError::new)\(\s*[^,()]+(?:\([^)]*\))?,\s*[^,]+,\s*key\b",
    )
    .expect("regex");

    let mut uses = Uses::default();
    let mut unreadable = Vec::new();
    let mut constants = BTreeMap::new();
    let texts: Vec<(PathBuf, String)> = sources
        .iter()
        .chain(&templates)
        .map(|p| {
            let text =
                std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.clone(), text)
        })
        .collect();
    for (_, text) in &texts {
        for c in constant.captures_iter(text) {
            constants.insert(c[1].to_string(), c[2].to_string());
        }
    }
    for (path, text) in &texts {
        for r in &plain {
            for c in r.captures_iter(text) {
                let m = c.get(1).expect("group");
                uses.add(m.as_str(), &site(&root, path, text, m.start()));
            }
        }
        for r in &hinted {
            for c in r.captures_iter(text) {
                let m = c.get(1).expect("group");
                uses.add_with_hint(m.as_str(), &site(&root, path, text, m.start()));
            }
        }
        for c in by_constant.captures_iter(text) {
            let name = &c[2];
            let at = site(&root, path, text, c.get(2).expect("group").start());
            match constants.get(name) {
                Some(k) if c.get(1).is_some() => uses.add_with_hint(k, &at),
                Some(k) => uses.add(k, &at),
                None => unreadable.push(format!("{at}: `{name}` is no `const {name}: &str`")),
            }
        }
        // An error page whose key is not a literal would escape this test.
        for m in error_page_call.find_iter(text) {
            let rest = &text[m.start()..];
            // The definition, and the one place that renders a `PageError` whose key was
            // checked where it was built.
            if rest.starts_with("error_page(lang: &str") || forwards_key.is_match(rest) {
                continue;
            }
            if !error_page_with_key.is_match(rest) {
                unreadable.push(format!(
                    "{}: error_page without a literal key",
                    site(&root, path, text, m.start())
                ));
            }
        }
    }
    for (scope, _) in broker::config::SCOPES {
        if *scope != "openid" {
            uses.add(
                &format!("scope-{}", scope.replace('_', "-")),
                "broker/src/pages.rs (consent)",
            );
        }
    }
    (uses, unreadable)
}

#[test]
fn every_message_key_the_code_uses_exists_in_every_language() {
    let (uses, unreadable) = collect();
    assert!(
        unreadable.is_empty(),
        "keys this test cannot read:\n{}",
        unreadable.join("\n")
    );
    // The collection works: it finds keys of each kind of use.
    for expected in [
        "error-title",            // t.get in Rust
        "button-cancel",          // t.get in a template
        "error-login-expired",    // an error page
        "error-rate-limited",     // Message::new
        "error-upstream-invalid", // a connector's MSG_ constant
        "test-citizens-title",    // a connector's form
        "scope-profile",          // derived from SCOPES
    ] {
        assert!(
            uses.0.contains_key(expected),
            "`{expected}` was not collected"
        );
    }
    assert!(uses.0.contains_key("error-login-expired-hint"));
    assert!(uses.0.contains_key("error-upstream-invalid-hint"));

    let mut missing = Vec::new();
    for lang in LANGUAGES {
        let have = locale_keys(lang);
        for (key, sites) in &uses.0 {
            if !have.contains(key) {
                let sites: Vec<&str> = sites.iter().map(String::as_str).collect();
                missing.push(format!("{lang}: `{key}` (used at {})", sites.join(", ")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "message keys missing from broker/locales/*/main.ftl:\n{}",
        missing.join("\n")
    );
}

/// A message defined twice in one language makes the Fluent loader panic at the first page
/// it renders: every citizen would get an error instead of a page.
#[test]
fn no_message_is_defined_twice_in_a_language() {
    let id = Regex::new(r"(?m)^([a-z][a-z0-9-]*)[ \t]*=").expect("regex");
    for lang in ["en", "vi", "zh", "es"] {
        let path = root().join(format!("broker/locales/{lang}/main.ftl"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut seen = BTreeSet::new();
        let twice: Vec<&str> = id
            .captures_iter(&text)
            .filter_map(|c| c.get(1))
            .map(|m| m.as_str())
            .filter(|k| !seen.insert(*k))
            .collect();
        assert!(twice.is_empty(), "{lang}: defined twice: {twice:?}");
    }
}
