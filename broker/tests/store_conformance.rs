//! Both store backends against the same conformance suite, plus restart and outage behaviour.
//! The Redis tests need `redis-server` (a running one at REDIS_URL or 127.0.0.1:6379, and the
//! binary on PATH for the outage test); they fail, never skip, without it. The Sentinel and
//! Cluster tests start their own servers on free ports with `redis-server`, `redis-cli` and
//! `redis-sentinel` (or `redis-server --sentinel`).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use broker::store::conformance::{real_now, run_all};
use broker::store::embedded::EmbeddedStore;
use broker::store::redis::{ClusterOptions, RedisStore, SentinelOptions};
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

// ---------------------------------------------------------------------------------------
// Redis Cluster and Sentinel, on servers these tests start.

/// Fails with a clear message when a Redis program is missing.
fn require(program: &str, args: &[&str]) {
    match Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("`{program} {}` failed with {status}", args.join(" ")),
        Err(e) => panic!(
            "cannot run `{program}` ({e}): these tests need Redis 7 (`redis-server`, `redis-cli`, \
             `redis-sentinel` or `redis-server --sentinel`) on PATH"
        ),
    }
}

/// How to start a sentinel with a configuration file: `redis-sentinel FILE` where it is
/// installed, else `redis-server FILE --sentinel`.
fn sentinel_command(conf: &Path) -> Command {
    require("redis-server", &["--version"]);
    let installed = Command::new("redis-sentinel")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        let mut cmd = Command::new("redis-sentinel");
        cmd.arg(conf);
        cmd
    } else {
        let mut cmd = Command::new("redis-server");
        cmd.arg(conf).arg("--sentinel");
        cmd
    }
}

/// `n` distinct free ports: every listener is held until all are chosen.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// A Redis process started by a test, with its log file; killed when dropped.
struct Server {
    child: RedisChild,
    port: u16,
    log: std::path::PathBuf,
}

impl Server {
    fn start(mut cmd: Command, port: u16, dir: &Path, name: &str) -> Server {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name} ({e}); install Redis 7 so it is on PATH")
            });
        Server {
            child: RedisChild(child),
            port,
            log,
        }
    }

    fn redis(port: u16, dir: &Path, name: &str, extra: &[&str]) -> Server {
        require("redis-server", &["--version"]);
        let data = dir.join(name);
        std::fs::create_dir_all(&data).expect("data directory");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&data)
            .args(extra);
        Server::start(cmd, port, dir, name)
    }

    /// The last lines of its log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.0.try_wait() {
            panic!(
                "Redis process on port {} exited with {status}:\n{}",
                self.port,
                self.log_tail()
            );
        }
    }
}

/// Runs one command on a server started here (no retries, short timeouts).
async fn redis_cmd(
    port: u16,
    password: Option<&str>,
    cmd: &redis::Cmd,
) -> redis::RedisResult<redis::Value> {
    let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
    let client = redis::Client::open(format!("redis://{auth}127.0.0.1:{port}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(1000)));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    cmd.query_async(&mut con).await
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

/// Polls (bounded: 200 rounds of 50 ms) until `check` holds; panics with `what` otherwise.
async fn wait_until<F, Fut>(servers: &mut [&mut Server], what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        for s in servers.iter_mut() {
            s.check_alive();
        }
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs: Vec<String> = servers
        .iter()
        .map(|s| format!("--- port {} ---\n{}", s.port, s.log_tail()))
        .collect();
    panic!("timed out waiting until {what}\n{}", logs.join("\n"));
}

async fn wait_for_ping(server: &mut Server, password: Option<&str>) {
    let port = server.port;
    wait_until(
        &mut [server],
        &format!("port {port} answers PING"),
        || async move { redis_cmd(port, password, &redis::cmd("PING")).await.is_ok() },
    )
    .await;
}

/// Three masters on free ports, slots shared by `redis-cli --cluster create`.
struct Cluster {
    nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        require("redis-cli", &["--version"]);
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(6);
        let mut nodes: Vec<Server> = (0..3)
            .map(|i| {
                let (port, bus) = (ports[i], ports[i + 3]);
                let conf = dir.path().join(format!("nodes-{port}.conf"));
                Server::redis(
                    port,
                    dir.path(),
                    &format!("cluster-{port}"),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        conf.to_str().expect("UTF-8 temp path"),
                        "--cluster-port",
                        &bus.to_string(),
                    ],
                )
            })
            .collect();
        for node in &mut nodes {
            wait_for_ping(node, None).await;
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output();
        let created = tokio::time::timeout(Duration::from_secs(30), created)
            .await
            .expect("`redis-cli --cluster create` finishes within 30 s")
            .unwrap_or_else(|e| panic!("cannot run `redis-cli` ({e}); install Redis 7"));
        assert!(
            created.status.success(),
            "`redis-cli --cluster create` failed:\n{}\n{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let mut refs: Vec<&mut Server> = nodes.iter_mut().collect();
        wait_until(&mut refs, "every node reports cluster_state:ok", || {
            let ports = ports.clone();
            async move {
                for port in ports {
                    let mut info = redis::cmd("CLUSTER");
                    info.arg("INFO");
                    match redis_cmd(port, None, &info).await {
                        Ok(v) if text(&v).contains("cluster_state:ok") => {}
                        _ => return false,
                    }
                }
                true
            }
        })
        .await;
        Cluster { nodes, _dir: dir }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_conforms() {
    let cluster = Cluster::start().await;
    // One seed node is enough: the others are discovered.
    let options = ClusterOptions {
        nodes: vec![format!("redis://127.0.0.1:{}", cluster.nodes[0].port)],
        ..ClusterOptions::default()
    };
    let store = RedisStore::connect_cluster(&options, &random_prefix(), OP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connect to the cluster: {e}"));
    run_all(&store).await;

    // The suite's keys share one hash tag (one slot); keys without a common tag spread over
    // every master and are routed to each.
    let now = real_now();
    for i in 0..60 {
        let key = format!("spread-{i}");
        store
            .put(
                &key,
                i.to_string().as_bytes(),
                Some(Duration::from_secs(60)),
                now,
            )
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        assert_eq!(
            store.get(&key, now).await.expect("get"),
            Some(i.to_string().into_bytes()),
            "{key} reads back"
        );
    }
    for node in &cluster.nodes {
        let keys = redis_cmd(node.port, None, &redis::cmd("DBSIZE"))
            .await
            .expect("DBSIZE");
        assert!(
            matches!(keys, redis::Value::Int(n) if n > 0),
            "node {} holds none of the keys ({keys:?}): they should spread over the masters",
            node.port
        );
    }

    // A prefix with braces would move the hash tag: refused.
    match RedisStore::connect_cluster(&options, "a{b:", OP_TIMEOUT).await {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("prefix"), "{msg}"),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("a prefix with braces must be refused on a cluster"),
    }
}

const MASTER_NAME: &str = "mymaster";
const DATA_PASSWORD: &str = "data-secret-d41d8c";
const SENTINEL_PASSWORD: &str = "sentinel-secret-8f00b2";

/// A master, its replica and one sentinel (quorum 1), all with passwords, on free ports.
struct SentinelSetup {
    master: Server,
    replica: Server,
    sentinel: Server,
    _dir: tempfile::TempDir,
}

impl SentinelSetup {
    async fn start() -> SentinelSetup {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(3);
        let auth = [
            "--requirepass",
            DATA_PASSWORD,
            "--masterauth",
            DATA_PASSWORD,
        ];
        let mut master = Server::redis(ports[0], dir.path(), "master", &auth);
        wait_for_ping(&mut master, Some(DATA_PASSWORD)).await;
        let mut replica_args = auth.to_vec();
        let master_port = master.port.to_string();
        replica_args.extend(["--replicaof", "127.0.0.1", &master_port]);
        let mut replica = Server::redis(ports[1], dir.path(), "replica", &replica_args);
        let replica_port = replica.port;
        wait_until(
            &mut [&mut master, &mut replica],
            "the replica is in sync",
            || async move {
                let mut info = redis::cmd("INFO");
                info.arg("replication");
                redis_cmd(replica_port, Some(DATA_PASSWORD), &info)
                    .await
                    .is_ok_and(|v| text(&v).contains("master_link_status:up"))
            },
        )
        .await;

        // Short detection and failover times, so the failover test stays quick.
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                 requirepass {SENTINEL_PASSWORD}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 1\n\
                 sentinel auth-pass {MASTER_NAME} {DATA_PASSWORD}\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 400\n\
                 sentinel failover-timeout {MASTER_NAME} 2000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                port = ports[2],
                dir = dir.path().display(),
                master = master.port,
            ),
        )
        .expect("write sentinel.conf");
        let mut sentinel = Server::start(sentinel_command(&conf), ports[2], dir.path(), "sentinel");
        let sentinel_port = sentinel.port;
        // Ready once the sentinel knows the master and has seen the replica, in sync.
        wait_until(
            &mut [&mut master, &mut replica, &mut sentinel],
            "the sentinel sees the master and its replica",
            || async move {
                let mut replicas = redis::cmd("SENTINEL");
                replicas.arg("REPLICAS").arg(MASTER_NAME);
                let Ok(redis::Value::Array(list)) =
                    redis_cmd(sentinel_port, Some(SENTINEL_PASSWORD), &replicas).await
                else {
                    return false;
                };
                list.iter().any(|r| {
                    let fields: Vec<String> = match r {
                        redis::Value::Array(f) => f.iter().map(text).collect(),
                        redis::Value::Map(m) => {
                            m.iter().flat_map(|(k, v)| [text(k), text(v)]).collect()
                        }
                        _ => return false,
                    };
                    let field = |name: &str| {
                        fields
                            .chunks(2)
                            .find(|kv| kv[0] == name)
                            .map(|kv| kv[1].clone())
                            .unwrap_or_default()
                    };
                    field("port") == replica_port.to_string()
                        && field("flags") == "slave"
                        && field("master-link-status") == "ok"
                })
            },
        )
        .await;
        SentinelSetup {
            master,
            replica,
            sentinel,
            _dir: dir,
        }
    }

    fn options(&self) -> SentinelOptions {
        SentinelOptions {
            // An address where nothing listens comes first: the lookup must not depend on it.
            sentinels: vec![
                format!("redis://127.0.0.1:{}", free_ports(1)[0]),
                format!("redis://127.0.0.1:{}", self.sentinel.port),
            ],
            master_name: MASTER_NAME.into(),
            username: None,
            password: Some(DATA_PASSWORD.into()),
            sentinel_password: Some(SENTINEL_PASSWORD.into()),
            db: 0,
        }
    }
}

fn assert_no_secret(what: &str, e: &StoreError) {
    let msg = e.to_string();
    for secret in [DATA_PASSWORD, SENTINEL_PASSWORD] {
        assert!(
            !msg.contains(secret),
            "{what}: error message leaks a password: {msg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_store_conforms() {
    let setup = SentinelSetup::start().await;
    let store = RedisStore::connect_sentinel(&setup.options(), &random_prefix(), OP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connect through the sentinel: {e}"));
    run_all(&store).await;

    // Wrong passwords and names fail as Unavailable, without echoing a password.
    let mut wrong = setup.options();
    wrong.password = Some("not-the-password".into());
    match RedisStore::connect_sentinel(&wrong, "x:", Duration::from_millis(1500)).await {
        Err(e @ StoreError::Unavailable(_)) => {
            assert_no_secret("wrong password", &e);
            assert!(!e.to_string().contains("not-the-password"), "{e}");
        }
        Err(other) => panic!("wrong password: expected Unavailable, got {other:?}"),
        Ok(_) => panic!("a wrong master password must fail"),
    }
    let mut unknown = setup.options();
    unknown.master_name = "no-such-master".into();
    match RedisStore::connect_sentinel(&unknown, "x:", Duration::from_millis(1500)).await {
        Err(e @ StoreError::Unavailable(_)) => assert_no_secret("unknown master", &e),
        Err(other) => panic!("unknown master: expected Unavailable, got {other:?}"),
        Ok(_) => panic!("an unknown master name must fail"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_store_follows_failover() {
    let mut setup = SentinelSetup::start().await;
    let prefix = random_prefix();
    let store = RedisStore::connect_sentinel(&setup.options(), &prefix, Duration::from_millis(500))
        .await
        .unwrap_or_else(|e| panic!("connect through the sentinel: {e}"));
    let now = real_now();
    store
        .put("durable", b"written before the failover", None, now)
        .await
        .expect("put before the failover");

    // The record reached the replica before the master goes away.
    let replica_port = setup.replica.port;
    let key = format!("{prefix}durable");
    wait_until(
        &mut [&mut setup.replica],
        "the record is replicated",
        || {
            let key = key.clone();
            async move {
                let mut get = redis::cmd("GET");
                get.arg(&key);
                matches!(
                    redis_cmd(replica_port, Some(DATA_PASSWORD), &get).await,
                    Ok(redis::Value::BulkString(b)) if b == b"written before the failover"
                )
            }
        },
    )
    .await;

    // The master dies; the sentinel promotes the replica. The same store object must follow.
    setup.master.child.kill();
    let started = std::time::Instant::now();
    let mut failures = 0;
    let mut recovered = false;
    while started.elapsed() < Duration::from_secs(30) {
        setup.replica.check_alive();
        setup.sentinel.check_alive();
        let now = real_now();
        let attempt = async {
            let before = store.get("durable", now).await?;
            store
                .put("after", b"written after the failover", None, now)
                .await?;
            Ok::<_, StoreError>(before)
        };
        match attempt.await {
            Ok(before) => {
                assert_eq!(
                    before.as_deref(),
                    Some(&b"written before the failover"[..]),
                    "data replicated before the failover is readable on the new master"
                );
                eprintln!(
                    "recovered after {failures} failures in {:?}",
                    started.elapsed()
                );
                recovered = true;
                break;
            }
            Err(e @ StoreError::Unavailable(_)) => {
                assert_no_secret("during the failover", &e);
                failures += 1;
            }
            Err(other) => panic!("during the failover: expected Unavailable, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "the store did not reach the promoted replica within 30 s ({failures} failed attempts)\n\
         sentinel log:\n{}",
        setup.sentinel.log_tail()
    );

    // It is the old replica that answers now, as master, and holds the new write.
    let role = redis_cmd(replica_port, Some(DATA_PASSWORD), &redis::cmd("ROLE"))
        .await
        .expect("ROLE of the promoted replica");
    assert!(
        matches!(&role, redis::Value::Array(items) if items.first().map(text).as_deref() == Some("master")),
        "the replica should have been promoted: {role:?}"
    );
    let mut get = redis::cmd("GET");
    get.arg(format!("{prefix}after"));
    assert_eq!(
        redis_cmd(replica_port, Some(DATA_PASSWORD), &get)
            .await
            .expect("GET on the new master"),
        redis::Value::BulkString(b"written after the failover".to_vec()),
        "the write after the failover went to the new master"
    );
    for k in ["durable", "after"] {
        store.delete(k, real_now()).await.expect("cleanup");
    }
}

/// `check-config` names the file, the key and the reason for bad Sentinel/Cluster settings.
#[test]
fn redis_topology_config_is_checked() {
    use broker::config::{load_str, Mode, Problem};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broker.toml");
    let check = |store: &str| -> Vec<Problem> {
        let text = format!(
            "issuer = \"https://id.example.gov\"\nkeys = []\n\
             pairwise_secret = {{ env = \"STORE_TEST_UNSET_PAIRWISE\" }}\n[store]\n{store}"
        );
        match load_str(&text, &path, Mode::Serve) {
            Ok(_) => panic!("this configuration has problems"),
            Err(problems) => problems
                .into_iter()
                .filter(|p| p.key.starts_with("store"))
                .collect(),
        }
    };
    let has = |problems: &[Problem], key: &str, reason: &str| {
        assert!(
            problems.iter().any(|p| p.key == key
                && p.reason.contains(reason)
                && p.file.ends_with("broker.toml")),
            "expected `{key}`: …{reason}… among {problems:#?}"
        );
    };

    let p = check(
        "kind = \"redis\"\nmode = \"sentinel\"\n\
         sentinels = [\"redis://127.0.0.1:26379\", \"redis://:hunter2@10.0.0.2:26379\", \"redis://10.0.0.3\", \"rediss://10.0.0.4:26379\"]\n\
         password = { env = \"STORE_TEST_UNSET_PASSWORD\" }\ndb = -1\n",
    );
    has(&p, "store.master_name", "is required");
    has(&p, "store.sentinels[1]", "must not carry credentials");
    has(&p, "store.sentinels[2]", "port");
    has(&p, "store.sentinels[3]", "TLS");
    has(&p, "store.password", "STORE_TEST_UNSET_PASSWORD");
    has(&p, "store.db", "0 or more");
    assert!(
        !p.iter().any(|p| p.reason.contains("hunter2")),
        "a password in an address must not be echoed: {p:#?}"
    );
    assert!(
        !p.iter().any(|p| p.key == "store.sentinels[0]"),
        "a good address is accepted: {p:#?}"
    );

    let p = check("kind = \"redis\"\nmode = \"cluster\"\nnodes = []\nprefix = \"{b}:\"\n");
    has(&p, "store.nodes", "at least one address");
    has(&p, "store.prefix", "hash-tag");
    let p = check("kind = \"redis\"\nmode = \"cluster\"\nnodes = [\"redis://10.0.0.1:6379/2\", \"http://x\"]\n");
    has(&p, "store.nodes[0]", "database 0");
    has(&p, "store.nodes[1]", "scheme `http`");

    // Keys of another mode, and a single-mode store without its URL.
    let p = check(
        "kind = \"redis\"\nmode = \"cluster\"\nnodes = [\"redis://a:6379\"]\nmaster_name = \"m\"\n",
    );
    has(
        &p,
        "store",
        "`master_name` is only used with `mode = \"sentinel\"`",
    );
    let p = check("kind = \"redis\"\nsentinels = [\"redis://a:26379\"]\n");
    has(&p, "store", "`sentinels` is only used with");
    let p = check("kind = \"redis\"\n");
    has(&p, "store", "missing field `url`");
    let p = check("kind = \"redis\"\nmode = \"ring\"\n");
    has(&p, "store", "unknown variant `ring`");
}

/// `keys_with_prefix` (for `broker records move`): live keys under a prefix, without the
/// store's own prefix, and nothing else.
async fn lists_live_keys_under_a_prefix(store: &dyn Store) {
    let now = real_now();
    let run = format!("scan-{:016x}:", rand::random::<u64>());
    for (name, ttl) in [
        ("a", None),
        ("b", Some(Duration::from_secs(60))),
        ("c*", None),
    ] {
        store
            .put(&format!("{run}{name}"), b"v", ttl, now)
            .await
            .expect("put");
    }
    store
        .put(
            &format!("{run}gone"),
            b"v",
            Some(Duration::from_secs(1)),
            now - 60_000,
        )
        .await
        .expect("put expired");
    store.put("scan-other", b"v", None, now).await.expect("put");
    let mut keys = store.keys_with_prefix(&run, now).await.expect("scan");
    keys.retain(|k| !k.ends_with("gone"));
    keys.sort();
    assert_eq!(
        keys,
        [format!("{run}a"), format!("{run}b"), format!("{run}c*")]
    );
    // A glob character in the prefix is taken literally.
    let star = store
        .keys_with_prefix(&format!("{run}c*"), now)
        .await
        .expect("scan");
    assert_eq!(star, [format!("{run}c*")]);
    for k in ["a", "b", "c*", "gone"] {
        let _ = store.delete(&format!("{run}{k}"), now).await;
    }
    let _ = store.delete("scan-other", now).await;
}

#[tokio::test]
async fn embedded_and_redis_stores_list_keys_under_a_prefix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open");
    lists_live_keys_under_a_prefix(&embedded).await;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis = RedisStore::connect(&url, &random_prefix(), OP_TIMEOUT)
        .await
        .expect("redis");
    lists_live_keys_under_a_prefix(&redis).await;
}
