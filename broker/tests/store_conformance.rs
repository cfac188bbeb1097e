//! Both store backends against the same conformance suite, plus restart and outage behaviour.
//! The Redis tests need `redis-server` (a running one at REDIS_URL or 127.0.0.1:6379, and the
//! binary on PATH for the outage test); they fail, never skip, without it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use broker::store::conformance::{real_now, run_all};
use broker::store::embedded::EmbeddedStore;
use broker::store::redis::RedisStore;
use broker::store::{Store, StoreError};

const OP_TIMEOUT: Duration = Duration::from_secs(2);

fn random_prefix() -> String {
    format!("broker-test-{:016x}:", rand::random::<u64>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A missing parent directory is created.
    let store = EmbeddedStore::open(&dir.path().join("nested").join("store.redb"))
        .expect("open embedded store");
    run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let now = real_now();
    {
        let store = EmbeddedStore::open(&path).expect("open embedded store");
        store
            .put("durable", b"kept", None, now)
            .await
            .expect("put durable");
        // A TTL record is committed non-durably; a clean close must still keep it.
        store
            .put("ttl", b"live", Some(Duration::from_secs(3600)), now)
            .await
            .expect("put ttl");
        store
            .put(
                "expired",
                b"gone",
                Some(Duration::from_secs(1)),
                now - 60_000,
            )
            .await
            .expect("put expired");
    }
    let store = EmbeddedStore::open(&path).expect("reopen embedded store");
    assert_eq!(
        store.get("durable", now).await.expect("get durable"),
        Some(b"kept".to_vec()),
        "durable record must survive a restart"
    );
    assert_eq!(
        store.get("ttl", now).await.expect("get ttl"),
        Some(b"live".to_vec()),
        "TTL record must survive a clean restart"
    );
    assert_eq!(store.get("expired", now).await.expect("get expired"), None);

    assert_eq!(
        store.sweep(now).expect("sweep"),
        1,
        "sweep removes exactly the expired record"
    );
    assert_eq!(
        store.sweep_async(now).await.expect("sweep again"),
        0,
        "nothing left to sweep"
    );
    assert_eq!(
        store.get("durable", now).await.expect("get durable"),
        Some(b"kept".to_vec()),
        "sweep keeps durable records"
    );
    assert_eq!(
        store.get("ttl", now).await.expect("get ttl"),
        Some(b"live".to_vec()),
        "sweep keeps live TTL records"
    );
    // Once the TTL passes, sweep collects that one too.
    assert_eq!(store.sweep(now + 3_600_001).expect("sweep later"), 1);
    drop(store);

    let store = EmbeddedStore::open(&path).expect("reopen after sweep");
    assert_eq!(
        store.get("ttl", now).await.expect("get ttl"),
        None,
        "swept record stays gone"
    );
    assert_eq!(
        store.get("durable", now).await.expect("get durable"),
        Some(b"kept".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let store = match RedisStore::connect(&url, &random_prefix(), OP_TIMEOUT).await {
        Ok(store) => store,
        Err(e) => panic!(
            "Redis at {url} is unreachable ({e}). These tests need Redis: start `redis-server` \
             locally or set REDIS_URL."
        ),
    };
    run_all(&store).await;
}

/// A `redis-server` child, killed when dropped whatever the test outcome.
struct RedisChild(Child);

impl RedisChild {
    fn kill(&mut self) {
        // Already exited is fine; either way reap it.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_unavailable_not_panic() {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start `redis-server` ({e}); install Redis so it is on PATH")
        });
    let mut child = RedisChild(child);
    let url = format!("redis://127.0.0.1:{port}");

    // Poll until the server answers, within a bounded number of attempts.
    let mut store = None;
    for _ in 0..100 {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("redis-server on port {port} exited early with {status}");
        }
        if let Ok(s) = RedisStore::connect(&url, &random_prefix(), Duration::from_millis(200)).await
        {
            if s.ping().await.is_ok() {
                store = Some(s);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = store.unwrap_or_else(|| panic!("redis-server on port {port} never answered PING"));
    let now = real_now();
    store
        .put("k", b"v", Some(Duration::from_secs(60)), now)
        .await
        .expect("put while Redis is up");

    child.kill();

    let unavailable = |what: &str, e: StoreError| match e {
        StoreError::Unavailable(msg) => {
            assert!(
                !msg.contains("secret"),
                "{what}: error message leaks the value: {msg}"
            );
        }
        other => panic!("{what}: expected Unavailable after the outage, got {other:?}"),
    };
    match store.get("k", now).await {
        Err(e) => unavailable("get", e),
        Ok(v) => panic!("get after the outage must fail, got {v:?}"),
    }
    match store
        .put("k", b"secret", Some(Duration::from_secs(60)), now)
        .await
    {
        Err(e) => unavailable("put", e),
        Ok(()) => panic!("put after the outage must fail"),
    }
    match store.take("k", now).await {
        Err(e) => unavailable("take", e),
        Ok(v) => panic!("take after the outage must fail, got {v:?}"),
    }
    match store.rotate("g", "k", b"secret", "n", now).await {
        Err(e) => unavailable("rotate", e),
        Ok(r) => panic!("rotate after the outage must fail, got {r:?}"),
    }
    match store
        .hit_rate_limit("r", 5, Duration::from_secs(60), now)
        .await
    {
        Err(e) => unavailable("hit_rate_limit", e),
        Ok(d) => panic!("hit_rate_limit after the outage must fail, got {d:?}"),
    }
    match store.ping().await {
        Err(e) => unavailable("ping", e),
        Ok(()) => panic!("ping after the outage must fail"),
    }
}

#[tokio::test]
async fn redis_down_at_start_is_unavailable() {
    let port = free_port();
    match RedisStore::connect(
        &format!("redis://127.0.0.1:{port}"),
        "x:",
        Duration::from_millis(500),
    )
    .await
    {
        Err(StoreError::Unavailable(_)) => {}
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connect to a closed port must fail"),
    }
}
