//! Builds and starts the real `broker` binary with a configuration made for the benchmark
//! (Redis store, RS256 and ES256 keys, test citizens, two confidential clients; records
//! embedded in a temporary folder, or in PostgreSQL after `broker migrate`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::keys::{SigningAlg, SigningKey};

/// Client whose ID tokens are signed with ES256.
pub const ES_CLIENT: &str = "bench-es";
/// Client whose ID tokens are signed with RS256.
pub const RS_CLIENT: &str = "bench-rs";
/// Redirect URI of both clients (never contacted: the bench reads the redirect).
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/cb";
/// Scopes asked at every login.
pub const SCOPE: &str = "openid profile phone offline_access";
/// The test citizens (username, password) of the configuration.
pub const CITIZENS: &[(&str, &str)] = &[
    ("an", "demo-an"),
    ("lan", "demo-lan"),
    ("minh", "demo-minh"),
    ("hoa", "demo-hoa"),
];

/// Builds the release broker with cargo and returns the path of its executable.
pub fn build_release() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building the broker: cargo build --release -p broker");
    let mut child = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "broker",
            "--bin",
            "broker",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut executable = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "broker" {
                if let Some(exe) = msg["executable"].as_str() {
                    executable = Some(PathBuf::from(exe));
                }
            }
        }
    }
    let status = child.wait().map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release -p broker failed ({status})"));
    }
    let exe = executable.unwrap_or_else(|| root.join("target/release/broker"));
    if !exe.is_file() {
        return Err(format!("{} was not built", exe.display()));
    }
    Ok(exe)
}

/// What the broker is started with.
pub struct Launch<'a> {
    /// The broker executable.
    pub exe: &'a Path,
    /// Redis URL (given to the broker through an environment variable).
    pub redis_url: &'a str,
    /// Key prefix in Redis, unique to this run.
    pub prefix: &'a str,
    /// Secret of both clients.
    pub client_secret: &'a str,
    /// Run the broker under `taskset -c CPU`.
    pub pin_cpu: Option<usize>,
    /// `BROKER_LOG` filter; `None` keeps the broker's default.
    pub log_filter: Option<&'a str>,
    /// The `pairwise_secret` (also the key of the records' hashes and sealing).
    pub pairwise_secret: &'a str,
    /// Records in PostgreSQL (else embedded, in the temporary folder).
    pub postgres: Option<PgRecords<'a>>,
}

/// `[records] kind = "postgres"` of a benchmark broker.
#[derive(Clone, Copy)]
pub struct PgRecords<'a> {
    /// `postgres://host:port/database`.
    pub url: &'a str,
    /// Role.
    pub user: &'a str,
    /// Its password, if the server asks for one (given through an environment variable).
    pub password: Option<&'a str>,
}

/// A running broker; killed on drop.
pub struct Broker {
    child: Child,
    /// Process id (taskset execs the broker, so it is the broker's own).
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Last lines of the broker's output, for diagnostics.
    tail: Arc<Mutex<VecDeque<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn records_text(postgres: Option<PgRecords>) -> String {
    match postgres {
        None => "[records]\nkind = \"embedded\"\npath = \"records.redb\"\n".to_string(),
        Some(pg) => format!(
            "[records]\nkind = \"postgres\"\nurl = \"{}\"\nuser = \"{}\"\n{}pool_size = 16\n",
            pg.url,
            pg.user,
            if pg.password.is_some() {
                "password = { env = \"BENCH_PG_PASSWORD\" }\n"
            } else {
                ""
            }
        ),
    }
}

fn config_text(port: u16, prefix: &str, postgres: Option<PgRecords>) -> String {
    let records = records_text(postgres);
    let citizens: String = CITIZENS
        .iter()
        .enumerate()
        .map(|(i, (user, password))| {
            format!(
                r#"
[[connectors.settings.citizens]]
username = "{user}"
password = "{password}"
citizen_id = "0792010{i:05}"
claims = {{ name = "Citizen {user}", birthdate = "1990-03-15", phone_number = "+8490123{i:04}" }}
"#
            )
        })
        .collect();
    format!(
        r#"
issuer = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
pairwise_secret = {{ env = "BENCH_PAIRWISE" }}
allow_test_citizens = true

[store]
kind = "redis"
url = {{ env = "BENCH_REDIS_URL" }}
prefix = "{prefix}"

{records}
[tokens]
access_token_alg = "ES256"

[[keys]]
kid = "rs-1"
alg = "RS256"
file = "rs.pem"

[[keys]]
kid = "es-1"
alg = "ES256"
file = "es.pem"

[[connectors]]
id = "test-citizens"
type = "test-citizens"
name = {{ en = "Test citizens" }}

[connectors.settings]
assurance = "substantial"
# 64 simulated browsers share four accounts: no per-account throttle of attempts in flight
# (each counts before its check), the per-address one as by default.
failed_logins = {{ per_id = 0, per_phone = 0, per_address = 30 }}
{citizens}
[[clients]]
id = "{ES_CLIENT}"
name = "Bench platform (ES256)"
redirect_uris = ["{REDIRECT_URI}"]
auth_method = "client_secret_basic"
secret = {{ env = "BENCH_CLIENT_SECRET" }}
scopes = ["openid", "profile", "phone", "offline_access"]
id_token_signed_response_alg = "ES256"

[[clients]]
id = "{RS_CLIENT}"
name = "Bench platform (RS256)"
redirect_uris = ["{REDIRECT_URI}"]
auth_method = "client_secret_basic"
secret = {{ env = "BENCH_CLIENT_SECRET" }}
scopes = ["openid", "profile", "phone", "offline_access"]
id_token_signed_response_alg = "RS256"
"#
    )
}

fn write_key(dir: &Path, name: &str, alg: SigningAlg) -> Result<(), String> {
    let (_, pem) = SigningKey::generate("k", alg).map_err(|e| format!("key generation: {e}"))?;
    std::fs::write(dir.join(name), pem).map_err(|e| format!("write {name}: {e}"))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn drain(
    stream: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
    ready: mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if line.contains("broker listening") {
                let _ = ready.send(());
            }
            if let Ok(mut t) = tail.lock() {
                if t.len() == 40 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    });
}

/// `MIMALLOC_PURGE_DELAY` of the brokers: this environment's, else `0` (deploy/Dockerfile's).
pub fn purge_delay() -> String {
    std::env::var("MIMALLOC_PURGE_DELAY").unwrap_or_else(|_| "0".into())
}

/// The environment variables the configuration refers to.
fn broker_env<'a>(launch: &Launch<'a>) -> Vec<(&'static str, &'a str)> {
    let mut env = vec![
        ("BENCH_PAIRWISE", launch.pairwise_secret),
        ("BENCH_CLIENT_SECRET", launch.client_secret),
        ("BENCH_REDIS_URL", launch.redis_url),
    ];
    if let Some(p) = launch.postgres.and_then(|pg| pg.password) {
        env.push(("BENCH_PG_PASSWORD", p));
    }
    env
}

/// `broker migrate --config CONFIG`: the records' schema, as an operator applies it.
fn migrate(launch: &Launch, config: &Path) -> Result<(), String> {
    let out = Command::new(launch.exe)
        .arg("migrate")
        .arg("--config")
        .arg(config)
        .env_remove("BROKER_CONFIG")
        .envs(broker_env(launch))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} migrate: {e}", launch.exe.display()))?;
    let said = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("broker migrate failed ({}): {said}", out.status));
    }
    println!("broker migrate: {}", said.trim());
    Ok(())
}

impl Broker {
    /// Writes the configuration and keys to a temporary folder, starts `broker serve
    /// --workers 1` and waits until it listens.
    pub fn start(launch: &Launch) -> Result<Broker, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        write_key(dir.path(), "rs.pem", SigningAlg::RS256)?;
        write_key(dir.path(), "es.pem", SigningAlg::ES256)?;
        let port = free_port()?;
        let config = dir.path().join("broker.toml");
        std::fs::write(&config, config_text(port, launch.prefix, launch.postgres))
            .map_err(|e| format!("write config: {e}"))?;
        if launch.postgres.is_some() {
            migrate(launch, &config)?;
        }

        let mut cmd = match launch.pin_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(launch.exe);
                c
            }
            None => Command::new(launch.exe),
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--workers", "1"])
            .env_remove("BROKER_CONFIG")
            .env_remove("BROKER_LISTEN")
            .env_remove("BROKER_WORKERS")
            .envs(broker_env(launch))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match launch.log_filter {
            Some(f) => cmd.env("BROKER_LOG", f),
            None => cmd.env_remove("BROKER_LOG"),
        };
        // As deploy/Dockerfile runs it: mimalloc gives freed pages back at once (its default
        // keeps them a second). A value in this environment is passed on instead.
        cmd.env("MIMALLOC_PURGE_DELAY", purge_delay());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launch.exe.display()))?;
        let pid = child.id();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            drain(out, tail.clone(), tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            drain(err, tail.clone(), tx);
        }
        let broker = Broker {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            tail,
            _dir: dir,
        };
        broker.wait_listening(rx, port)
    }

    /// Waits for the "broker listening" line (or, if the log filter hides it, for the port).
    fn wait_listening(mut self, ready: mpsc::Receiver<()>, port: u16) -> Result<Broker, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            if ready.recv_timeout(Duration::from_millis(100)).is_ok() {
                return Ok(self);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the broker exited at start ({status}); its output:\n{}",
                    self.output()
                ));
            }
            if started.elapsed() > Duration::from_secs(2)
                && TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            {
                return Ok(self);
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "the broker did not listen within 60 s; its output:\n{}",
                    self.output()
                ));
            }
        }
    }

    /// The last lines the broker printed.
    pub fn output(&self) -> String {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Whether the broker process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
