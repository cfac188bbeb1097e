//! The citizen pages of every identity source in headless Chromium (tests/js/pages.mjs): in
//! the four languages at 1280×800, 390×844, 360 and 320 px wide, no axe-core violation of impact
//! serious or critical and no horizontal overflow (WCAG 1.4.10 Reflow).

use std::process::Command;

use crate::harness::*;
use crate::sims;

/// Pages the script walks in each language, times the four languages.
const SCENARIOS: usize = 14 * 4;

/// The bank card's limits raised so that every language can be refused and sent a code
/// with the same test card.
const ROOMY_LIMITS: &str = "limits = { window_seconds = 3600, verifications = { per_id = 100, per_phone = 100, per_address = 100 }, sms = { per_id = 100, per_phone = 100, per_address = 100 }, wrong_codes = { per_id = 100, per_phone = 100, per_address = 100 } }\nresend_cooldown_seconds = 30";

#[tokio::test]
async fn every_citizen_page_passes_axe_and_reflows_at_320_px() {
    let js = sims::require_browser_tests(&["axe-core", "playwright-core"]);
    let banks = sims::banks();
    let sms = sims::sms();
    let (key_dir, key_path) = sims::secret_file("hash-key-for-browser-tests-0123456789abcdef");
    let ctid = sims::ctid();
    let ctid_key = key_dir.path().join("ctid.key");
    std::fs::write(&ctid_key, crate::ctid::CTID_API_KEY).expect("ctid key");
    let legacy = sims::legacy();

    let broker_port = free_port();
    let vneid_port = free_port();
    let vneid_url = format!("http://127.0.0.1:{vneid_port}");
    let vneid = sims::spawn(
        simulators::vneid::serve(
            &format!("127.0.0.1:{vneid_port}"),
            &vneid_url,
            vec![simulators::vneid::Client {
                id: "broker-e2e".into(),
                secret: RP_SECRET.into(),
                redirect_uris: vec![format!("http://127.0.0.1:{broker_port}/callback/vneid")],
            }],
        )
        .expect("VNeID simulator binds"),
        vneid_port,
    );

    let rp_port = free_port();
    let extra = format!(
        "{}{}{}{}\n[[clients]]\nid = \"js-rp\"\nname = {{ en = \"openid-client platform\", vi = \"Nền tảng openid-client\", zh = \"openid-client 平台\", es = \"Plataforma openid-client\" }}\nredirect_uris = [\"http://127.0.0.1:{rp_port}/callback\"]\nsecret = {{ env = \"TEST_RP_SECRET\" }}\nscopes = [\"openid\", \"profile\", \"citizen_id\"]\n",
        crate::bank_card::connector_toml(&banks, &sms, &key_path, ROOMY_LIMITS),
        crate::ctid::connector_toml(&ctid.url, &ctid_key.display().to_string()),
        crate::legacy::connector_toml(
            &key_path,
            "2099-12-31",
            &format!("api = {{ url = \"{}\" }}", legacy.url),
            ""
        ),
        crate::upstream_oidc::VNEID_CONNECTOR.replace("ISSUER", &vneid_url),
    );
    let broker = Broker::start(Options {
        port: Some(broker_port),
        extra: with_demo_names(&extra, &format!("{}/inbox", sms.url)),
        ..Options::default()
    });
    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/pages");
    let out = tokio::task::spawn_blocking({
        let issuer = broker.issuer.clone();
        move || {
            Command::new("node")
                .arg(js.join("pages.mjs"))
                .env("ISSUER", issuer)
                .env("CLIENT_ID", "js-rp")
                .env("CLIENT_SECRET", RP_SECRET)
                .env("RP_PORT", rp_port.to_string())
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
        "Chromium check of the citizen pages failed:\n{stdout}\n{stderr}\nbroker log:\n{}",
        broker.log_text()
    );
    assert!(
        stdout.contains(&format!("pages e2e: {SCENARIOS} passed, 0 failed")),
        "{stdout}"
    );
    drop((banks, sms, ctid, legacy, vneid, key_dir));
}

/// The connectors of `extra` with the names and logos of `config/demo.toml` (the longest
/// names, in every language, are what must fit on a phone), and the bank card's SMS code
/// read in the simulated inbox at `inbox`, as in the demo.
fn with_demo_names(extra: &str, inbox: &str) -> String {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let demo: toml::Table = std::fs::read_to_string(config.join("demo.toml"))
        .expect("config/demo.toml")
        .parse()
        .expect("demo.toml parses");
    let mut table: toml::Table = extra.parse().expect("the test's TOML parses");
    let demo_connectors = demo["connectors"].as_array().expect("demo connectors");
    for connector in table
        .get_mut("connectors")
        .and_then(|c| c.as_array_mut())
        .expect("connectors")
    {
        let id = connector["id"].as_str().expect("id").to_string();
        let demo_id = if id == "bank" {
            "bank-card"
        } else {
            id.as_str()
        };
        let Some(d) = demo_connectors
            .iter()
            .find(|d| d["id"].as_str() == Some(demo_id))
        else {
            continue;
        };
        let c = connector.as_table_mut().expect("table");
        c.insert("name".into(), d["name"].clone());
        if let Some(sms) = c
            .get_mut("settings")
            .and_then(|s| s.get_mut("sms"))
            .and_then(|s| s.as_table_mut())
        {
            sms.insert("demo_inbox_url".into(), toml::Value::String(inbox.into()));
        }
        if let Some(logos) = d.get("logo").and_then(|l| l.as_table()) {
            let absolute: toml::Table = logos
                .iter()
                .map(|(lang, path)| {
                    let path = config.join(path.as_str().expect("logo path"));
                    (
                        lang.clone(),
                        toml::Value::String(path.display().to_string()),
                    )
                })
                .collect();
            c.insert("logo".into(), toml::Value::Table(absolute));
        }
    }
    toml::to_string(&table).expect("TOML")
}
