//! The shipped configuration files stay valid and complete:
//! `config/broker.example.toml` passes the real `broker check-config` once its environment
//! variables and files exist, and documents every key of `config/file.rs`;
//! `config/demo.toml` is accepted in demo mode once the files the demo writes exist.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use broker::config::{self, AuthMethod};
use broker::keys::{SigningAlg, SigningKey};

const EXAMPLE: &str = include_str!("../../config/broker.example.toml");
const FILE_RS: &str = include_str!("../src/config/file.rs");

/// Where the example expects its files in production.
const PROD_DIR: &str = "/etc/broker/";

/// The environment variables the example names, with test values.
fn example_env() -> Vec<(&'static str, String)> {
    vec![
        // Never contacted by check-config.
        ("BROKER_REDIS_URL", "redis://127.0.0.1:6379/0".into()),
        ("BROKER_PAIRWISE_SECRET", "p".repeat(48)),
        ("BROKER_SECRET_HANOI_PORTAL", "s".repeat(32)),
    ]
}

fn write_key(path: &Path, alg: SigningAlg) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("key dir");
    let (_, pem) = SigningKey::generate("test", alg).expect("generate key");
    std::fs::write(path, pem).expect("write key");
}

/// Copies the example into `dir`, with every `/etc/broker/...` path moved below `dir`, and
/// creates the key and secret files it names there.
fn install_example(dir: &Path) -> PathBuf {
    let root = format!("{}/", dir.display());
    let text = EXAMPLE.replace(PROD_DIR, &root);
    assert_ne!(
        text, EXAMPLE,
        "the example should name files under {PROD_DIR}"
    );
    for (file, alg) in [
        ("keys/rs256.pem", SigningAlg::RS256),
        ("keys/es256.pem", SigningAlg::ES256),
        ("keys/eddsa.pem", SigningAlg::EdDSA),
        ("keys/vneid-client.pem", SigningAlg::ES256),
    ] {
        write_key(&dir.join(file), alg);
    }
    std::fs::create_dir_all(dir.join("secrets")).expect("secrets dir");
    std::fs::write(
        dir.join("secrets/tax-portal.secret"),
        format!("{}\n", "t".repeat(40)),
    )
    .expect("write client secret");
    let path = dir.join("broker.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn check_config(path: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_broker"));
    cmd.arg("check-config").arg(path);
    for (name, _) in example_env() {
        cmd.env_remove(name);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output().expect("run broker check-config")
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn example_config_passes_check_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = install_example(dir.path());
    let out = check_config(&path, &example_env());
    let text = text_of(&out);
    assert!(out.status.success(), "check-config failed:\n{text}");
    assert!(text.contains("configuration is valid"), "{text}");
}

#[test]
fn example_config_needs_exactly_the_env_vars_it_announces() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = install_example(dir.path());
    let out = check_config(&path, &[]);
    let text = text_of(&out);
    assert!(
        !out.status.success(),
        "must fail without its environment:\n{text}"
    );
    for (name, _) in example_env() {
        assert!(
            text.contains(&format!("`{name}` is not set")),
            "missing complaint about {name}:\n{text}"
        );
        assert!(
            EXAMPLE[..EXAMPLE.find("\nissuer").unwrap_or(0)].contains(name),
            "the header of the example should list {name}"
        );
    }
    assert_eq!(
        text.matches("is not set").count(),
        example_env().len(),
        "the example uses an environment variable the test does not know:\n{text}"
    );
}

#[test]
fn example_config_is_production_style() {
    let raw: config::FileConfig = toml::from_str(EXAMPLE).expect("example parses");
    assert!(raw.issuer.starts_with("https://"));
    assert!(!raw.allow_test_citizens);
    assert!(raw.require_pkce);
    match &raw.store {
        config::StoreConfig::Redis { url, .. } => assert!(
            matches!(url, config::SecretRef::Env { env } if env == "BROKER_REDIS_URL"),
            "the Redis URL should come from BROKER_REDIS_URL"
        ),
        other => panic!("the example should use the Redis store, not {other:?}"),
    }
    for k in &raw.keys {
        assert!(k.file.starts_with("/etc/broker/keys/"), "{}", k.file);
    }
    for c in &raw.connectors {
        if c.kind == "test-citizens" {
            assert_eq!(c.status, config::ConnectorStatus::Disabled);
        }
    }
}

/// Field names of the structs and enum variants in `config/file.rs`, as written in TOML
/// (with `rename`s and the store's `kind` tag).
fn file_rs_keys() -> Vec<String> {
    let mut keys = vec!["kind".to_string()];
    let mut rename: Option<String> = None;
    let mut in_fn = 0usize;
    for line in FILE_RS.lines() {
        let t = line.trim();
        // Skip function and impl bodies (`Default` impls repeat field names anyway).
        if t.starts_with("fn ") || t.starts_with("pub fn ") || t.starts_with("impl ") {
            in_fn += 1;
            continue;
        }
        if in_fn > 0 {
            if line.starts_with('}') {
                in_fn = 0;
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("#[serde(rename = \"") {
            rename = rest.split('"').next().map(str::to_string);
            continue;
        }
        if t.starts_with("//") || t.starts_with("#[") {
            continue;
        }
        let t = t.strip_prefix("pub ").unwrap_or(t);
        if let Some((name, _)) = t.split_once(": ") {
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                keys.push(rename.take().unwrap_or_else(|| name.to_string()));
            }
        }
        rename = None;
    }
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn example_config_documents_every_key() {
    let keys = file_rs_keys();
    // The parser must have found the structure, not nothing.
    for expected in [
        "issuer",
        "timeout_ms",
        "type",
        "sha256",
        "require_consent",
        "login_timeout",
    ] {
        assert!(
            keys.iter().any(|k| k == expected),
            "{expected} not found in {keys:?}"
        );
    }
    let mentions = |key: &str| {
        EXAMPLE.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.starts_with(&format!("{key} ="))
                || line.contains(&format!("{{ {key} ="))
                || line.starts_with(&format!("[{key}]"))
                || line.starts_with(&format!("[[{key}]]"))
                || line.starts_with(&format!("[connectors.{key}]"))
        })
    };
    let missing: Vec<&String> = keys.iter().filter(|k| !mentions(k)).collect();
    assert!(
        missing.is_empty(),
        "keys of file.rs not shown in the example: {missing:?}"
    );

    let mut values: Vec<String> = config::SCOPES.iter().map(|(s, _)| s.to_string()).collect();
    values.extend(
        [
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost,
            AuthMethod::PrivateKeyJwt,
            AuthMethod::None,
        ]
        .iter()
        .map(|m| format!("\"{}\"", m.as_str())),
    );
    for v in [
        "\"enabled\"",
        "\"disabled\"",
        "\"maintenance\"",
        "\"pairwise\"",
        "\"public\"",
        "\"low\"",
        "\"substantial\"",
        "\"high\"",
        "\"RS256\"",
        "\"ES256\"",
        "\"EdDSA\"",
        "\"embedded\"",
        "\"redis\"",
        "vi =",
        "zh =",
        "es =",
        "en =",
    ] {
        values.push(v.to_string());
    }
    let missing: Vec<&String> = values
        .iter()
        .filter(|v| !EXAMPLE.contains(v.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "values not documented in the example: {missing:?}"
    );
}

/// The demo's configuration is checked where the demo is built in.
#[cfg(feature = "demo")]
const DEMO: &str = include_str!("../../config/demo.toml");

#[cfg(feature = "demo")]
#[test]
fn demo_config_is_accepted_in_demo_mode() {
    use broker::config::Mode;
    let dir = tempfile::tempdir().expect("temp dir");
    // What `broker demo` writes beside its configuration: keys, secrets, the file itself.
    let path = broker::demo::prepare(dir.path()).expect("demo data folder");
    assert_eq!(std::fs::read_to_string(&path).expect("written"), DEMO);
    let settings = match config::load_str(DEMO, &path, Mode::Demo) {
        Ok(s) => s,
        Err(problems) => panic!(
            "demo.toml refused:\n{}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    assert_eq!(settings.issuer, "http://localhost:8080");
    assert!(settings.clients.contains_key("demo-rp"));
    assert!(settings.connector("test-citizens").is_some());
}
