//! One person across every way in (the scenarios of `persons.rs`), with the real simulators
//! of the repository as the identity sources instead of stand-in `test-citizens`
//! connectors and a registry stub: the banks and SMS gateway, VNeID, CTID, the old portal's
//! API and the population registry, over HTTP beside the real broker binary. The citizens
//! are the simulators' own (`simulators::people`).

use serde_json::Value;
use simulators::people::{person, Person};

use crate::harness::*;
use crate::sims::{self, Sim};
use crate::{bank_card, ctid, legacy, upstream_oidc};

const LOW: &str = "http://eidas.europa.eu/LoA/low";
const SUBSTANTIAL: &str = "http://eidas.europa.eu/LoA/substantial";
const HIGH: &str = "http://eidas.europa.eu/LoA/high";

/// A platform of the test configuration.
struct Platform {
    id: &'static str,
    redirect: &'static str,
    scope: &'static str,
}

const BASIC: Platform = Platform {
    id: "rp-basic",
    redirect: "http://localhost:9/cb",
    scope: "openid profile citizen_id",
};
const OTHER: Platform = Platform {
    id: "rp-other",
    redirect: "http://127.0.0.1:9/cb",
    scope: "openid profile",
};
const E_SIGNATURE: Platform = Platform {
    id: "rp-high",
    redirect: "http://localhost:9/high-cb",
    scope: "openid profile citizen_id",
};

const HIGH_CLIENT: &str = r#"
[[clients]]
id = "rp-high"
name = "E-signature"
redirect_uris = ["http://localhost:9/high-cb"]
secret = { env = "TEST_RP_SECRET" }
scopes = ["openid", "profile", "citizen_id"]
min_assurance = "high"
"#;

/// Every simulator, and a broker with one connector per simulated source and the
/// simulated registry.
struct World {
    broker: Broker,
    sms: Sim,
    _others: Vec<Sim>,
    _keys: tempfile::TempDir,
}

impl World {
    fn start() -> World {
        let keys = tempfile::tempdir().expect("tempdir");
        let file = |name: &str, content: &str| {
            let path = keys.path().join(name);
            std::fs::write(&path, content).expect("write key file");
            path.display().to_string()
        };
        let sim = || {
            let port = free_port();
            (
                port,
                format!("127.0.0.1:{port}"),
                format!("http://127.0.0.1:{port}"),
            )
        };
        let banks = sims::banks();
        let sms = sims::sms();
        let (port, addr, ctid_url) = sim();
        let ctid_sim = sims::spawn(
            simulators::ctid::serve(&addr, &ctid_url, Some(ctid::CTID_API_KEY.into()))
                .expect("CTID simulator binds"),
            port,
        );
        let (port, addr, _) = sim();
        let portal = sims::spawn(
            simulators::legacy::serve(&addr, None).expect("old portal simulator binds"),
            port,
        );
        let (port, addr, _) = sim();
        let registry = sims::spawn(
            simulators::registry::serve(&addr).expect("registry binds"),
            port,
        );
        // VNeID sends citizens back to the broker: its port must be known first.
        let broker_port = free_port();
        let (port, addr, vneid_url) = sim();
        let vneid = sims::spawn(
            simulators::vneid::serve(
                &addr,
                &vneid_url,
                vec![simulators::vneid::Client {
                    id: "broker-e2e".into(),
                    secret: RP_SECRET.into(),
                    redirect_uris: vec![format!("http://127.0.0.1:{broker_port}/callback/vneid")],
                }],
            )
            .expect("VNeID simulator binds"),
            port,
        );

        let extra = [
            bank_card::connector_toml(
                &banks,
                &sms,
                &file("bank-hash.key", "hash-key-for-bank-card-tests-0123456789"),
                "",
            ),
            ctid::connector_toml(&ctid_url, &file("ctid.key", ctid::CTID_API_KEY)),
            legacy::connector_toml(
                &file(
                    "legacy-hash.key",
                    "hash-key-for-legacy-tests-0123456789abcdef",
                ),
                "2099-12-31",
                &format!("api = {{ url = \"{}\", timeout_ms = 3000 }}", portal.url),
                "",
            ),
            upstream_oidc::VNEID_CONNECTOR.replace("ISSUER", &vneid_url),
            HIGH_CLIENT.to_string(),
        ]
        .concat();
        let broker = Broker::start(Options {
            port: Some(broker_port),
            top: format!(
                "audit_log = \"audit.log\"\n[registry]\nurl = \"{}\"\n",
                registry.url
            ),
            extra,
            ..Options::default()
        });
        World {
            broker,
            sms,
            _others: vec![banks, ctid_sim, portal, registry, vneid],
            _keys: keys,
        }
    }

    /// The `fields` of the audit events named `event`.
    fn audit(&self, event: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.broker.config_path().with_file_name("audit.log"))
            .expect("audit log");
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|l| l["fields"].clone())
            .filter(|f| f["event"] == event)
            .collect()
    }
}

/// A test citizen of the simulators.
fn citizen(key: &str) -> &'static Person {
    person(key).unwrap_or_else(|| panic!("the simulators know {key}"))
}

/// A way in, each through its simulator.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// Bank card and the SMS code (`substantial`).
    Bank,
    /// The simulated VNeID app, level 2 (`high`).
    Vneid,
    /// CTID, approved with face verification in the simulated app (`high`).
    Ctid,
    /// The old portal's account (`low`, proves no number).
    OldPortal,
}

/// Where a request of the login led.
#[derive(Debug)]
enum Next {
    /// A page of the login (a form, the link, claim or notice page).
    Page(String),
    /// Back at the platform.
    Platform(String),
}

fn page(next: &Next) -> &str {
    match next {
        Next::Page(html) => html,
        other => panic!("expected a page of the login, got {other:?}"),
    }
}

/// One login of a browser at a platform.
struct Login<'a> {
    w: &'a World,
    browser: &'a Browser,
    platform: &'a Platform,
    verifier: String,
    tx: String,
    csrf: String,
    /// The choice page.
    choice: String,
}

impl<'a> Login<'a> {
    async fn open(w: &'a World, browser: &'a Browser, platform: &'a Platform) -> Login<'a> {
        let (verifier, challenge) = pkce();
        let params = auth_params(platform.id, platform.redirect, platform.scope, &challenge);
        let choice = browser.login_page(browser.authorize(&params).await).await;
        Login {
            w,
            browser,
            platform,
            verifier,
            tx: tx_path(&choice).expect("tx"),
            csrf: hidden(&choice, "csrf").expect("csrf"),
            choice,
        }
    }

    /// Where the browser ends up after `resp` (one page of the login is fetched).
    async fn next(&self, resp: reqwest::Response) -> Next {
        let (status, location, body) = self.browser.follow(resp).await;
        match location {
            Some(l) if status == 303 && l.contains("/login/") => {
                Next::Page(self.browser.get(&l).await.text().await.expect("page"))
            }
            Some(l) if status == 303 => Next::Platform(l),
            _ => panic!("expected a redirect, got {status}: {body}"),
        }
    }

    /// Posts a form of the login (`step`, `link`, `claim`, `continue`).
    async fn post(&self, action: &str, form: &[(&str, &str)]) -> Next {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(form);
        let url = self.w.broker.url(&format!("{}/{action}", self.tx));
        self.next(self.browser.post(&url, &all).await).await
    }

    /// Chooses `way` and signs `p` in through its simulator.
    async fn via(&self, way: Way, p: &Person) -> Next {
        match way {
            Way::Bank => {
                let form = self.browser.choose(&self.choice, "bank").await;
                assert!(form.contains("id=\"f-card_number\""), "bank form: {form}");
                let card = p.cards.first().expect("a bank card");
                let sent = self
                    .post(
                        "step",
                        &[
                            ("name", p.name),
                            ("id_number", p.citizen_id),
                            ("card_number", card.number),
                            ("phone", card.reserved_phone),
                        ],
                    )
                    .await;
                assert!(page(&sent).contains("id=\"f-code\""), "code form: {sent:?}");
                let code = sims::latest_code(&self.w.sms, card.reserved_phone)
                    .await
                    .expect("the SMS arrived");
                self.post("step", &[("code", &code)]).await
            }
            Way::OldPortal => {
                let form = self.browser.choose(&self.choice, "old-portal").await;
                assert!(
                    form.contains("id=\"f-username\""),
                    "old portal form: {form}"
                );
                self.old_account(p).await
            }
            Way::Ctid => {
                let waiting = self.browser.choose(&self.choice, "ctid").await;
                let link = ctid::attr(&waiting, "app-link", "href").expect("app link");
                ctid::app_action(
                    &link.replace("&amp;", "&"),
                    "approve",
                    &[("citizen", p.key)],
                )
                .await;
                // The waiting page's check, as its script would do, until the result is in.
                for _ in 0..100 {
                    let next = self.post("step", &[]).await;
                    if !matches!(&next, Next::Page(html) if html.contains("id=\"qr\"")) {
                        return next;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                panic!("the CTID approval never reached the broker")
            }
            Way::Vneid => {
                let form = [("csrf", self.csrf.as_str()), ("connector", "vneid")];
                let url = self.w.broker.url(&format!("{}/start", self.tx));
                let (_, location, body) = self
                    .browser
                    .follow(self.browser.post(&url, &form).await)
                    .await;
                let to_vneid = location.unwrap_or_else(|| panic!("to the simulator: {body}"));
                let back = upstream_oidc::at_simulator(&to_vneid, p.key, "login").await;
                self.next(self.browser.get(&back).await).await
            }
        }
    }

    /// The old portal's sign-in form, filled in with `p`'s account.
    async fn old_account(&self, p: &Person) -> Next {
        let (username, password, _) = p.legacy.expect("an old portal account");
        self.post("step", &[("username", username), ("password", password)])
            .await
    }

    /// On the claim page: "Sign in with the older account", then `p`'s old portal account.
    async fn prove_old_account(&self, p: &Person) -> Next {
        let form = self.post("claim", &[("choice", "prove")]).await;
        assert!(
            page(&form).contains("id=\"f-username\""),
            "the old portal's form: {form:?}"
        );
        self.old_account(p).await
    }

    /// Redeems the code the platform got; returns the verified ID token's claims.
    async fn claims(&self, next: Next) -> Value {
        let Next::Platform(location) = next else {
            panic!("expected the platform's callback, got {next:?}")
        };
        assert!(location.starts_with(self.platform.redirect), "{location}");
        let cb = Callback {
            url: url::Url::parse(&location).expect("callback URL"),
        };
        let code = cb
            .param("code")
            .unwrap_or_else(|| panic!("no code: {location}"));
        let (status, body, _) = token_basic(
            &self.w.broker,
            self.platform.id,
            RP_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", self.platform.redirect),
                ("code_verifier", &self.verifier),
            ],
        )
        .await;
        assert_eq!(status, 200, "token response: {body}");
        let id_token = body["id_token"].as_str().expect("id_token");
        verify_with_jwks(&self.w.broker, id_token, self.platform.id).await
    }
}

/// A whole login of `p` through `way` in a new browser, straight back to the platform.
async fn sign_in(w: &World, platform: &Platform, way: Way, p: &Person) -> Value {
    let browser = Browser::new(&w.broker);
    let login = Login::open(w, &browser, platform).await;
    login.claims(login.via(way, p).await).await
}

/// The link form's fields for `p`'s number (`id`), name and birth date.
fn link_fields<'a>(id: &'a str, p: &'a Person) -> [(&'a str, &'a str); 4] {
    [
        ("action", "link"),
        ("citizen_id", id),
        ("name", p.name),
        ("birthdate", p.birthdate),
    ]
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 1. The bank, VNeID and CTID each prove An's number: each platform sees one `sub`, and
///    two platforms see different ones.
#[tokio::test]
async fn one_citizen_through_bank_vneid_and_ctid_has_one_sub_per_platform() {
    let w = World::start();
    let an = citizen("an");
    let mut subs = Vec::new();
    for platform in [&BASIC, &OTHER] {
        for (way, acr) in [
            (Way::Bank, SUBSTANTIAL),
            (Way::Vneid, HIGH),
            (Way::Ctid, HIGH),
        ] {
            let claims = sign_in(&w, platform, way, an).await;
            assert_eq!(claims["acr"], acr, "{way:?} at {}", platform.id);
            assert_eq!(claims["name"], an.name, "{way:?}");
            subs.push((platform.id, way, claims["sub"].clone()));
        }
    }
    let (basic, other): (Vec<_>, Vec<_>) = subs.iter().partition(|(p, _, _)| *p == BASIC.id);
    for group in [&basic, &other] {
        assert!(
            group
                .iter()
                .all(|(_, _, s)| s.is_string() && *s == group[0].2),
            "one sub per platform: {subs:?}"
        );
    }
    assert_ne!(
        basic[0].2, other[0].2,
        "pairwise: different platforms, different subs"
    );
}

/// 2. An's old portal account proves no number: she skips linking it, links it later on the
///    account page (checked at the registry), and VNeID then finds that account.
#[tokio::test]
async fn an_old_account_is_linked_skipped_and_linked_later() {
    let w = World::start();
    let an = citizen("an");

    let browser = Browser::new(&w.broker);
    let login = Login::open(&w, &browser, &BASIC).await;
    let link = login.via(Way::OldPortal, an).await;
    assert!(
        page(&link).contains("id=\"f-citizen_id\"") && page(&link).contains("id=\"skip\""),
        "the number is asked for, and may be skipped: {link:?}"
    );
    let old = login
        .claims(login.post("link", &[("action", "skip")]).await)
        .await;
    assert_eq!(old["acr"], LOW);
    assert!(
        old.get("citizen_id").is_none(),
        "the number the old portal recorded is not proven: {old}"
    );

    // Later, on the account page: the registry refuses a wrong birth date, then links.
    let account = browser
        .get(&w.broker.url("/account"))
        .await
        .text()
        .await
        .expect("account page");
    assert!(account.contains("No citizen ID number"), "{account}");
    let csrf = hidden(&account, "csrf").expect("csrf");
    let link_later = |birthdate: &'static str| {
        let form = [
            ("csrf", csrf.clone()),
            ("citizen_id", an.citizen_id.to_string()),
            ("name", an.name.to_string()),
            ("birthdate", birthdate.to_string()),
        ];
        let url = w.broker.url("/account/link");
        let http = browser.http.clone();
        async move {
            let resp = http.post(url).form(&form).send().await.expect("POST");
            resp.text().await.expect("page")
        }
    };
    let wrong = link_later("1991-01-01").await;
    assert!(
        wrong.contains("does not match the population database"),
        "{wrong}"
    );
    let right = link_later(an.birthdate).await;
    let last3 = &an.citizen_id[an.citizen_id.len() - 3..];
    assert!(right.contains(&format!("ending in {last3}")), "{right}");

    // VNeID proves the number that account only knew: one sign-in with the old account
    // joins the two, and its sub stays.
    let browser = Browser::new(&w.broker);
    let login = Login::open(&w, &browser, &BASIC).await;
    let claim = login.via(Way::Vneid, an).await;
    assert!(
        page(&claim).contains("Is this older account yours?")
            && page(&claim).contains("Old portal account"),
        "names the older account's source: {claim:?}"
    );
    let merged = login.claims(login.prove_old_account(an).await).await;
    assert_eq!(merged["sub"], old["sub"], "the old account's sub stays");
    assert_eq!(merged["acr"], HIGH);
    assert_eq!(merged["citizen_id"], an.citizen_id);

    // From now on VNeID goes straight to the same person.
    let again = sign_in(&w, &BASIC, Way::Vneid, an).await;
    assert_eq!(again["sub"], old["sub"]);
    for event in ["link.skipped", "link.created", "claim.merged"] {
        assert_eq!(w.audit(event).len(), 1, "one {event} in the audit log");
    }
}

/// 3. Lan's old portal account recorded her 9-digit CMND. Linking it with that number binds
///    the 12-digit CCCD the registry maps it to, so her later proofs of the CCCD (CTID, her
///    bank card) lead to the same person and `sub`.
#[tokio::test]
async fn an_old_id_number_mapped_to_the_new_one_keeps_the_sub() {
    let w = World::start();
    let lan = citizen("lan");
    let cmnd = lan.old_id.expect("Lan's old CMND");
    assert_eq!(
        lan.legacy.and_then(|(_, _, id)| id),
        Some(cmnd),
        "the old portal recorded the CMND"
    );

    let browser = Browser::new(&w.broker);
    let login = Login::open(&w, &browser, &BASIC).await;
    let link = login.via(Way::OldPortal, lan).await;
    assert!(page(&link).contains("id=\"f-citizen_id\""), "{link:?}");
    let old = login
        .claims(login.post("link", &link_fields(cmnd, lan)).await)
        .await;
    assert_eq!(
        old["citizen_id"], lan.citizen_id,
        "the registry's current number is released, not the CMND"
    );

    // CTID proves the CCCD: it leads to the account linked with the CMND.
    let browser = Browser::new(&w.broker);
    let login = Login::open(&w, &browser, &BASIC).await;
    let claim = login.via(Way::Ctid, lan).await;
    assert!(
        page(&claim).contains("Is this older account yours?"),
        "the CCCD is already bound to the old account: {claim:?}"
    );
    let ctid = login.claims(login.prove_old_account(lan).await).await;
    assert_eq!(ctid["sub"], old["sub"]);
    assert_eq!(ctid["acr"], HIGH);
    assert_eq!(ctid["citizen_id"], lan.citizen_id);

    // Her bank card, which only knows the CCCD, goes straight there.
    let bank = sign_in(&w, &BASIC, Way::Bank, lan).await;
    assert_eq!(bank["sub"], old["sub"]);
    assert_eq!(bank["acr"], SUBSTANTIAL);
}

/// 4. Bình links his old account to An's number with details that are not secret; An's
///    bank card proves possession and suspends that link; a registry check never takes
///    the number back.
#[tokio::test]
async fn a_strong_proof_suspends_a_weak_binding_and_never_the_reverse() {
    let w = World::start();
    let (an, binh) = (citizen("an"), citizen("binh"));

    let browser = Browser::new(&w.broker);
    let login = Login::open(&w, &browser, &BASIC).await;
    let link = login.via(Way::OldPortal, binh).await;
    assert!(page(&link).contains("id=\"f-citizen_id\""), "{link:?}");
    let weak = login
        .claims(login.post("link", &link_fields(an.citizen_id, an)).await)
        .await;
    assert_eq!(weak["citizen_id"], an.citizen_id, "linked at the registry");

    // An proves the number with her bank card and says the old account is not hers.
    let browser = Browser::new(&w.broker);
    let login = Login::open(&w, &browser, &BASIC).await;
    let claim = login.via(Way::Bank, an).await;
    assert!(
        page(&claim).contains("Is this older account yours?"),
        "{claim:?}"
    );
    let notice = login.post("claim", &[("choice", "not_mine")]).await;
    let told = sims::element_text(page(&notice), "notice").expect("notice");
    assert!(told.contains("That link has been suspended"), "{told}");
    let strong = login.claims(login.post("continue", &[]).await).await;
    assert_eq!(strong["citizen_id"], an.citizen_id);
    assert_eq!(strong["acr"], SUBSTANTIAL);
    assert_ne!(
        strong["sub"], weak["sub"],
        "An is not the old account's person"
    );

    let suspended = w.audit("binding.suspended");
    assert_eq!(suspended.len(), 1, "audited once: {suspended:?}");
    assert!(
        suspended[0]["source"] == "bank"
            && suspended[0]["level"] == "substantial"
            && suspended[0]["bound_level"] == "low"
            && suspended[0]["bound_source"] == "registry"
            && suspended[0]["mapped"] == false,
        "the bank's proof suspended the registry-checked link: {suspended:?}"
    );

    // The old account lost the number, and a registry check cannot take it back.
    let browser = Browser::new(&w.broker);
    let login = Login::open(&w, &browser, &BASIC).await;
    let link = login.via(Way::OldPortal, binh).await;
    assert!(
        page(&link).contains("id=\"f-citizen_id\""),
        "asked again: {link:?}"
    );
    let refused = login.post("link", &link_fields(an.citizen_id, an)).await;
    let problem = sims::element_text(page(&refused), "problem").expect("problem");
    assert!(
        problem.contains("already linked to another account"),
        "{problem}"
    );
    assert_eq!(w.audit("link.refused").len(), 1);

    // An's bank card still leads to her.
    let again = sign_in(&w, &BASIC, Way::Bank, an).await;
    assert_eq!(again["sub"], strong["sub"]);
}

/// 5. A session verified with a bank card (`substantial`) is stepped up with CTID (`high`)
///    for a platform that requires `high`: the same session, with `acr`, `amr` and
///    `auth_time` of the CTID verification.
#[tokio::test]
async fn a_bank_card_session_is_stepped_up_with_ctid_for_a_high_platform() {
    let w = World::start();
    let an = citizen("an");
    let browser = Browser::new(&w.broker);
    let login = Login::open(&w, &browser, &BASIC).await;
    let bank = login.claims(login.via(Way::Bank, an).await).await;
    assert_eq!(bank["acr"], SUBSTANTIAL);
    assert_eq!(bank["amr"], serde_json::json!(["sms", "otp"]));
    let bank_time = bank["auth_time"].as_u64().expect("auth_time");

    let login = Login::open(&w, &browser, &E_SIGNATURE).await;
    assert!(
        login.choice.contains("stronger proof of identity")
            && login.choice.contains("id=\"use-ctid\"")
            && !login.choice.contains("id=\"use-bank\"")
            && !login.choice.contains("id=\"use-old-portal\""),
        "only ways that reach high: {}",
        login.choice
    );
    // auth_time has a one-second resolution: let the clock pass the bank login's second so
    // the CTID verification's time can be told apart from it.
    for _ in 0..100 {
        if now_secs() > bank_time {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = now_secs();
    let high = login.claims(login.via(Way::Ctid, an).await).await;
    let after = now_secs();
    assert_eq!(high["acr"], HIGH);
    assert_eq!(high["amr"], serde_json::json!(["face", "mfa"]));
    assert_ne!(high["sid"], bank["sid"], "each platform sees its own sid");
    // Both platforms' redirect URIs are on `localhost`: one sector, one pairwise sub.
    assert_eq!(high["sub"], bank["sub"], "the same person");
    let auth_time = high["auth_time"].as_u64().expect("auth_time");
    assert!(
        bank_time < before && (before..=after).contains(&auth_time),
        "auth_time {auth_time} is the CTID verification's ({before}..={after}), not the bank's {bank_time}"
    );
    let steps = w.audit("login.step_up");
    assert!(
        steps.len() == 1 && steps[0]["from"] == "substantial" && steps[0]["to"] == "high",
        "{steps:?}"
    );
}

mod on_postgres;
