//! PostgreSQL stopped in the middle of a login: the citizen gets the "try again later" page,
//! `/readyz` says which store is missing, and the broker recovers by itself when the
//! database returns. The test runs a PostgreSQL server of its own (initdb and pg_ctl from
//! /usr/lib/postgresql/*/bin, its own port and directory); the machine's server is never
//! touched.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{free_port, Broker, Browser, Options};

/// A private PostgreSQL server, stopped (immediately) when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs in /usr/lib/postgresql (Debian's postgresql package)")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("initdb and pg_ctl in /usr/lib/postgresql/*/bin")
}

/// Runs a PostgreSQL program as the `postgres` user when this test runs as root (initdb
/// refuses root).
fn pg_command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn check(what: &str, out: std::io::Result<std::process::Output>) {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = pg_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let _ = Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.path())
            .output();
        let data = dir.path().join("data");
        check(
            "initdb",
            pg_command(&bin, "initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
                .output(),
        );
        let pg = PrivatePostgres {
            bin,
            dir,
            port: free_port(),
        };
        pg.up();
        pg
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    fn up(&self) {
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        check(
            "pg_ctl start",
            pg_command(&self.bin, "pg_ctl")
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .args(["-o", &options, "-w", "start"])
                .output(),
        );
    }

    /// Stops the server, disconnecting every client.
    fn down(&self) {
        check(
            "pg_ctl stop",
            pg_command(&self.bin, "pg_ctl")
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "fast", "-w", "stop"])
                .output(),
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

async fn ready(broker: &Broker) -> (u16, serde_json::Value) {
    let resp = reqwest::get(broker.url("/readyz")).await.expect("readyz");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn postgres_stopped_mid_login_gives_try_again_later_and_recovers() {
    let pg = PrivatePostgres::start();
    let db = records::testing::TestDb::create_bare_at(&pg.address()).await;
    records::postgres::PgRecords::connect_unchecked(&db.options())
        .expect("pool")
        .migrate()
        .await
        .expect("migrate");
    let broker = Broker::start(Options {
        records_url: Some(db.url()),
        extra: crate::records::two_sources(),
        ..Options::default()
    });
    assert_eq!(ready(&broker).await.0, 200);

    // The citizen chose the bank and is at its form when PostgreSQL stops.
    let browser = Browser::new(&broker);
    let choice = browser.choice_page().await;
    let form = browser.choose(&choice, "bank").await;
    pg.down();
    let resp = browser.submit_password(&form, "an", "pw").await;
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let page = resp.text().await.expect("page");
    assert!(page.contains("temporarily unavailable"), "{page}");
    let (status, body) = ready(&broker).await;
    assert_eq!(status, 503);
    assert_eq!(body["store"], "ready");
    assert_ne!(body["records"], "ready", "{body}");

    // PostgreSQL is back: the broker uses it again without a restart.
    pg.up();
    let (status, body) = ready(&broker).await;
    assert_eq!(status, 200, "{body}");
    let sub = crate::records::sub_of(&broker, "bank").await;
    assert_eq!(crate::records::sub_of(&broker, "vneid").await, sub);
    drop(broker);
    drop(db);
}
