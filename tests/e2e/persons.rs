//! One person across every way in: bindings of citizen ID numbers, linking of legacy
//! accounts through the population registry, conflicts, ID number changes, step-up.

use crate::harness::*;
use crate::sims;

const AN_CCCD: &str = "079201001234";
const AN_CMND: &str = "123456789";

/// A population registry speaking the broker's HTTP contract, with two citizens and one
/// CMND → CCCD mapping.
fn registry() -> u16 {
    http_stub(|_, path, body| {
        if path == "/check" {
            let q: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let known = [
                (AN_CCCD, "Nguyễn Văn An", "1990-03-15"),
                ("001195006789", "Trần Thị Lan", "1995-11-02"),
            ];
            let result = match known.iter().find(|(id, _, _)| q["citizen_id"] == *id) {
                Some((_, name, birth)) if q["name"] == *name && q["birthdate"] == *birth => "match",
                Some(_) => "mismatch",
                None => "not_found",
            };
            (
                "200 OK",
                serde_json::json!({ "result": result }).to_string(),
            )
        } else if path == format!("/current/{AN_CMND}") {
            (
                "200 OK",
                serde_json::json!({ "current": AN_CCCD }).to_string(),
            )
        } else {
            ("404 Not Found", "{}".to_string())
        }
    })
}

fn options(registry_port: u16) -> Options {
    let citizen = |user: &str, cid: Option<&str>| {
        let cid = cid
            .map(|c| format!("citizen_id = \"{c}\", "))
            .unwrap_or_default();
        format!(
            "{{ username = \"{user}\", password = \"pw\", {cid}claims = {{ name = \"Nguyễn Văn An\", birthdate = \"1990-03-15\" }} }}"
        )
    };
    let extra = format!(
        r#"
[[connectors]]
id = "bank"
type = "test-citizens"
name = {{ en = "Bank card" }}
[connectors.settings]
assurance = "substantial"
amr = "otp"
citizens = [{an}, {an_cmnd}]

[[connectors]]
id = "vneid"
type = "test-citizens"
name = {{ en = "VNeID" }}
[connectors.settings]
assurance = "high"
amr = "face"
citizens = [{an}]

[[connectors]]
id = "legacy"
type = "test-citizens"
name = {{ en = "Old portal account" }}
[connectors.settings]
assurance = "low"
citizen_id_proven = false
citizens = [{an_old}, {mallory}, {lan_old}]

[[clients]]
id = "rp-high"
name = "E-signature"
redirect_uris = ["http://localhost:9/high-cb"]
secret = {{ env = "TEST_RP_SECRET" }}
min_assurance = "high"

[[clients]]
id = "rp-needs-id"
name = "Social insurance"
redirect_uris = ["http://localhost:9/id-cb"]
secret = {{ env = "TEST_RP_SECRET" }}
require_citizen_id = true
"#,
        an = citizen("an", Some(AN_CCCD)),
        an_cmnd = citizen("an-cmnd", Some(AN_CMND)),
        an_old = citizen("an-old", None),
        mallory = "{ username = \"mallory\", password = \"pw\", claims = { name = \"Mallory\" } }",
        lan_old = "{ username = \"lan-old\", password = \"pw\", claims = { name = \"Trần Thị Lan\", birthdate = \"1995-11-02\" } }",
    );
    Options {
        top: format!(
            "audit_log = \"audit.log\"\n[registry]\nurl = \"http://127.0.0.1:{registry_port}\"\n"
        ),
        extra,
        ..Options::default()
    }
}

/// Starts a login at `client` and signs in through `connector`; returns the PKCE
/// verifier and where the password step led.
async fn sign_in(
    browser: &Browser,
    client: &str,
    redirect: &str,
    connector: &str,
    user: &str,
) -> (String, Option<String>) {
    let (verifier, challenge) = pkce();
    let params = auth_params(client, redirect, "openid profile citizen_id", &challenge);
    let choice = browser.login_page(browser.authorize(&params).await).await;
    let form = browser.choose(&choice, connector).await;
    let (_, location, _) = browser
        .follow(browser.submit_password(&form, user, "pw").await)
        .await;
    (verifier, location)
}

/// [`sign_in`] at `rp-basic`.
async fn basic_sign_in(browser: &Browser, connector: &str, user: &str) -> (String, Option<String>) {
    sign_in(
        browser,
        "rp-basic",
        "http://localhost:9/cb",
        connector,
        user,
    )
    .await
}

/// A whole login through `connector` with PKCE; returns the ID token claims.
async fn login_claims(
    broker: &Broker,
    browser: &Browser,
    client: &str,
    redirect: &str,
    connector: &str,
    user: &str,
) -> serde_json::Value {
    let (verifier, location) = sign_in(browser, client, redirect, connector, user).await;
    let location = location.expect("a redirect after sign-in");
    assert!(
        location.starts_with(redirect),
        "expected the platform, got {location}"
    );
    redeem(broker, client, redirect, &location, &verifier).await
}

/// The `sub` a platform gets for An signing in through `connector`.
async fn sub_via(
    broker: &Broker,
    connector: &str,
    client: &str,
    redirect: &str,
) -> serde_json::Value {
    let claims = if connector == "test-citizens" {
        // The harness's test citizen `an` (password `demo`).
        let t = tokens_for(broker, &Browser::new(broker), client, redirect, "openid").await;
        payload(t["id_token"].as_str().expect("id_token"))
    } else {
        login_claims(
            broker,
            &Browser::new(broker),
            client,
            redirect,
            connector,
            "an",
        )
        .await
    };
    claims["sub"].clone()
}

async fn redeem(
    broker: &Broker,
    client: &str,
    redirect: &str,
    location: &str,
    verifier: &str,
) -> serde_json::Value {
    let code = code_of_location(location);
    let (status, body, _) = token_basic(
        broker,
        client,
        RP_SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    payload(body["id_token"].as_str().expect("id_token"))
}

fn code_of_location(location: &str) -> String {
    let cb = Callback {
        url: url::Url::parse(location).expect("url"),
    };
    cb.param("code")
        .unwrap_or_else(|| panic!("expected a code at {location}"))
}

fn form_action(html: &str, suffix: &str) -> String {
    let tx = tx_path(html).expect("tx");
    format!("{tx}/{suffix}")
}

/// The page a step of the login led to.
async fn page_at(browser: &Browser, location: Option<String>, what: &str) -> String {
    browser
        .get(&location.unwrap_or_else(|| panic!("a redirect to the {what}")))
        .await
        .text()
        .await
        .expect("page")
}

/// On the link page, gives An's number, name and birth date; returns where it led.
async fn link_an_number(broker: &Broker, browser: &Browser, page: &str) -> Option<String> {
    let csrf = hidden(page, "csrf").expect("csrf");
    let resp = browser
        .post(
            &broker.url(&form_action(page, "link")),
            &[
                ("csrf", &csrf),
                ("action", "link"),
                ("citizen_id", AN_CCCD),
                ("name", "Nguyễn Văn An"),
                ("birthdate", "1990-03-15"),
            ],
        )
        .await;
    browser.follow(resp).await.1
}

/// Signs in at `rp-basic` through `connector` as `user`, is asked about the older account
/// of the old portal, proves it by signing in there as `old_user`, and returns the claims
/// the platform then gets.
async fn sign_in_and_prove_old_account(
    broker: &Broker,
    browser: &Browser,
    (connector, user): (&str, &str),
    old_user: &str,
) -> serde_json::Value {
    let (verifier, location) = basic_sign_in(browser, connector, user).await;
    let claim = page_at(browser, location, "claim page").await;
    assert!(
        claim.contains("Old portal account"),
        "asked about the older account, naming its source: {claim}"
    );
    let csrf = hidden(&claim, "csrf").expect("csrf");
    let resp = browser
        .post(
            &broker.url(&form_action(&claim, "claim")),
            &[("csrf", &csrf), ("choice", "prove")],
        )
        .await;
    let (_, location, _) = browser.follow(resp).await;
    let form = page_at(browser, location, "old portal's form").await;
    let location = browser
        .follow(browser.submit_password(&form, old_user, "pw").await)
        .await
        .1;
    redeem(
        broker,
        "rp-basic",
        "http://localhost:9/cb",
        &location.expect("code"),
        &verifier,
    )
    .await
}

#[tokio::test]
async fn one_sub_per_platform_whichever_connector_proves_the_number() {
    let broker = Broker::start(options(registry()));
    let mut subs_basic = Vec::new();
    let mut subs_other = Vec::new();
    for connector in ["test-citizens", "bank", "vneid"] {
        subs_basic.push(sub_via(&broker, connector, "rp-basic", "http://localhost:9/cb").await);
        subs_other.push(sub_via(&broker, connector, "rp-other", "http://127.0.0.1:9/cb").await);
    }
    assert!(
        subs_basic.iter().all(|s| *s == subs_basic[0]),
        "one sub at rp-basic: {subs_basic:?}"
    );
    assert!(
        subs_other.iter().all(|s| *s == subs_other[0]),
        "one sub at rp-other: {subs_other:?}"
    );
    assert_ne!(
        subs_basic[0], subs_other[0],
        "different platforms, different subs"
    );
}

#[tokio::test]
async fn a_changed_id_number_keeps_the_sub() {
    let broker = Broker::start(options(registry()));
    // The bank still knows the old 9-digit CMND; the registry maps it to the CCCD.
    let old = login_claims(
        &broker,
        &Browser::new(&broker),
        "rp-basic",
        "http://localhost:9/cb",
        "bank",
        "an-cmnd",
    )
    .await;
    assert_eq!(old["citizen_id"], AN_CCCD, "the current number is released");
    let new = login_claims(
        &broker,
        &Browser::new(&broker),
        "rp-basic",
        "http://localhost:9/cb",
        "vneid",
        "an",
    )
    .await;
    assert_eq!(old["sub"], new["sub"]);
}

#[tokio::test]
async fn a_typo_is_no_attempt_and_after_three_failed_checks_skip_remains() {
    let broker = Broker::start(options(registry()));
    let browser = Browser::new(&broker);
    let (verifier, location) = basic_sign_in(&browser, "legacy", "an-old").await;
    let page = page_at(&browser, location, "link page").await;
    let csrf = hidden(&page, "csrf").expect("csrf");
    let post = |fields: Vec<(&'static str, String)>| {
        let browser = &browser;
        let url = broker.url(&form_action(&page, "link"));
        let csrf = csrf.clone();
        async move {
            let mut form: Vec<(&str, String)> = vec![("csrf", csrf)];
            form.extend(fields);
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (_, location, body) = browser.follow(browser.post(&url, &pairs).await).await;
            (location, body)
        }
    };
    let link = |number: &str, birthdate: &str| {
        vec![
            ("action", "link".to_string()),
            ("citizen_id", number.to_string()),
            ("name", "Nguyễn Văn An".to_string()),
            ("birthdate", birthdate.to_string()),
        ]
    };
    // Typos never reach the registry and do not count: five of them, then three checks.
    for typo in ["abc", "12345", "0792010012", "07920100123X", "1"] {
        let (location, _) = post(link(typo, "1990-03-15")).await;
        let page = page_at(&browser, location, "link page").await;
        let problem = sims::element_text(&page, "problem").expect("problem");
        assert!(
            problem.contains("does not look like a citizen ID number"),
            "{problem}"
        );
        assert!(
            page.contains("id=\"f-citizen_id\""),
            "the form stays: {page}"
        );
        // What was typed is shown again (sealed in the store), never the number.
        assert!(page.contains("value=\"Nguyễn Văn An\""), "{page}");
    }
    for attempt in 1..=3 {
        let (location, _) = post(link(AN_CCCD, "1991-01-01")).await;
        let page = page_at(&browser, location, "link page").await;
        if attempt < 3 {
            assert!(
                page.contains("does not match the population database"),
                "{page}"
            );
        } else {
            assert!(page.contains("Continue without it"), "{page}");
            assert!(
                !page.contains("id=\"f-citizen_id\""),
                "no check left: {page}"
            );
            assert!(page.contains("id=\"skip\""), "Skip remains: {page}");
        }
    }
    // Skip goes on to the platform, without a number.
    let (location, _) = post(vec![("action", "skip".to_string())]).await;
    let claims = redeem(
        &broker,
        "rp-basic",
        "http://localhost:9/cb",
        &location.expect("code"),
        &verifier,
    )
    .await;
    assert!(claims.get("citizen_id").is_none());

    // The account's registry budget (5 an hour) counts the login's three checks: two more
    // from the account page, then a refusal before the registry is asked.
    let account = browser
        .get(&broker.url("/account"))
        .await
        .text()
        .await
        .expect("account");
    let csrf = hidden(&account, "csrf").expect("csrf");
    let check = || async {
        browser
            .post(
                &broker.url("/account/link"),
                &[
                    ("csrf", csrf.as_str()),
                    ("citizen_id", AN_CCCD),
                    ("name", "Nguyễn Văn An"),
                    ("birthdate", "1991-01-01"),
                ],
            )
            .await
    };
    for _ in 0..2 {
        let page = check().await.text().await.expect("page");
        assert!(
            page.contains("does not match the population database"),
            "{page}"
        );
    }
    let refused = check().await;
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn a_legacy_account_is_linked_skipped_and_linked_later() {
    let broker = Broker::start(options(registry()));

    // First visit: skip.
    let browser = Browser::new(&broker);
    let (verifier, location) = basic_sign_in(&browser, "legacy", "an-old").await;
    let page = page_at(&browser, location, "link page").await;
    assert!(page.contains("id=\"skip\""), "Skip offered: {page}");
    let csrf = hidden(&page, "csrf").expect("csrf");
    let resp = browser
        .post(
            &broker.url(&form_action(&page, "link")),
            &[("csrf", &csrf), ("action", "skip")],
        )
        .await;
    let (_, location, _) = browser.follow(resp).await;
    let legacy = redeem(
        &broker,
        "rp-basic",
        "http://localhost:9/cb",
        &location.expect("code"),
        &verifier,
    )
    .await;
    assert!(legacy.get("citizen_id").is_none());

    // Later, from the account page: a mismatch, then the right details.
    let account = browser
        .get(&broker.url("/account"))
        .await
        .text()
        .await
        .expect("account");
    assert!(account.contains("No citizen ID number"), "{account}");
    let csrf = hidden(&account, "csrf").expect("csrf");
    let wrong = browser
        .post(
            &broker.url("/account/link"),
            &[
                ("csrf", &csrf),
                ("citizen_id", AN_CCCD),
                ("name", "Nguyễn Văn An"),
                ("birthdate", "1991-01-01"),
            ],
        )
        .await
        .text()
        .await
        .expect("page");
    assert!(
        wrong.contains("does not match the population database"),
        "{wrong}"
    );
    let right = browser
        .post(
            &broker.url("/account/link"),
            &[
                ("csrf", &csrf),
                ("citizen_id", AN_CCCD),
                ("name", "Nguyễn Văn An"),
                ("birthdate", "1990-03-15"),
            ],
        )
        .await
        .text()
        .await
        .expect("page");
    assert!(right.contains("ending in 234"), "{right}");

    // VNeID proves the number the old account holds through a weaker check: the citizen
    // proves the old account once and keeps its sub.
    let browser = Browser::new(&broker);
    let merged = sign_in_and_prove_old_account(&broker, &browser, ("vneid", "an"), "an-old").await;
    assert_eq!(
        merged["sub"], legacy["sub"],
        "the old account's records stay reachable"
    );
    assert_eq!(merged["acr"], "http://eidas.europa.eu/LoA/high");
    assert_eq!(merged["citizen_id"], AN_CCCD);

    // From now on VNeID goes straight to the same person.
    let again = login_claims(
        &broker,
        &Browser::new(&broker),
        "rp-basic",
        "http://localhost:9/cb",
        "vneid",
        "an",
    )
    .await;
    assert_eq!(again["sub"], legacy["sub"]);
    let audit =
        std::fs::read_to_string(broker.config_path().with_file_name("audit.log")).expect("audit");
    assert!(
        audit.contains("link.skipped")
            && audit.contains("link.created")
            && audit.contains("claim.merged"),
        "{audit}"
    );
}

/// A strong proof of an old number meets a weak binding of the number the registry maps
/// it to: the citizen is asked, as about a weak binding of the number itself, and proving
/// the old account keeps its `sub` (nothing is suspended behind the citizen's back).
#[tokio::test]
async fn a_weak_binding_of_the_mapped_number_is_asked_about_too() {
    let broker = Broker::start(options(registry()));
    // An's old account is linked to her CCCD after the registry check.
    let old = Browser::new(&broker);
    let (verifier, location) = basic_sign_in(&old, "legacy", "an-old").await;
    let page = page_at(&old, location, "link page").await;
    let location = link_an_number(&broker, &old, &page).await;
    let legacy = redeem(
        &broker,
        "rp-basic",
        "http://localhost:9/cb",
        &location.expect("code"),
        &verifier,
    )
    .await;
    assert_eq!(legacy["citizen_id"], AN_CCCD);

    // Her bank still knows her old CMND, which the registry maps to that CCCD.
    let an = Browser::new(&broker);
    let merged = sign_in_and_prove_old_account(&broker, &an, ("bank", "an-cmnd"), "an-old").await;
    assert_eq!(merged["sub"], legacy["sub"], "one person");
    assert_eq!(merged["acr"], "http://eidas.europa.eu/LoA/substantial");
    let audit =
        std::fs::read_to_string(broker.config_path().with_file_name("audit.log")).expect("audit");
    assert!(
        audit.contains("claim.merged") && !audit.contains("binding.suspended"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_strong_proof_suspends_a_weak_binding_and_never_the_reverse() {
    let broker = Broker::start(options(registry()));
    // Mallory knows An's number, name and birth date and links them to her old account.
    let mallory = Browser::new(&broker);
    let (_, location) = sign_in(
        &mallory,
        "rp-basic",
        "http://localhost:9/cb",
        "legacy",
        "mallory",
    )
    .await;
    let page = page_at(&mallory, location, "link page").await;
    let location = link_an_number(&broker, &mallory, &page).await;
    let mallory_code = code_of_location(&location.expect("a redirect"));
    assert!(!mallory_code.is_empty());

    // An proves the number with her bank card and says the old account is not hers.
    let an = Browser::new(&broker);
    let (verifier, challenge) = pkce();
    let choice = an
        .login_page(
            an.authorize(&auth_params(
                "rp-basic",
                "http://localhost:9/cb",
                "openid profile citizen_id",
                &challenge,
            ))
            .await,
        )
        .await;
    let form = an.choose(&choice, "bank").await;
    let (_, location, _) = an.follow(an.submit_password(&form, "an", "pw").await).await;
    let claim = page_at(&an, location, "claim page").await;
    let csrf = hidden(&claim, "csrf").expect("csrf");
    let resp = an
        .post(
            &broker.url(&form_action(&claim, "claim")),
            &[("csrf", &csrf), ("choice", "not_mine")],
        )
        .await;
    let (_, location, _) = an.follow(resp).await;
    let notice = page_at(&an, location, "notice").await;
    assert!(
        notice.contains("That link has been suspended"),
        "the citizen is told: {notice}"
    );
    let csrf = hidden(&notice, "csrf").expect("csrf");
    let resp = an
        .post(
            &broker.url(&form_action(&notice, "continue")),
            &[("csrf", &csrf)],
        )
        .await;
    let (_, location, _) = an.follow(resp).await;
    let an_claims = redeem(
        &broker,
        "rp-basic",
        "http://localhost:9/cb",
        &location.expect("code"),
        &verifier,
    )
    .await;
    assert_eq!(an_claims["citizen_id"], AN_CCCD);

    // Mallory's old account lost the number, and a weaker check cannot take it back.
    let mallory = Browser::new(&broker);
    let (_, location) = sign_in(
        &mallory,
        "rp-basic",
        "http://localhost:9/cb",
        "legacy",
        "mallory",
    )
    .await;
    let page = page_at(&mallory, location, "link page again").await;
    assert!(page.contains("f-citizen_id"), "no number any more: {page}");
    let location = link_an_number(&broker, &mallory, &page).await;
    let page = page_at(&mallory, location, "link page").await;
    assert!(page.contains("already linked to another account"), "{page}");

    let audit =
        std::fs::read_to_string(broker.config_path().with_file_name("audit.log")).expect("audit");
    assert!(
        audit.contains("binding.suspended") && audit.contains("link.refused"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_weaker_session_is_stepped_up_for_a_platform_that_needs_high() {
    let broker = Broker::start(options(registry()));
    let browser = Browser::new(&broker);
    let first = login_claims(
        &broker,
        &browser,
        "rp-basic",
        "http://localhost:9/cb",
        "bank",
        "an",
    )
    .await;
    assert_eq!(first["acr"], "http://eidas.europa.eu/LoA/substantial");

    let (verifier, challenge) = pkce();
    // VNeID is the only way strong enough: the login goes straight to it.
    let form = browser
        .login_page(
            browser
                .authorize(&auth_params(
                    "rp-high",
                    "http://localhost:9/high-cb",
                    "openid",
                    &challenge,
                ))
                .await,
        )
        .await;
    assert!(
        form.contains("name=\"password\""),
        "VNeID's own step: {form}"
    );
    assert!(
        !form.contains("use-bank") && !form.contains("use-test-citizens"),
        "weaker ways hidden: {form}"
    );
    let (_, location, _) = browser
        .follow(browser.submit_password(&form, "an", "pw").await)
        .await;
    let high = redeem(
        &broker,
        "rp-high",
        "http://localhost:9/high-cb",
        &location.expect("code"),
        &verifier,
    )
    .await;
    assert_eq!(high["acr"], "http://eidas.europa.eu/LoA/high");
    assert_eq!(high["amr"], serde_json::json!(["face"]));
    assert!(high["auth_time"].as_u64() >= first["auth_time"].as_u64());
    // The same session, raised: the first platform still sees its own session id.
    let (verifier, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("prompt", "none"));
    let (_, location, _) = browser.follow(browser.authorize(&params).await).await;
    let again = redeem(
        &broker,
        "rp-basic",
        "http://localhost:9/cb",
        &location.expect("code"),
        &verifier,
    )
    .await;
    assert_eq!(again["sid"], first["sid"], "the same session, raised");
    assert_ne!(high["sid"], first["sid"], "each platform has its own sid");

    // prompt=none at a high platform with only a substantial session cannot be silent.
    let other = Browser::new(&broker);
    login_claims(
        &broker,
        &other,
        "rp-basic",
        "http://localhost:9/cb",
        "bank",
        "an",
    )
    .await;
    let mut params = auth_params(
        "rp-high",
        "http://localhost:9/high-cb",
        "openid",
        &challenge,
    );
    params.push(("prompt", "none"));
    let (_, location, _) = other.follow(other.authorize(&params).await).await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("error").as_deref(), Some("login_required"));
}

#[tokio::test]
async fn a_platform_that_requires_a_number_gets_no_login_without_one() {
    let broker = Broker::start(options(registry()));
    let browser = Browser::new(&broker);
    let (_, location) = sign_in(
        &browser,
        "rp-needs-id",
        "http://localhost:9/id-cb",
        "legacy",
        "lan-old",
    )
    .await;
    let page = page_at(&browser, location, "link page").await;
    assert!(page.contains("f-citizen_id"));
    assert!(!page.contains("id=\"skip\""), "no Skip for this platform");
    // Even a forged skip does not get through.
    let csrf = hidden(&page, "csrf").expect("csrf");
    let resp = browser
        .post(
            &broker.url(&form_action(&page, "link")),
            &[("csrf", &csrf), ("action", "skip")],
        )
        .await;
    let (_, location, _) = browser.follow(resp).await;
    assert!(
        location.expect("location").contains("/login/"),
        "back to the link page, no code"
    );
    // Silent SSO cannot skip it either.
    let (_, challenge) = pkce();
    let mut params = auth_params(
        "rp-needs-id",
        "http://localhost:9/id-cb",
        "openid",
        &challenge,
    );
    params.push(("prompt", "none"));
    let (_, location, _) = browser.follow(browser.authorize(&params).await).await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("error").as_deref(), Some("interaction_required"));
    // Linking lets the login through.
    let resp = browser
        .post(
            &broker.url(&form_action(&page, "link")),
            &[
                ("csrf", &csrf),
                ("action", "link"),
                ("citizen_id", "001195006789"),
                ("name", "Trần Thị Lan"),
                ("birthdate", "1995-11-02"),
            ],
        )
        .await;
    let (_, location, _) = browser.follow(resp).await;
    assert!(location
        .expect("location")
        .starts_with("http://localhost:9/id-cb?code="));
}

#[tokio::test]
async fn an_essential_acr_claim_asks_for_the_level_too() {
    let broker = Broker::start(options(registry()));
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    let claims =
        r#"{"id_token":{"acr":{"essential":true,"values":["http://eidas.europa.eu/LoA/high"]}}}"#;
    params.push(("claims", claims));
    // Only VNeID reaches the level asked: straight to it.
    let form = browser.login_page(browser.authorize(&params).await).await;
    assert!(
        form.contains("name=\"password\"") && !form.contains("use-bank"),
        "{form}"
    );
    params.retain(|(k, _)| *k != "claims");
    params.push(("claims", "not json"));
    let (_, location, _) = browser.follow(browser.authorize(&params).await).await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("error").as_deref(), Some("invalid_request"));
}

mod on_postgres;
