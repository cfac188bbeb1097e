//! `broker check-config`: every problem at once, each with file, key and reason.

use std::process::Command;

use crate::harness::*;

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, config).expect("write");
    for name in ["rs.pem", "es.pem", "ed.pem"] {
        let alg = match name {
            "rs.pem" => broker::keys::SigningAlg::RS256,
            "es.pem" => broker::keys::SigningAlg::ES256,
            _ => broker::keys::SigningAlg::EdDSA,
        };
        let (_, pem) = broker::keys::SigningKey::generate("k", alg).expect("key");
        std::fs::write(dir.path().join(name), pem).expect("key file");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_broker"))
        .arg("check-config")
        .arg(&path)
        .env("TEST_PAIRWISE", PAIRWISE)
        .env("TEST_RP_SECRET", RP_SECRET)
        .env("TEST_POST_SECRET", POST_SECRET)
        .output()
        .expect("run check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn jwks() -> String {
    let (k, _) =
        broker::keys::SigningKey::generate("c", broker::keys::SigningAlg::ES256).expect("key");
    serde_json::json!({"keys": [k.jwk()]}).to_string()
}

#[test]
fn a_valid_configuration_passes() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let (ok, text) = check(&base_config(1, store, &jwks(), ""));
    assert!(ok, "{text}");
    assert!(text.contains("configuration is valid"));
}

#[test]
fn every_problem_is_reported_with_file_key_and_reason() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let config = base_config(1, store, &jwks(), "")
        .replace("redirect_uris = [\"http://127.0.0.1:9/cb\"]", "redirect_uris = [\"http://platform.example/cb\"]")
        .replace("id = \"rp-post\"", "id = \"rp-basic\"")
        .replace("type = \"test-citizens\"\nname = { en = \"Closed bank\" }", "type = \"carrier-pigeon\"\nname = { en = \"Closed bank\" }")
        + "\n[[clients]]\nid = \"rp-high\"\nname = \"E-signature\"\nredirect_uris = [\"https://sign.example/cb\"]\nsecret = { env = \"NOT_SET_ANYWHERE\" }\nmin_assurance = \"high\"\n";
    let (ok, text) = check(&config);
    assert!(!ok, "must fail");
    for expected in [
        "clients[1].redirect_uris[0]: `http://platform.example/cb` must use https",
        "clients[3].id: `rp-basic` is used twice",
        "connectors[1].type: unknown connector type `carrier-pigeon`",
        "clients[6].secret: environment variable `NOT_SET_ANYWHERE` is not set",
        "clients[6].min_assurance: no enabled connector reaches `high`",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(text.contains("broker.toml: "), "names the file");
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let typo = base_config(1, store, &jwks(), "").replace(
        "allow_test_citizens = true",
        "allow_test_citizens = true\nrequire_pkec = true",
    );
    let (ok, text) = check(&typo);
    assert!(!ok);
    assert!(
        text.contains("require_pkec: unknown key `require_pkec`"),
        "{text}"
    );

    let wrong_type = base_config(1, store, &jwks(), "")
        .replace("[tokens]", "")
        .replace(
            "allow_test_citizens = true",
            "allow_test_citizens = true\n[tokens]\ncode_ttl = \"sixty\"\n",
        );
    let (ok, text) = check(&wrong_type);
    assert!(!ok);
    assert!(text.contains("tokens.code_ttl"), "{text}");

    let bad_settings =
        base_config(1, store, &jwks(), "").replace("username = \"lan\"", "user = \"lan\"");
    let (ok, text) = check(&bad_settings);
    assert!(!ok);
    assert!(text.contains("connectors[0].settings.citizens"), "{text}");
}

#[test]
fn test_citizens_are_refused_in_serve_unless_allowed() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let config = base_config(1, store, &jwks(), "").replace("allow_test_citizens = true", "");
    let (ok, text) = check(&config);
    assert!(!ok);
    assert!(
        text.contains("connectors[0].type: `test-citizens` is for demos and tests"),
        "{text}"
    );
}

#[test]
fn shape_problems_in_several_sections_are_all_reported() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let config = base_config(1, store, &jwks(), "")
        .replace(
            "allow_test_citizens = true",
            "allow_test_citizens = \"yes\"\nrequire_pkec = true",
        )
        .replace(
            "id = \"rp-other\"\nname = \"Other platform\"",
            "id = \"rp-other\"\nname = \"Other platform\"\nredirect_url = \"x\"",
        );
    let (ok, text) = check(&config);
    assert!(!ok);
    for expected in [
        "allow_test_citizens: invalid type",
        "require_pkec: unknown key `require_pkec`",
        "clients[1].redirect_url: unknown field `redirect_url`",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[test]
fn logos_and_upstream_client_keys_are_checked() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let extra = r#"
[[connectors]]
id = "logos"
type = "test-citizens"
name = { en = "Logos" }
logo = { en = "missing.svg", fr = "es.pem", vi = "rs.pem" }

[connectors.settings]
citizens = [{ username = "x", password = "y" }]

[[connectors]]
id = "vneid"
type = "oidc"
name = { en = "VNeID" }

[connectors.settings]
issuer = "https://id.example.vn"
client_id = "broker"
auth_method = "private_key_jwt"
private_key = { file = "rs.pem" }
private_key_alg = "ES256"
"#;
    let (ok, text) = check(&(base_config(1, store, &jwks(), "") + extra));
    assert!(!ok, "must fail:\n{text}");
    for expected in [
        ".logo.en: cannot read",
        ".logo.fr: unknown language (known: vi, zh, es, en)",
        ".logo.vi: must be a .svg, .png, .jpg or .webp file",
        ".settings.private_key: is not a PKCS#8 PEM private key for ES256 (private_key_alg): the file holds a key of another algorithm",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[test]
fn a_fapi_client_that_contradicts_its_profile_is_refused() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let rsa_only = {
        let (k, _) =
            broker::keys::SigningKey::generate("r", broker::keys::SigningAlg::RS256).expect("key");
        serde_json::json!({"keys": [k.jwk()]}).to_string()
    };
    let config = base_config(1, store, &jwks(), "")
        + "\n[[clients]]\nid = \"rp-sign\"\nname = \"E-signature\"\nredirect_uris = [\"https://sign.example/cb\"]\nsecret = { env = \"TEST_RP_SECRET\" }\nprofile = \"fapi2-security\"\nrequire_pushed_authorization_requests = false\n"
        + &format!("\n[[clients]]\nid = \"rp-seal\"\nname = \"E-seal\"\nredirect_uris = [\"https://seal.example/cb\"]\nauth_method = \"private_key_jwt\"\njwks = '{rsa_only}'\nprofile = \"fapi2-security\"\n")
        + "\n[[clients]]\nid = \"rp-typo\"\nname = \"Typo\"\nredirect_uris = [\"https://typo.example/cb\"]\nauth_method = \"private_key_jwt\"\njwks = '{\"keys\": []}'\nprofile = \"fapi3\"\n"
        + &format!("\n[[clients]]\nid = \"rp-ms\"\nname = \"Seal\"\nredirect_uris = [\"https://ms.example/cb\"]\nauth_method = \"private_key_jwt\"\njwks = '{}'\nprofile = \"fapi2-message-signing\"\nid_token_signed_response_alg = \"ES256\"\nrequire_signed_request_object = false\n", jwks());
    let (ok, text) = check(&config);
    assert!(!ok, "must fail:\n{text}");
    for expected in [
        "clients[6].auth_method: a fapi2-security client authenticates with private_key_jwt only",
        "clients[6].secret: a fapi2-security client has no shared secret",
        "clients[6].jwks: a fapi2-security client needs its public keys",
        "clients[6].id_token_signed_response_alg: a fapi2-security client's answers are signed with PS256, ES256, EdDSA, not RS256",
        "clients[6].require_pushed_authorization_requests: a fapi2-security client must push its requests",
        "clients[7].jwks.keys[0]: a fapi2-security client's keys are for PS256, ES256, EdDSA only",
        "clients[8].profile: unknown profile `fapi3`",
        "clients[9].require_signed_request_object: a fapi2-message-signing client signs its requests",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}
