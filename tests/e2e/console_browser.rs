//! The operators' console in headless Chromium (tests/js/console.mjs) on two broker
//! instances sharing Redis and PostgreSQL, with the simulated VNeID for the operators'
//! sign-in at `high`, a second simulated provider the script adds through the console, and
//! the simulated banks for a bank put into maintenance.

use std::process::Command;

use records::Records;

use crate::console::CONSOLE;
use crate::harness::*;
use crate::sims;
use crate::upstream_oidc;

/// Scenarios of the script.
const SCENARIOS: usize = 9;

fn vneid_sim(port: u16, broker_port: u16, callback: &str) -> sims::Sim {
    let url = format!("http://127.0.0.1:{port}");
    sims::spawn(
        simulators::vneid::serve(
            &format!("127.0.0.1:{port}"),
            &url,
            vec![simulators::vneid::Client {
                id: "broker-e2e".into(),
                secret: RP_SECRET.into(),
                redirect_uris: vec![format!(
                    "http://127.0.0.1:{broker_port}/callback/{callback}"
                )],
            }],
        )
        .expect("VNeID simulator binds"),
        port,
    )
}

#[tokio::test]
async fn operators_run_the_broker_from_the_console_in_a_browser() {
    let js = sims::require_browser_tests(&["axe-core", "playwright-core"]);
    let broker_port = free_port();
    let vneid = vneid_sim(free_port(), broker_port, "vneid");
    let vneid2 = vneid_sim(free_port(), broker_port, "vneid2");
    let banks = sims::banks();
    let sms = sims::sms();
    let (key_dir, key_path) = sims::secret_file("hash-key-for-console-tests-0123456789abcdef");
    let rp_port = free_port();
    let extra = format!(
        "{}{}\n[[clients]]\nid = \"js-rp\"\nname = \"openid-client platform\"\nredirect_uris = [\"http://127.0.0.1:{rp_port}/callback\"]\nsecret = {{ env = \"TEST_RP_SECRET\" }}\nscopes = [\"openid\", \"profile\"]\n",
        crate::bank_card::connector_toml(&banks, &sms, &key_path, ""),
        upstream_oidc::VNEID_CONNECTOR.replace("ISSUER", &vneid.url),
    );
    let broker = Broker::start(Options {
        port: Some(broker_port),
        redis_prefix: Some(format!("console-js-{}", records::new_id())),
        top: CONSOLE.to_string(),
        extra,
        ..Options::default()
    });
    let twin = broker.twin();

    // A suspended binding waiting for review, as a strong proof against a weak one leaves.
    let options = broker.records_options().expect("PostgreSQL records");
    let store = records::postgres::PgRecords::connect(&options)
        .await
        .expect("records");
    let item = records::ReviewItem::open(
        records::ReviewKind::Suspended,
        &records::new_id(),
        &records::new_id(),
        &records::new_id(),
        1_000,
    );
    let committed = store
        .commit(records::Changes {
            open_reviews: vec![item.clone()],
            ..records::Changes::default()
        })
        .await
        .expect("commit");
    assert_eq!(committed, records::Commit::Done);

    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/console");
    let out = tokio::task::spawn_blocking({
        let (issuer, twin_base, vneid2_url) =
            (broker.issuer.clone(), twin.base.clone(), vneid2.url.clone());
        let review_id = item.id.clone();
        move || {
            Command::new("node")
                .arg(js.join("console.mjs"))
                .env("ISSUER", issuer)
                .env("CLIENT_ID", "js-rp")
                .env("CLIENT_SECRET", RP_SECRET)
                .env("RP_PORT", rp_port.to_string())
                .env("TWIN", twin_base)
                .env("VNEID2_ISSUER", vneid2_url)
                .env("REVIEW_ID", review_id)
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
        "the console in Chromium failed:\n{stdout}\n{stderr}\nbroker log:\n{}\ntwin log:\n{}",
        broker.log_text(),
        twin.log_text()
    );
    assert!(
        stdout.contains(&format!("console e2e: {SCENARIOS} passed, 0 failed")),
        "{stdout}"
    );
    // The review item is closed in the records, by the operator.
    let closed = store.review(&item.id).await.expect("read").expect("kept");
    assert_eq!(closed.closed.map(|c| c.by), Some("An Admin".to_string()));
    drop((vneid, vneid2, banks, sms, key_dir, twin));
}
