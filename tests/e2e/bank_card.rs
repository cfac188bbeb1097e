//! The `bank-card` connector end to end: the real broker binary, the simulated banks and
//! SMS gateway as real HTTP services. The happy path, each failure of the Shenzhen FAQ with
//! its remedies, one-time-code brute force, and rate limits that switching the phone, the
//! ID number or the address does not escape.

use crate::harness::*;
use crate::sims::{self, Sim};

const WEI_NAME: &str = "王伟";
const WEI_ID: &str = "110101199003074517";
const WEI_PHONE: &str = "+8613800138000";
const WEI_ICBC: &str = "6222020200112345679";
const WEI_CMBC: &str = "6226220044005678906";
const WEI_CREDIT: &str = "4392250055006789018";
const WEI_FROZEN: &str = "6217990066007890129";
const UNKNOWN_BOCOM: &str = "6222600088009012348";
const VISA: &str = "4111111111111111";
const BINH: (&str, &str, &str, &str) = (
    "Lê Văn Bình",
    "036089004321",
    "6228480033004567898",
    "+84987654321",
);
const LAN: (&str, &str, &str, &str) = (
    "Trần Thị Lan",
    "001195006789",
    "6216610002003456781",
    "+84912345678",
);

/// What one test needs: the simulators, the hash key file and the broker.
pub struct Setup {
    pub banks: Sim,
    pub sms: Sim,
    _key: tempfile::TempDir,
    pub broker: Broker,
}

/// The `bank-card` connector's configuration for the test simulators. `tweak` is TOML
/// appended to `[connectors.settings]` (limits, cooldown).
pub fn connector_toml(banks: &Sim, sms: &Sim, key_path: &str, tweak: &str) -> String {
    // The API keys come from files too, beside the hash key.
    let dir = std::path::Path::new(key_path)
        .parent()
        .expect("key folder")
        .to_path_buf();
    std::fs::write(dir.join("bank.key"), sims::BANK_API_KEY).expect("bank key");
    std::fs::write(dir.join("sms.key"), sims::SMS_API_KEY).expect("sms key");
    format!(
        r#"
[[connectors]]
id = "bank"
type = "bank-card"
name = {{ en = "Bank card and SMS code", zh = "银行卡和短信验证码" }}

[connectors.settings]
hash_key = {{ file = "{key_path}" }}
verification = {{ url = "{banks}", timeout_ms = 3000, api_key = {{ file = "{dir}/bank.key" }} }}
hotline = "12333"
phone_country_code = "86"
{tweak}

[connectors.settings.sms]
kind = "http"
url = "{sms}/send"
api_key = {{ file = "{dir}/sms.key" }}

[[connectors.settings.banks]]
id = "icbc"
name = {{ en = "ICBC", zh = "工商银行" }}
bins = ["622202"]

[[connectors.settings.banks]]
id = "ccb"
name = {{ en = "China Construction Bank", zh = "建设银行" }}
bins = ["621700"]

[[connectors.settings.banks]]
id = "boc"
name = {{ en = "Bank of China", zh = "中国银行" }}
bins = ["621661"]

[[connectors.settings.banks]]
id = "abc"
name = {{ en = "Agricultural Bank of China", zh = "农业银行" }}
bins = ["622848"]

[[connectors.settings.banks]]
id = "cmb"
name = {{ en = "China Merchants Bank", zh = "招商银行" }}
bins = ["621483", "439225"]

[[connectors.settings.banks]]
id = "psbc"
name = {{ en = "Postal Savings Bank of China", zh = "邮储银行" }}
bins = ["621799"]

[[connectors.settings.banks]]
id = "bocom"
name = {{ en = "Bank of Communications", zh = "交通银行" }}
bins = ["622260"]

[[connectors.settings.banks]]
id = "cmbc"
name = {{ en = "China Minsheng Bank", zh = "民生银行" }}
bins = ["622622"]
status = "upgrading"
message = {{ en = "Its connection is still being upgraded.", zh = "该行系统正在改造中。" }}
"#,
        banks = banks.url,
        sms = sms.url,
        dir = dir.display(),
    )
}

impl Setup {
    pub fn start(tweak: &str, top: &str) -> Setup {
        let banks = sims::banks();
        let sms = sims::sms();
        let (key, key_path) = sims::secret_file("hash-key-for-bank-card-tests-0123456789");
        let extra = connector_toml(&banks, &sms, &key_path, tweak);
        let broker = Broker::start(Options {
            extra,
            top: top.into(),
            ..Options::default()
        });
        Setup {
            banks,
            sms,
            _key: key,
            broker,
        }
    }
}

/// The citizen's browser in one bank-card login; `address` is sent as `X-Forwarded-For`.
pub struct Flow<'a> {
    pub browser: Browser,
    pub broker: &'a Broker,
    pub tx: String,
    pub csrf: String,
    pub address: Option<String>,
    pub verifier: String,
}

/// What a step led to.
#[derive(Debug)]
pub enum Outcome {
    /// A page of the login (form with or without a problem).
    Page(String),
    /// A failure page (status, html).
    Failure(u16, String),
    /// Back at the platform.
    Done(String),
}

impl<'a> Flow<'a> {
    pub async fn begin(broker: &'a Broker, lang: &str, address: Option<&str>) -> Flow<'a> {
        let browser = Browser::new(broker);
        let (verifier, challenge) = pkce();
        let mut params = auth_params(
            "rp-basic",
            "http://localhost:9/cb",
            "openid profile phone citizen_id",
            &challenge,
        );
        params.push(("ui_locales", lang));
        let choice = browser.login_page(browser.authorize(&params).await).await;
        let page = browser.choose(&choice, "bank").await;
        assert!(page.contains("id=\"f-card_number\""), "bank form: {page}");
        Flow {
            tx: tx_path(&page).expect("tx"),
            csrf: hidden(&page, "csrf").expect("csrf"),
            browser,
            broker,
            address: address.map(str::to_string),
            verifier,
        }
    }

    async fn post(&self, form: &[(&str, &str)]) -> Outcome {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(form);
        let mut req = self
            .browser
            .http
            .post(self.broker.url(&format!("{}/step", self.tx)))
            .form(&all);
        if let Some(a) = &self.address {
            req = req.header("x-forwarded-for", a);
        }
        let resp = req.send().await.expect("POST step");
        let (status, location, body) = self.browser.follow(resp).await;
        match (status, location) {
            (303, Some(l)) if l.contains("/login/") => {
                let html = self.browser.get(&l).await.text().await.expect("page");
                Outcome::Page(html)
            }
            (303, Some(l)) => Outcome::Done(l),
            (s, _) => Outcome::Failure(s, body),
        }
    }

    pub async fn details(&self, name: &str, id: &str, card: &str, phone: &str) -> Outcome {
        self.post(&[
            ("name", name),
            ("id_number", id),
            ("card_number", card),
            ("phone", phone),
        ])
        .await
    }

    pub async fn code(&self, code: &str) -> Outcome {
        self.post(&[("code", code)]).await
    }

    pub async fn resend(&self) -> Outcome {
        self.post(&[("code", ""), ("resend", "1")]).await
    }

    /// Redeems the code of the platform callback; returns the ID token's claims.
    pub async fn claims(&self, location: &str) -> serde_json::Value {
        let url = url::Url::parse(location).expect("callback URL");
        let code = url
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {location}"));
        let (status, body, _) = token_basic(
            self.broker,
            "rp-basic",
            RP_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://localhost:9/cb"),
                ("code_verifier", &self.verifier),
            ],
        )
        .await;
        assert_eq!(status, 200, "token response: {body}");
        verify_with_jwks(
            self.broker,
            body["id_token"].as_str().expect("id_token"),
            "rp-basic",
        )
        .await
    }
}

pub fn page(o: &Outcome) -> &str {
    match o {
        Outcome::Page(h) => h,
        other => panic!("expected a login page, got {other:?}"),
    }
}

fn problem(o: &Outcome) -> String {
    sims::element_text(page(o), "problem").unwrap_or_else(|| panic!("no problem shown: {o:?}"))
}

fn failure(o: &Outcome) -> (u16, String) {
    match o {
        Outcome::Failure(s, h) => (
            *s,
            format!(
                "{} {}",
                sims::element_text(h, "message").unwrap_or_default(),
                sims::element_text(h, "hint").unwrap_or_default()
            ),
        ),
        other => panic!("expected a failure page, got {other:?}"),
    }
}

#[tokio::test]
async fn a_citizen_verifies_with_a_card_and_the_sms_code() {
    let s = Setup::start("", "");
    let flow = Flow::begin(&s.broker, "en", None).await;
    let first = flow
        .details(WEI_NAME, WEI_ID, "6222 0202 0011 2345 679", "138 0013 8000")
        .await;
    let html = page(&first);
    assert!(html.contains("id=\"f-code\""), "code form: {html}");
    let notice = sims::element_text(html, "notice").expect("notice");
    assert!(
        notice.contains("8000") && !notice.contains("13800138000"),
        "masked phone: {notice}"
    );
    assert!(html.contains("id=\"resend\""), "a resend button");
    let code = sims::latest_code(&s.sms, WEI_PHONE)
        .await
        .expect("the SMS arrived");
    let done = flow.code(&code).await;
    let Outcome::Done(location) = done else {
        panic!("expected the platform callback, got {done:?}")
    };
    let claims = flow.claims(&location).await;
    assert_eq!(claims["name"], WEI_NAME);
    assert_eq!(claims["citizen_id"], WEI_ID);
    assert_eq!(claims["phone_number"], WEI_PHONE);
    assert_eq!(claims["acr"], "http://eidas.europa.eu/LoA/substantial");
    let amr: Vec<&str> = claims["amr"]
        .as_array()
        .expect("amr")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(amr.contains(&"sms") && amr.contains(&"otp"), "amr {amr:?}");

    // The code is single use.
    let flow2 = Flow::begin(&s.broker, "en", None).await;
    let _ = flow2.details(WEI_NAME, WEI_ID, WEI_ICBC, WEI_PHONE).await;
    let stale = flow2.code(&code).await;
    let newer = sims::latest_code(&s.sms, WEI_PHONE)
        .await
        .expect("second SMS");
    if newer != code {
        assert!(problem(&stale).contains("not correct"), "{stale:?}");
    }

    // Neither the logs nor the store hold the card number, the code, the ID number or the
    // phone number in clear.
    let logs = s.broker.settled_log_text().await;
    for secret in [WEI_ICBC, "6222 0202", code.as_str(), WEI_ID, "13800138000"] {
        assert!(
            !logs.contains(secret),
            "`{secret}` reached the logs:\n{logs}"
        );
    }
    assert!(
        logs.contains("bank verification answered"),
        "an operator log line: {logs}"
    );
    let store = std::fs::read(
        s.broker
            .config_path()
            .parent()
            .expect("dir")
            .join("broker.redb"),
    )
    .expect("store file");
    let text = String::from_utf8_lossy(&store);
    assert!(!text.contains(WEI_ICBC), "the card number was stored");
    assert!(
        !text.contains(&format!("\"{code}\"")),
        "the code was stored in clear"
    );
    // Rate-limit counters of the login steps count per address, under a keyed hash of it.
    assert!(text.contains("rl:step:"), "a step counter exists");
    assert!(
        !text.contains(":127.0.0.1"),
        "a client address was stored in clear"
    );

    // Operators see the SMS codes sent.
    let metrics = reqwest::get(s.broker.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("broker_sms_total{outcome=\"sent\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn each_faq_failure_has_its_message_and_remedies() {
    let s = Setup::start("", "[admin]\ntoken = { env = \"TEST_ADMIN_TOKEN\" }\n");
    // Unsupported bank: the list of partner banks.
    let flow = Flow::begin(&s.broker, "en", None).await;
    let o = flow.details(WEI_NAME, WEI_ID, VISA, WEI_PHONE).await;
    let p = problem(&o);
    assert!(
        p.contains("Use a debit card of one of these banks")
            && p.contains("ICBC")
            && !p.contains("Minsheng"),
        "{p}"
    );
    // Being upgraded: the bank's message and the others.
    let o = flow.details(WEI_NAME, WEI_ID, WEI_CMBC, WEI_PHONE).await;
    let p = problem(&o);
    assert!(
        p.contains("China Minsheng Bank")
            && p.contains("still being upgraded")
            && p.contains("ICBC"),
        "{p}"
    );
    // Credit card: debit cards only.
    let o = flow.details(WEI_NAME, WEI_ID, WEI_CREDIT, WEI_PHONE).await;
    assert!(problem(&o).contains("Credit cards cannot be used"), "{o:?}");
    // A blocked card.
    let o = flow.details(WEI_NAME, WEI_ID, WEI_FROZEN, WEI_PHONE).await;
    assert!(problem(&o).contains("blocked or closed"), "{o:?}");
    // The form is filled in again, except the card number.
    let html = page(&o);
    assert!(
        html.contains(WEI_NAME) && !html.contains(WEI_FROZEN),
        "refill without the card"
    );

    // A card the bank does not know, and a typo (Luhn).
    let flow = Flow::begin(&s.broker, "en", None).await;
    let o = flow
        .details(WEI_NAME, WEI_ID, UNKNOWN_BOCOM, WEI_PHONE)
        .await;
    assert!(problem(&o).contains("does not know this card"), "{o:?}");
    let o = flow
        .details(WEI_NAME, WEI_ID, "6222020200112345678", WEI_PHONE)
        .await;
    assert!(problem(&o).contains("not valid"), "{o:?}");

    // Name, ID or phone not matching the bank's records: the FAQ's four remedies, in
    // Chinese too.
    let (name, id, card, phone) = BINH;
    let o = flow.details(name, id, card, phone).await;
    let p = problem(&o);
    for remedy in [
        "Check that what you entered",
        "another partner bank",
        "update your details",
        "12333",
    ] {
        assert!(p.contains(remedy), "`{remedy}` missing: {p}");
    }
    let zh = Flow::begin(&s.broker, "zh", None).await;
    let o = zh.details(name, id, card, phone).await;
    let p = problem(&o);
    assert!(
        p.contains("不匹配") && p.contains("12333") && p.contains("农业银行"),
        "{p}"
    );

    // Bank down: try later, another bank's card, or another way.
    sims::control(
        &s.banks,
        "/control/outage",
        serde_json::json!({"bank": "boc", "down": true}),
    )
    .await;
    let flow = Flow::begin(&s.broker, "en", None).await;
    let (name, id, card, phone) = LAN;
    let o = flow.details(name, id, card, phone).await;
    let p = problem(&o);
    assert!(
        p.contains("Bank of China cannot be reached") && p.contains("another way"),
        "{p}"
    );
    assert!(s.broker.wait_for_log("bank verification unavailable", 1));
    // One bank down concerns its cards only: the choice page warns nobody; operators see
    // which bank.
    let choice = Browser::new(&s.broker).choice_page().await;
    assert!(!choice.contains("id=\"trouble-bank\""), "{choice}");
    assert_eq!(
        connector_health(&s.broker, "bank").await,
        (
            "degraded".to_string(),
            "verification of bank boc: status 503".to_string()
        )
    );

    // SMS gateway congested: the login cannot go on through this source right now.
    sims::control(
        &s.sms,
        "/control/congested",
        serde_json::json!({"congested": true}),
    )
    .await;
    let o = flow.details(WEI_NAME, WEI_ID, WEI_ICBC, WEI_PHONE).await;
    let (status, text) = failure(&o);
    assert_eq!(status, 502);
    assert!(
        text.contains("not available right now") && text.contains("another way"),
        "{text}"
    );
    // No code can be sent: the next citizens are told before they choose it.
    let choice = Browser::new(&s.broker).choice_page().await;
    assert!(choice.contains("id=\"trouble-bank\""), "{choice}");
    let (status, reason) = connector_health(&s.broker, "bank").await;
    assert_eq!(status, "degraded");
    assert!(reason.starts_with("SMS gateway: "), "{reason}");
}

#[tokio::test]
async fn a_lost_sms_is_resent_after_the_cooldown() {
    // A long cooldown: a resend is refused with the time to wait.
    let s = Setup::start("resend_cooldown_seconds = 120", "");
    sims::control(
        &s.sms,
        "/control/drop",
        serde_json::json!({"to": WEI_PHONE, "count": 1}),
    )
    .await;
    let flow = Flow::begin(&s.broker, "en", None).await;
    let o = flow.details(WEI_NAME, WEI_ID, WEI_ICBC, WEI_PHONE).await;
    assert!(page(&o).contains("id=\"f-code\""));
    assert!(
        sims::sms_to(&s.sms, WEI_PHONE).await.is_empty(),
        "the first SMS was lost"
    );
    let o = flow.resend().await;
    let p = problem(&o);
    assert!(p.contains("Please wait") && p.contains("seconds"), "{p}");
    assert!(
        sims::sms_to(&s.sms, WEI_PHONE).await.is_empty(),
        "no SMS during the cooldown"
    );

    // No cooldown: the resent code arrives and works.
    let s = Setup::start("resend_cooldown_seconds = 0", "");
    sims::control(
        &s.sms,
        "/control/drop",
        serde_json::json!({"to": WEI_PHONE, "count": 1}),
    )
    .await;
    let flow = Flow::begin(&s.broker, "es", None).await;
    let _ = flow.details(WEI_NAME, WEI_ID, WEI_ICBC, WEI_PHONE).await;
    assert!(sims::sms_to(&s.sms, WEI_PHONE).await.is_empty());
    let o = flow.resend().await;
    assert!(problem(&o).contains("código nuevo"), "{o:?}");
    let code = sims::latest_code(&s.sms, WEI_PHONE)
        .await
        .expect("the resent SMS");
    assert!(
        sims::sms_to(&s.sms, WEI_PHONE).await[0].contains("código"),
        "SMS in Spanish"
    );
    assert!(matches!(flow.code(&code).await, Outcome::Done(_)));
}

fn wrong_code(right: &str) -> &'static str {
    if right == "000000" {
        "111111"
    } else {
        "000000"
    }
}

#[tokio::test]
async fn guessing_the_code_is_stopped() {
    let s = Setup::start(
        "resend_cooldown_seconds = 0\nmax_code_attempts = 3\n[connectors.settings.limits]\nwindow_seconds = 3600\nverifications = { per_id = 20, per_phone = 20, per_address = 50 }\nsms = { per_id = 20, per_phone = 20, per_address = 50 }\nwrong_codes = { per_id = 4, per_phone = 4, per_address = 50 }",
        "",
    );
    let flow = Flow::begin(&s.broker, "en", None).await;
    let _ = flow.details(WEI_NAME, WEI_ID, WEI_ICBC, WEI_PHONE).await;
    let code = sims::latest_code(&s.sms, WEI_PHONE).await.expect("SMS");
    let bad = wrong_code(&code);
    assert!(problem(&flow.code(bad).await).contains("Attempts left for this code: 2"));
    assert!(problem(&flow.code(bad).await).contains("Attempts left for this code: 1"));
    assert!(problem(&flow.code(bad).await).contains("no longer works"));
    // The right code is dead once the attempts are used up.
    let o = flow.code(&code).await;
    assert!(problem(&o).contains("expired or was already used"), "{o:?}");

    // A new login with the same phone: two more wrong codes reach the per-phone limit of
    // wrong codes, and the citizen is told when to try again.
    let flow = Flow::begin(&s.broker, "en", None).await;
    let _ = flow.details(WEI_NAME, WEI_ID, WEI_ICBC, WEI_PHONE).await;
    let code = sims::latest_code(&s.sms, WEI_PHONE).await.expect("SMS");
    let bad = wrong_code(&code);
    assert!(problem(&flow.code(bad).await).contains("Attempts left"));
    let (status, text) = failure(&flow.code(bad).await);
    assert_eq!(status, 429, "paused for the citizen's safety: a 4xx");
    assert!(
        text.contains("Try again in") && text.contains("minutes"),
        "{text}"
    );
    // Locked: even a fresh login with the right details gets no code.
    let before = sims::sms_to(&s.sms, WEI_PHONE).await.len();
    let flow = Flow::begin(&s.broker, "en", None).await;
    let (_, text) = failure(&flow.details(WEI_NAME, WEI_ID, WEI_ICBC, WEI_PHONE).await);
    assert!(text.contains("paused"), "{text}");
    assert_eq!(
        sims::sms_to(&s.sms, WEI_PHONE).await.len(),
        before,
        "no SMS while locked"
    );
}

#[tokio::test]
async fn switching_phone_id_or_address_does_not_escape_the_limits() {
    // Addresses come from X-Forwarded-For here, so the test can switch them.
    let s = Setup::start(
        "[connectors.settings.limits]\nwindow_seconds = 3600\nverifications = { per_id = 3, per_phone = 3, per_address = 6 }\nsms = { per_id = 5, per_phone = 5, per_address = 20 }\nwrong_codes = { per_id = 5, per_phone = 5, per_address = 20 }",
        "trust_forwarded_for = true",
    );
    let b = &s.broker;
    // One ID number, a new phone and a new address each time (all wrong phones).
    for i in 0..3 {
        let flow = Flow::begin(b, "en", Some(&format!("198.51.100.{i}"))).await;
        let o = flow
            .details(WEI_NAME, WEI_ID, WEI_ICBC, &format!("+86139000000{i:02}"))
            .await;
        assert!(problem(&o).contains("do not match"), "{o:?}");
    }
    let flow = Flow::begin(b, "en", Some("198.51.100.50")).await;
    let (_, text) = failure(
        &flow
            .details(WEI_NAME, WEI_ID, WEI_ICBC, "+8613900000099")
            .await,
    );
    assert!(
        text.contains("Try again in"),
        "fourth try on one ID number: {text}"
    );
    // The ID number is locked even with the right phone, from yet another address.
    let flow = Flow::begin(b, "en", Some("198.51.100.60")).await;
    let (_, text) = failure(&flow.details(WEI_NAME, WEI_ID, WEI_ICBC, WEI_PHONE).await);
    assert!(text.contains("paused"), "{text}");

    // One phone, a new ID number each time, new addresses: the phone gets locked.
    let phone = "+84900000001";
    for i in 0..3 {
        let flow = Flow::begin(b, "en", Some(&format!("203.0.113.{i}"))).await;
        let o = flow
            .details("Người Lạ", &format!("07920100{i:04}"), WEI_ICBC, phone)
            .await;
        assert!(problem(&o).contains("do not match"), "{o:?}");
    }
    let flow = Flow::begin(b, "en", Some("203.0.113.9")).await;
    let (_, text) = failure(
        &flow
            .details("Người Lạ", "079201009999", WEI_ICBC, phone)
            .await,
    );
    assert!(
        text.contains("Try again in"),
        "fourth try on one phone: {text}"
    );

    // One address, new ID numbers and phones: the address gets locked, and then even the
    // right details of another citizen from that address are refused.
    let addr = "192.0.2.7";
    for i in 0..6 {
        let flow = Flow::begin(b, "en", Some(addr)).await;
        let o = flow
            .details(
                "Người Lạ",
                &format!("0010{i:08}"),
                WEI_ICBC,
                &format!("+8491000000{i}"),
            )
            .await;
        assert!(problem(&o).contains("do not match"), "{o:?}");
    }
    let flow = Flow::begin(b, "en", Some(addr)).await;
    let (name, id, card, phone) = LAN;
    let (_, text) = failure(&flow.details(name, id, card, phone).await);
    assert!(
        text.contains("Try again in"),
        "seventh try from one address: {text}"
    );
    // Lan from her own address is fine.
    let flow = Flow::begin(b, "en", Some("192.0.2.8")).await;
    let o = flow.details(name, id, card, phone).await;
    assert!(page(&o).contains("id=\"f-code\""), "{o:?}");
}

#[tokio::test]
async fn an_operator_puts_one_bank_into_maintenance() {
    let s = Setup::start(
        "",
        "audit_log = \"audit.log\"\n[admin]\ntoken = { env = \"TEST_ADMIN_TOKEN\" }\n",
    );
    let http = reqwest::Client::new();
    let url = s
        .broker
        .url("/admin/connectors/bank/parts/icbc/maintenance");
    let resp = http
        .put(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"message": {"en": "ICBC maintenance tonight", "zh": "工商银行今晚维护"}}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status().as_u16(), 204);

    let flow = Flow::begin(&s.broker, "en", None).await;
    let o = flow.details(WEI_NAME, WEI_ID, WEI_ICBC, WEI_PHONE).await;
    let p = problem(&o);
    assert!(p.contains("ICBC maintenance tonight"), "{p}");
    assert!(
        sims::latest_code(&s.sms, WEI_PHONE).await.is_none(),
        "no SMS while the bank is in maintenance"
    );

    let resp = http
        .delete(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 204);
    let o = flow.details(WEI_NAME, WEI_ID, WEI_ICBC, WEI_PHONE).await;
    assert!(page(&o).contains("id=\"f-code\""), "back in service: {o:?}");
    let audit =
        std::fs::read_to_string(s.broker.config_path().with_file_name("audit.log")).expect("audit");
    assert!(
        audit.contains("admin.maintenance_on") && audit.contains("bank/icbc"),
        "{audit}"
    );
}

/// One person across ways in, with the bank simulator: a bank-card login and a
/// test-citizens login that both prove An's number give the platform one `sub`.
#[tokio::test]
async fn a_bank_card_login_and_another_source_give_one_sub() {
    let s = Setup::start("", "");
    let flow = Flow::begin(&s.broker, "en", None).await;
    let first = flow
        .details(
            "Nguyễn Văn An",
            "079201001234",
            "6217000010012345677",
            "+84901234567",
        )
        .await;
    assert!(page(&first).contains("id=\"f-code\""), "{first:?}");
    let code = sims::latest_code(&s.sms, "+84901234567")
        .await
        .expect("the SMS arrived");
    let Outcome::Done(location) = flow.code(&code).await else {
        panic!("expected the platform callback")
    };
    let bank = flow.claims(&location).await;
    let other = tokens_for(
        &s.broker,
        &Browser::new(&s.broker),
        "rp-basic",
        "http://localhost:9/cb",
        "openid",
    )
    .await;
    let other = payload(other["id_token"].as_str().expect("id_token"));
    assert_eq!(
        bank["sub"], other["sub"],
        "one person, one sub at this platform"
    );
    assert_eq!(bank["acr"], "http://eidas.europa.eu/LoA/substantial");
}
