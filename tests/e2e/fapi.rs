//! FAPI 2.0 interop: panva's `openid-client` in headless Chromium (tests/js/fapi.mjs) runs a
//! Message Signing flow and a Security Profile flow. This file runs it against panva's
//! `oidc-provider` configured for FAPI 2.0 (tests/js/fapi-op.mjs, certified software), so
//! the script itself is known to be right before it is pointed at the broker.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::keys::{SigningAlg, SigningKey};

use crate::harness::{free_port, Broker, Options};

/// Scenarios tests/js/fapi.mjs runs (its `SCENARIOS`).
const SCENARIOS: usize = 10;

/// A child process killed on drop, with its output collected.
struct Node {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/js")
}

/// Fails (never skips) when node, the npm packages or Chromium are missing.
fn require_tools() {
    let js = js_dir();
    for package in ["oidc-provider", "openid-client", "playwright-core"] {
        assert!(
            js.join("node_modules").join(package).exists(),
            "tests/js/node_modules/{package} is missing: run `PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci` in tests/js (scripts/test does it)"
        );
    }
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "install Debian's chromium (scripts/test does it)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node must be installed (Node.js 20 or later)"
    );
}

/// A client's key pair: the PKCS#8 PEM file both scripts read.
struct ClientKeyFile {
    id: &'static str,
    kid: &'static str,
    file: PathBuf,
}

fn client_key(dir: &Path, id: &'static str, kid: &'static str, alg: SigningAlg) -> ClientKeyFile {
    let (_, pem_text) = SigningKey::generate(kid, alg).expect("generate a client key");
    let file = dir.join(format!("{id}.pem"));
    std::fs::write(&file, pem_text).expect("write the client key");
    ClientKeyFile { id, kid, file }
}

/// The public JWKS of a client key file, with the `alg` the scripts sign with (PS256 for
/// RSA keys, ES256 for P-256 keys).
fn client_jwks(key: &ClientKeyFile, alg: SigningAlg, jose_alg: &str) -> String {
    let pem = std::fs::read(&key.file).expect("read the client key");
    let public = SigningKey::from_pem(key.kid, alg, &pem).expect("client key");
    let mut jwk = serde_json::to_value(public.jwk()).expect("jwk");
    jwk["alg"] = jose_alg.into();
    serde_json::json!({ "keys": [jwk] }).to_string()
}

fn client_env(command: &mut Command, prefix: &str, key: &ClientKeyFile) {
    command
        .env(format!("{prefix}_CLIENT_ID"), key.id)
        .env(format!("{prefix}_CLIENT_KEY"), &key.file)
        .env(format!("{prefix}_CLIENT_KEY_ID"), key.kid);
}

/// Starts tests/js/fapi-op.mjs and waits (bounded) until it listens.
fn start_reference_op(
    op_port: u16,
    redirect_uri: &str,
    ms: &ClientKeyFile,
    sp: &ClientKeyFile,
) -> Node {
    let mut command = Command::new("node");
    command
        .arg(js_dir().join("fapi-op.mjs"))
        .env("OP_PORT", op_port.to_string())
        .env("REDIRECT_URI", redirect_uri);
    client_env(&mut command, "MS", ms);
    client_env(&mut command, "SP", sp);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    {
        let out_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("fapi-op listening") {
                    let _ = ready_tx.send(());
                }
                if let Ok(mut l) = out_log.lock() {
                    l.push(line);
                }
            }
        });
        let err_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = err_log.lock() {
                    l.push(line);
                }
            }
        });
    }
    let op = Node { child, log };
    assert!(
        // A hang guard, generous for a loaded CI machine (it starts in about a second; once,
        // with a release build beside the tests in another scheduling group, it took over 120).
        ready_rx.recv_timeout(Duration::from_secs(300)).is_ok(),
        "oidc-provider did not start within 300 s:\n{}",
        op.log_text()
    );
    op
}

/// The reference run: every FAPI 2.0 scenario of the script passes against oidc-provider.
#[tokio::test]
async fn fapi2_flows_pass_against_the_reference_oidc_provider() {
    require_tools();
    let op_port = free_port();
    let rp_port = free_port();
    let redirect_uri = format!("http://127.0.0.1:{rp_port}/callback");
    let keys = tempfile::tempdir().expect("temp dir");
    // An ES256 key for the Message Signing client, an RSA key (PS256) for the other.
    let ms = client_key(keys.path(), "fapi-ms", "fapi-ms-1", SigningAlg::ES256);
    let sp = client_key(keys.path(), "fapi-sp", "fapi-sp-1", SigningAlg::RS256);
    let op = start_reference_op(op_port, &redirect_uri, &ms, &sp);

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/fapi-reference");
    let mut command = Command::new("node");
    command
        .arg(js_dir().join("fapi.mjs"))
        .env("ISSUER", format!("http://127.0.0.1:{op_port}"))
        .env("RP_PORT", rp_port.to_string())
        .env("LOGIN", "oidc-provider")
        .env("USERNAME", "an")
        .env("PASSWORD", "demo")
        .env("SCREENSHOT_DIR", shots);
    client_env(&mut command, "MS", &ms);
    client_env(&mut command, "SP", &sp);
    let out =
        tokio::task::spawn_blocking(move || command.output().expect("node must be installed"))
            .await
            .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && stdout.contains(&format!("fapi e2e: {SCENARIOS} passed, 0 failed")),
        "the FAPI 2.0 script failed against oidc-provider:\n{stdout}\n{stderr}\noidc-provider log:\n{}",
        op.log_text()
    );
    // The provider really demanded server nonces and refused what the script expects
    // refused: the script's passes are not an artefact of a lax provider.
    let log = op.log_text();
    for refusal in [
        "use_dpop_nonce",
        "Request Object must be used by this client",
        "Pushed Authorization Request must be used",
        "DPoP proof htm mismatch",
        "DPoP proof key thumbprint does not match dpop_jkt",
    ] {
        assert!(
            log.contains(refusal),
            "oidc-provider never logged `{refusal}`:\n{log}"
        );
    }
    drop(op);
}

/// The same script against the broker, both flows: Message Signing (a signed request object
/// at PAR, JARM, signed UserInfo and introspection, all PS256 from the broker's PS256 key,
/// the client's keys fetched from its `jwks_uri`) and the Security Profile (PAR, PKCE,
/// private_key_jwt with PS256 against the registered `jwks`, DPoP with server nonces and
/// the code bound to the key, iss in the response, UserInfo with DPoP, the bearer use of a
/// bound token refused, client_secret_basic and requests without PAR refused).
#[tokio::test]
async fn fapi2_message_signing_and_security_profile_pass_against_the_broker() {
    require_tools();
    let rp_port = free_port();
    let redirect_uri = format!("http://127.0.0.1:{rp_port}/callback");
    let keys = tempfile::tempdir().expect("temp dir");
    let ms = client_key(keys.path(), "fapi-ms", "fapi-ms-1", SigningAlg::ES256);
    let sp = client_key(keys.path(), "fapi-sp", "fapi-sp-1", SigningAlg::RS256);
    // The Message Signing platform publishes its key set itself.
    let ms_jwks = client_jwks(&ms, SigningAlg::ES256, "ES256");
    let ms_fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = ms_fetches.clone();
    let ms_jwks_port = crate::harness::http_stub(move |method, path, _| {
        if method == "GET" && path == "/jwks.json" {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ("200 OK", ms_jwks.clone())
        } else {
            ("404 Not Found", "{}".into())
        }
    });
    // The broker signs with PS256 too: the Message Signing client's ID tokens, JARM
    // responses, UserInfo and introspection answers.
    let (_, ps_pem) = SigningKey::generate("ps-1", SigningAlg::PS256).expect("PS256 key");
    let ps_file = keys.path().join("broker-ps.pem");
    std::fs::write(&ps_file, ps_pem).expect("write the broker's PS256 key");
    let extra = format!(
        r#"
[[clients]]
id = "fapi-sp"
name = "Signature platform"
redirect_uris = ["{redirect_uri}"]
auth_method = "private_key_jwt"
jwks = '{}'
profile = "fapi2-security"
id_token_signed_response_alg = "ES256"
"#,
        client_jwks(&sp, SigningAlg::RS256, "PS256")
    ) + &format!(
        r#"
[[clients]]
id = "fapi-ms"
name = "Seal platform"
redirect_uris = ["{redirect_uri}"]
auth_method = "private_key_jwt"
jwks_uri = "http://127.0.0.1:{ms_jwks_port}/jwks.json"
profile = "fapi2-message-signing"
scopes = ["openid", "profile", "offline_access"]
id_token_signed_response_alg = "PS256"
userinfo_signed_response_alg = "PS256"

[[keys]]
kid = "ps-1"
alg = "PS256"
file = "{}"
"#,
        ps_file.display()
    );
    let broker = Broker::start(Options {
        redis_prefix: Some(format!("fapi-js-{}:", rand::random::<u64>())),
        extra,
        ..Options::default()
    });

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/fapi-broker");
    let mut command = Command::new("node");
    command
        .arg(js_dir().join("fapi.mjs"))
        .env("ISSUER", &broker.issuer)
        .env("RP_PORT", rp_port.to_string())
        .env("LOGIN", "broker")
        .env("SIGNED_ALG", "PS256")
        .env("USERNAME", "an")
        .env("PASSWORD", "demo")
        .env("SCREENSHOT_DIR", shots);
    client_env(&mut command, "MS", &ms);
    client_env(&mut command, "SP", &sp);
    let out =
        tokio::task::spawn_blocking(move || command.output().expect("node must be installed"))
            .await
            .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("fapi e2e: {SCENARIOS} passed, 0 failed")),
        "the FAPI 2.0 flows failed against the broker:\n{stdout}\n{stderr}\nbroker log:\n{}",
        broker.log_text()
    );
    // The Message Signing client's keys came from its jwks_uri, fetched and then cached
    // (the flow signs a dozen assertions and a request object with them).
    let fetched = ms_fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=3).contains(&fetched),
        "{fetched} fetches of the jwks_uri"
    );
    // What openid-client verified was signed with the broker's PS256 key, published with
    // its own kid and alg.
    let published: serde_json::Value = reqwest::get(broker.url("/jwks"))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    assert!(
        published["keys"].as_array().is_some_and(|keys| keys
            .iter()
            .any(|k| k["kid"] == "ps-1" && k["alg"] == "PS256" && k["kty"] == "RSA")),
        "{published}"
    );
}
