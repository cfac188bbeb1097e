//! What operators rely on: live reload that keeps the last good configuration.

use std::process::Command;

use crate::harness::*;

#[tokio::test]
async fn reload_applies_a_good_configuration_and_keeps_the_last_good_one() {
    let broker = Broker::start(Options::default());
    let path = broker.config_path().to_path_buf();
    let original = std::fs::read_to_string(&path).expect("config");

    // A new platform, announced with SIGHUP.
    let added = format!(
        "{original}\n[[clients]]\nid = \"rp-new\"\nname = \"New platform\"\nredirect_uris = [\"http://localhost:9/new-cb\"]\nsecret = {{ env = \"TEST_RP_SECRET\" }}\n"
    );
    std::fs::write(&path, &added).expect("write");
    let status = Command::new("kill")
        .args(["-HUP", &broker.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(
        broker.wait_for_log("configuration reloaded", 1),
        "{}",
        broker.log_text()
    );
    let t = tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-new",
        "http://localhost:9/new-cb",
        "openid",
    )
    .await;
    assert!(
        t["id_token"].is_string(),
        "the new client works without a restart"
    );

    // A broken edit (detected by the file watcher) is rejected with file, key and reason.
    let broken = added.replace(
        "redirect_uris = [\"http://localhost:9/new-cb\"]",
        "redirect_uris = [\"ftp://x\"]",
    );
    std::fs::write(&path, broken).expect("write");
    assert!(
        broker.wait_for_log("configuration rejected; the last good", 1),
        "{}",
        broker.log_text()
    );
    assert!(
        broker.log_text().contains("redirect_uris[0]"),
        "the problem names the key"
    );
    let t = tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-new",
        "http://localhost:9/new-cb",
        "openid",
    )
    .await;
    assert!(
        t["id_token"].is_string(),
        "the last good configuration still serves"
    );
}
