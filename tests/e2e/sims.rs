//! The simulated identity services of issue #4 (the `simulators` crate) started in this
//! process on free ports, with helpers to read what they captured and to steer them.

use serde_json::Value;

use crate::harness::*;

/// A running simulator; stopped on drop.
pub struct Sim {
    pub url: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        drop(handle.stop(false));
    }
}

impl Sim {
    /// A simulator started elsewhere.
    pub fn from_handle(url: String, handle: actix_web::dev::ServerHandle) -> Sim {
        Sim { url, handle }
    }
}

/// Runs a simulator's server, bound on `port`, in this test's runtime.
pub fn spawn(server: actix_web::dev::Server, port: u16) -> Sim {
    let handle = server.handle();
    tokio::spawn(server);
    Sim {
        url: format!("http://127.0.0.1:{port}"),
        handle,
    }
}

/// The simulated banks (bank verification contract).
pub fn banks() -> Sim {
    let port = free_port();
    let server = simulators::bank::serve(&format!("127.0.0.1:{port}"), Some(BANK_API_KEY.into()))
        .expect("bank simulator binds");
    spawn(server, port)
}

/// The simulated SMS gateway.
pub fn sms() -> Sim {
    let port = free_port();
    let server = simulators::sms::serve(&format!("127.0.0.1:{port}"), Some(SMS_API_KEY.into()))
        .expect("SMS simulator binds");
    spawn(server, port)
}

/// The simulated CTID service, expecting the tests' API key.
pub fn ctid() -> Sim {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let server = simulators::ctid::serve(
        &format!("127.0.0.1:{port}"),
        &url,
        Some(crate::ctid::CTID_API_KEY.into()),
    )
    .expect("CTID simulator binds");
    spawn(server, port)
}

/// The simulated old portal's accounts API.
pub fn legacy() -> Sim {
    let port = free_port();
    let server = simulators::legacy::serve(&format!("127.0.0.1:{port}"), None)
        .expect("legacy simulator binds");
    spawn(server, port)
}

/// Fails, never skips, when the browser tests cannot run: the npm `packages` of tests/js
/// and Debian's Chromium must be installed (scripts/test installs both).
pub fn require_browser_tests(packages: &[&str]) -> std::path::PathBuf {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/js");
    assert!(
        packages
            .iter()
            .all(|p| js.join("node_modules").join(p).exists()),
        "run `npm ci` in tests/js first (scripts/test does it)"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "install Debian's chromium (scripts/test does it)"
    );
    js
}

/// Bearer token the bank simulator of the tests expects.
pub const BANK_API_KEY: &str = "bank-api-key-for-tests";
/// Bearer token the SMS simulator of the tests expects.
pub const SMS_API_KEY: &str = "sms-api-key-for-tests";

/// A file holding `content`, kept until the returned guard drops; its absolute path.
pub fn secret_file(content: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secret");
    std::fs::write(&path, content).expect("write secret");
    let p = path.display().to_string();
    (dir, p)
}

/// The messages the SMS simulator holds for a number, newest first.
pub async fn sms_to(sms: &Sim, phone: &str) -> Vec<String> {
    let v: Value = reqwest::Client::new()
        .get(format!("{}/messages", sms.url))
        .query(&[("to", phone)])
        .send()
        .await
        .expect("SMS simulator answers")
        .json()
        .await
        .expect("JSON");
    v["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["text"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The 6-digit code in the newest SMS to a number.
pub async fn latest_code(sms: &Sim, phone: &str) -> Option<String> {
    let texts = sms_to(sms, phone).await;
    let text = texts.first()?;
    let digits: Vec<char> = text.chars().collect();
    (0..digits.len()).find_map(|i| {
        let window: String = digits.get(i..i + 6)?.iter().collect();
        let before = i.checked_sub(1).and_then(|j| digits.get(j));
        let after = digits.get(i + 6);
        (window.chars().all(|c| c.is_ascii_digit())
            && !before.is_some_and(char::is_ascii_digit)
            && !after.is_some_and(char::is_ascii_digit))
        .then_some(window)
    })
}

/// POSTs a JSON control request to a simulator.
pub async fn control(sim: &Sim, path: &str, body: Value) {
    let status = reqwest::Client::new()
        .post(format!("{}{path}", sim.url))
        .json(&body)
        .send()
        .await
        .expect("simulator control")
        .status();
    assert!(status.is_success(), "control {path}: {status}");
}

/// The text of the element with `id` in a page (tags stripped, entities of quotes decoded).
pub fn element_text(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let open_end = start + html[start..].find('>')? + 1;
    let rest = &html[open_end..];
    let mut depth = 0usize;
    let mut out = String::new();
    let mut i = 0;
    let bytes = rest.as_bytes();
    while i < bytes.len() {
        if rest[i..].starts_with("</") {
            if depth == 0 {
                break;
            }
            depth -= 1;
        } else if bytes[i] == b'<' {
            depth += 1;
        }
        if bytes[i] == b'<' {
            i += rest[i..].find('>').map_or(rest.len() - i, |e| e + 1);
            continue;
        }
        let ch = rest[i..].chars().next()?;
        out.push(ch);
        i += ch.len_utf8();
    }
    Some(
        out.replace("&#34;", "\"")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
            .trim()
            .to_string(),
    )
}
