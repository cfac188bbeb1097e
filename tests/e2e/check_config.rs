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
        "clients[\"rp-other\"].redirect_uris[0]: `http://platform.example/cb` must use https",
        "clients[\"rp-basic\"].id: `rp-basic` is used twice",
        "connectors[\"closed-bank\"].type: unknown connector type `carrier-pigeon`",
        "clients[\"rp-high\"].secret: environment variable `NOT_SET_ANYWHERE` is not set",
        "clients[\"rp-high\"].min_assurance: no enabled connector reaches `high`",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(text.contains("broker.toml:"), "names the file");
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
        text.contains("require_pkec: unknown key `require_pkec` (did you mean `require_pkce`?)"),
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
    assert!(
        text.contains("connectors[\"test-citizens\"].settings.citizens"),
        "{text}"
    );
}

#[test]
fn test_citizens_are_refused_in_serve_unless_allowed() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let config = base_config(1, store, &jwks(), "").replace("allow_test_citizens = true", "");
    let (ok, text) = check(&config);
    assert!(!ok);
    assert!(
        text.contains("connectors[\"test-citizens\"].type: `test-citizens` is for demos and tests"),
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
        "allow_test_citizens: must be true or false, found the text \"yes\"",
        "require_pkec: unknown key `require_pkec` (did you mean `require_pkce`?)",
        "clients[\"rp-other\"].redirect_url: unknown key `redirect_url` (did you mean `redirect_uris`?)",
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
fn problems_are_in_words_on_their_line_all_at_once() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let config = base_config(1, store, &jwks(), "")
        .replace(
            "pairwise_secret = { env = \"TEST_PAIRWISE\" }",
            "pairwise_secret = \"written-inline-0123456789\"\n[tokens]\ncode_ttl = \"60\"",
        )
        // Three mistakes in one entry are all reported.
        .replace(
            "id = \"rp-other\"\nname = \"Other platform\"",
            "id = \"rp-other\"\nname = \"Other platform\"\nrequire_consnet = true\nsubject_type = \"pairwise-ish\"\nscope = [\"openid\"]",
        );
    let (ok, text) = check(&config);
    assert!(!ok, "must fail");
    let line_of = |needle: &str| {
        config
            .lines()
            .position(|l| l.starts_with(needle))
            .map(|i| i + 1)
            .expect("in the file")
    };
    for expected in [
        format!(
            "broker.toml:{}: tokens.code_ttl: must be a number of seconds, found the text \"60\"",
            line_of("code_ttl")
        ),
        format!(
            "broker.toml:{}: pairwise_secret: secrets are never written inline: use {{ env = … }} or {{ file = … }}",
            line_of("pairwise_secret")
        ),
        format!(
            "broker.toml:{}: clients[\"rp-other\"].require_consnet: unknown key `require_consnet` (did you mean `require_consent`?)",
            line_of("require_consnet")
        ),
        format!(
            "broker.toml:{}: clients[\"rp-other\"].scope: unknown key `scope` (did you mean `scopes`?)",
            line_of("scope =")
        ),
    ] {
        assert!(text.contains(&expected), "missing `{expected}` in:\n{text}");
    }
    assert!(
        text.contains("clients[\"rp-other\"].subject_type: unknown value `pairwise-ish`"),
        "{text}"
    );
    // One line per problem, none in serde's words.
    for line in text.lines() {
        assert!(
            line.starts_with(&format!("{}", std::path::Path::new("/").display()))
                || line.ends_with("problems found"),
            "one line per problem: {line:?}"
        );
    }
    for serde_words in [
        "invalid type",
        "untagged enum",
        "expected u64",
        "unknown field",
    ] {
        assert!(!text.contains(serde_words), "`{serde_words}` in:\n{text}");
    }
}

#[test]
fn an_unreadable_key_file_is_one_problem() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let config = base_config(1, store, &jwks(), "")
        .replace("file = \"ed.pem\"", "file = \"missing-ed.pem\"");
    let (ok, text) = check(&config);
    assert!(!ok, "must fail");
    assert!(text.contains("keys[\"ed-1\"].file"), "{text}");
    assert!(
        !text.contains("no key in `keys` has algorithm EdDSA"),
        "the clients signing with EdDSA are not blamed too:\n{text}"
    );
    assert!(text.contains("1 problem found"), "{text}");
}

#[test]
fn a_platform_no_enabled_source_can_serve_is_refused() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let config = base_config(1, store, &jwks(), "").replace(
        "id = \"test-citizens\"\ntype = \"test-citizens\"",
        "id = \"test-citizens\"\ntype = \"test-citizens\"\nstatus = \"disabled\"",
    );
    let config = config.replace("status = \"maintenance\"", "status = \"disabled\"");
    let (ok, text) = check(&config);
    assert!(!ok, "must fail:\n{text}");
    assert!(
        text.contains("clients[\"rp-basic\"].min_assurance: no enabled connector reaches `low`: no connector is enabled"),
        "{text}"
    );
}

#[test]
fn the_shipped_example_enables_a_source_for_its_platforms() {
    let example = include_str!("../../config/broker.example.toml");
    let table: toml::Table = example.parse().expect("the example parses");
    let enabled = table["connectors"]
        .as_array()
        .expect("connectors")
        .iter()
        .filter(|c| {
            c.get("status")
                .and_then(|s| s.as_str())
                .unwrap_or("enabled")
                == "enabled"
        })
        .count();
    assert!(enabled >= 1, "the example enables an identity source");
    assert!(!example.contains("not a\n# Cluster or Sentinel client"));
}

#[test]
fn records_problems_are_reported_with_their_keys() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n[records]\nkind = \"postgres\"\nurl = \"postgres://broker:hunter2@db.internal/broker\"\npassword = { env = \"NOT_SET_ANYWHERE\" }\npool_size = 0\nstatement_timeout_ms = 0\npath = \"r.redb\"\n";
    let (ok, text) = check(&base_config(1, store, &jwks(), ""));
    assert!(!ok, "must fail: {text}");
    for expected in [
        ": records.url: must not carry credentials",
        ": records.password: environment variable `NOT_SET_ANYWHERE` is not set",
        ": records.pool_size: must be between 1 and 1000",
        ": records.statement_timeout_ms: must be between 1 and 60000 milliseconds",
        ": records.path: is only for `kind = \"embedded\"`",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(
        !text.contains("hunter2"),
        "a password in the URL is never repeated: {text}"
    );
    let embedded = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n[records]\nurl = \"postgres://db/broker\"\n";
    let (ok, text) = check(&base_config(1, embedded, &jwks(), ""));
    assert!(!ok);
    assert!(
        text.contains("records.url: is only for `kind = \"postgres\"`"),
        "{text}"
    );
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
        "clients[\"rp-sign\"].auth_method: a fapi2-security client authenticates with private_key_jwt only",
        "clients[\"rp-sign\"].secret: a fapi2-security client has no shared secret",
        "clients[\"rp-sign\"].jwks: a fapi2-security client needs its public keys",
        "clients[\"rp-sign\"].id_token_signed_response_alg: a fapi2-security client's answers are signed with PS256, ES256, EdDSA, not RS256",
        "clients[\"rp-sign\"].require_pushed_authorization_requests: a fapi2-security client must push its requests",
        "clients[\"rp-seal\"].jwks.keys[0]: a fapi2-security client's keys are for PS256, ES256, EdDSA only",
        "clients[\"rp-typo\"].profile: unknown profile `fapi3`",
        "clients[\"rp-ms\"].require_signed_request_object: a fapi2-message-signing client signs its requests",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[test]
fn jwks_uri_problems_are_reported_with_their_keys() {
    let store = "[store]\nkind = \"embedded\"\npath = \"b.redb\"\n";
    let client = |id: &str, lines: &str| {
        format!("\n[[clients]]\nid = \"{id}\"\nname = \"{id}\"\nredirect_uris = [\"https://{id}.example/cb\"]\n{lines}\n")
    };
    let config = base_config(1, store, &jwks(), "")
        + &client(
            "rp-both",
            &format!("auth_method = \"private_key_jwt\"\njwks = '{}'\njwks_uri = \"https://rp-both.example/jwks\"", jwks()),
        )
        + &client("rp-none", "auth_method = \"private_key_jwt\"")
        + &client(
            "rp-plain",
            "auth_method = \"private_key_jwt\"\njwks_uri = \"http://rp-plain.example/jwks\"",
        )
        + &client(
            "rp-secret",
            "secret = { env = \"TEST_RP_SECRET\" }\njwks_uri = \"https://rp-secret.example/jwks\"",
        )
        + &client(
            "rp-fapi-uri",
            "auth_method = \"private_key_jwt\"\njwks_uri = \"https://rp-fapi-uri.example/jwks\"\nprofile = \"fapi2-security\"\nid_token_signed_response_alg = \"ES256\"",
        );
    let (ok, text) = check(&config);
    assert!(!ok, "must fail:\n{text}");
    for expected in [
        "clients[\"rp-both\"].jwks_uri: give the client's keys once: either jwks or jwks_uri, not both",
        "clients[\"rp-none\"].jwks: `private_key_jwt` needs the client's JWKS (jwks) or where it publishes it (jwks_uri)",
        "clients[\"rp-plain\"].jwks_uri: `http://rp-plain.example/jwks` must use https (plain http only on localhost)",
        "clients[\"rp-secret\"].jwks_uri: only a `private_key_jwt` client uses public keys, not `client_secret_basic`",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    // A FAPI client whose keys are at an https jwks_uri fits its profile.
    assert!(!text.contains("rp-fapi-uri"), "{text}");
}
