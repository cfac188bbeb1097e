//! Every identity source of issue #4 driven in real headless Chromium, with openid-client
//! as the relying party (tests/js/connectors.mjs): bank card + SMS code read from the
//! simulated inbox, CTID approved on the simulated phone app while the waiting page polls
//! by itself, and an old portal account.

use std::process::Command;

use crate::harness::*;
use crate::sims;

#[tokio::test]
async fn bank_card_ctid_and_legacy_in_headless_chromium() {
    let js = sims::require_browser_tests(&["openid-client", "playwright-core"]);
    let banks = sims::banks();
    let sms = sims::sms();
    let (key_dir, key_path) = sims::secret_file("hash-key-for-browser-tests-0123456789abcdef");
    let ctid = sims::ctid();
    let ctid_key = key_dir.path().join("ctid.key");
    std::fs::write(&ctid_key, crate::ctid::CTID_API_KEY).expect("ctid key");
    let legacy = sims::legacy();

    let rp_port = free_port();
    let extra = format!(
        "{}{}{}\n[[clients]]\nid = \"js-rp\"\nname = \"openid-client platform\"\nredirect_uris = [\"http://127.0.0.1:{rp_port}/callback\"]\nsecret = {{ env = \"TEST_RP_SECRET\" }}\nscopes = [\"openid\", \"profile\", \"citizen_id\"]\n",
        crate::bank_card::connector_toml(&banks, &sms, &key_path, ""),
        crate::ctid::connector_toml(&ctid.url, &ctid_key.display().to_string()),
        crate::legacy::connector_toml(
            &key_path,
            "2099-12-31",
            &format!("api = {{ url = \"{}\" }}", legacy.url),
            ""
        ),
    );
    let broker = Broker::start(Options {
        extra,
        ..Options::default()
    });
    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/connectors");
    let out = tokio::task::spawn_blocking({
        let issuer = broker.issuer.clone();
        let inbox = format!("{}/inbox", sms.url);
        move || {
            Command::new("node")
                .arg(js.join("connectors.mjs"))
                .env("ISSUER", issuer)
                .env("CLIENT_ID", "js-rp")
                .env("CLIENT_SECRET", RP_SECRET)
                .env("RP_PORT", rp_port.to_string())
                .env("SMS_INBOX", inbox)
                .env("BANK_ID", "bank")
                .env("CTID_ID", "ctid")
                .env("LEGACY_ID", "old-portal")
                .env("SCREENSHOT_DIR", shots)
                .output()
                .expect("node must be installed")
        }
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Chromium test of the connectors failed:\n{stdout}\n{stderr}\nbroker log:\n{}",
        broker.log_text()
    );
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
    drop((banks, sms, ctid, legacy, key_dir));
}
