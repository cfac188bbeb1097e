//! Interoperability with third-party software and the shared Redis store.

use std::process::Command;

use crate::harness::*;

#[tokio::test]
async fn redis_backed_broker_runs_the_whole_flow() {
    // Fails (never skips) when Redis is not reachable.
    let url = redis_url();
    let probe =
        std::net::TcpStream::connect(url.trim_start_matches("redis://").trim_end_matches('/'));
    assert!(
        probe.is_ok(),
        "Redis is needed at {url}: start redis-server or set REDIS_URL"
    );
    let prefix = format!("e2e-{}:", rand::random::<u64>());
    let broker = Broker::start(Options {
        redis_prefix: Some(prefix),
        ..Options::default()
    });
    let browser = Browser::new(&broker);
    let first = tokens_for(
        &broker,
        &browser,
        "rp-basic",
        "http://localhost:9/cb",
        "openid profile",
    )
    .await;
    let rt = first["refresh_token"].as_str().expect("rt");
    let (status, second, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let (status, again, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let ready = reqwest::get(broker.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
}

/// panva's `openid-client` as the relying party and real headless Chromium as the
/// citizen's browser (tests/js/login.mjs).
#[tokio::test]
async fn openid_client_in_headless_chromium() {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/js");
    assert!(
        js.join("node_modules/openid-client").exists()
            && js.join("node_modules/playwright-core").exists(),
        "run `npm ci` in tests/js first (.ci/run does it)"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "install Debian's chromium (.ci/run does it)"
    );
    let rp_port = free_port();
    let extra = format!(
        "\n[[clients]]\nid = \"js-rp\"\nname = \"openid-client platform\"\nredirect_uris = [\"http://127.0.0.1:{rp_port}/callback\"]\nsecret = {{ env = \"TEST_RP_SECRET\" }}\nscopes = [\"openid\", \"profile\"]\n"
    );
    let broker = Broker::start(Options {
        extra,
        ..Options::default()
    });
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let out = tokio::task::spawn_blocking({
        let issuer = broker.issuer.clone();
        move || {
            Command::new("node")
                .arg(js.join("login.mjs"))
                .env("ISSUER", issuer)
                .env("CLIENT_ID", "js-rp")
                .env("CLIENT_SECRET", RP_SECRET)
                .env("RP_PORT", rp_port.to_string())
                .env("USERNAME", "an")
                .env("PASSWORD", "demo")
                .env("EXPECT_NAME", "Nguyễn Văn An")
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
        "openid-client/Chromium test failed:\n{stdout}\n{stderr}\nbroker log:\n{}",
        broker.log_text()
    );
    assert!(stdout.contains(": 4 passed, 0 failed"), "{stdout}");
}

/// A Redis of the test's own, killed on drop.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        // Bounded readiness poll: the server answers PING once it listens.
        let ready = (0..100).any(|_| {
            let ok = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "ping"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"));
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            ok
        });
        assert!(ready, "own redis-server did not answer PING");
        OwnRedis { child, port }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_redis_outage_gives_503s_not_crashes() {
    let mut redis = OwnRedis::start();
    let broker = Broker::start(Options {
        redis_prefix: Some("outage:".into()),
        redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)),
        ..Options::default()
    });
    let browser = Browser::new(&broker);
    let tokens = tokens_for(
        &broker,
        &browser,
        "rp-basic",
        "http://localhost:9/cb",
        "openid",
    )
    .await;
    let _ = redis.child.kill();
    let _ = redis.child.wait();

    let (status, body, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().expect("rt"),
            ),
        ],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");

    let (_, challenge) = pkce();
    let resp = Browser::new(&broker)
        .authorize(&auth_params(
            "rp-basic",
            "http://localhost:9/cb",
            "openid",
            &challenge,
        ))
        .await;
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let page = resp.text().await.expect("page");
    assert!(
        page.contains("temporarily unavailable"),
        "a citizen page: {page}"
    );

    let ready = reqwest::get(broker.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    // The broker is still alive.
    let alive = reqwest::get(broker.url("/healthz")).await.expect("healthz");
    assert_eq!(alive.status().as_u16(), 200);
}
