//! PostgreSQL for the benchmark: a database of its own per run (created with a unique name,
//! dropped at the end), the CPU its backends use, and the scale loader that fills the
//! records' tables with generated persons.
//!
//! The loader writes rows exactly as the broker would for a person who logged in once
//! through the test-citizens connector: a `persons` row with claims, one active
//! `citizen_ids` row and one `ways_in` row. Numbers and subjects are generated, and the rows
//! hold only their keyed hashes (`HMAC(pairwise_secret, "cid", number)`, as the broker
//! computes them) and values sealed with the broker's own sealing; no number is written in
//! clear. Generated numbers start with `9`, so they never meet the benchmark's citizens.

use std::pin::pin;
use std::time::{Duration, Instant};

use broker::person::seal::{seal, Kind, SealKey};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

/// Where the benchmark's PostgreSQL is (`BENCH_PG_URL`, `BENCH_PG_USER`, `BENCH_PG_PASSWORD`).
#[derive(Clone, Debug)]
pub struct PgServer {
    /// `postgres://host:port` (no database, no credentials).
    pub url: String,
    /// Role that creates the database and that the broker logs in as.
    pub user: String,
    /// Its password, if the server asks for one.
    pub password: Option<String>,
}

impl PgServer {
    /// From the environment: `BENCH_PG_URL` (default `postgres://127.0.0.1:5432`),
    /// `BENCH_PG_USER` (default `postgres`), `BENCH_PG_PASSWORD` (default none).
    pub fn from_env() -> Result<PgServer, String> {
        let url = std::env::var("BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://127.0.0.1:5432".into())
            .trim_end_matches('/')
            .to_string();
        let parsed =
            url::Url::parse(&url).map_err(|e| format!("BENCH_PG_URL `{url}`: not a URL ({e})"))?;
        if parsed.scheme() != "postgres"
            || parsed.host_str().is_none()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || !matches!(parsed.path(), "" | "/")
        {
            return Err(format!(
                "BENCH_PG_URL `{url}`: must be postgres://host:port alone (the user and password go in BENCH_PG_USER and BENCH_PG_PASSWORD)"
            ));
        }
        Ok(PgServer {
            url,
            user: std::env::var("BENCH_PG_USER").unwrap_or_else(|_| "postgres".into()),
            password: std::env::var("BENCH_PG_PASSWORD").ok(),
        })
    }

    fn config(&self, database: &str) -> Result<tokio_postgres::Config, String> {
        let parsed = url::Url::parse(&self.url).map_err(|e| format!("{}: {e}", self.url))?;
        let mut config = tokio_postgres::Config::new();
        config
            .host(parsed.host_str().unwrap_or("127.0.0.1"))
            .port(parsed.port().unwrap_or(5432))
            .user(&self.user)
            .dbname(database)
            .connect_timeout(Duration::from_secs(5));
        if let Some(p) = &self.password {
            config.password(p);
        }
        Ok(config)
    }

    /// A connection to `database`; its connection task runs on the current runtime.
    pub async fn connect(&self, database: &str) -> Result<Client, String> {
        let (client, connection) = self.config(database)?.connect(NoTls).await.map_err(|e| {
            format!(
                "PostgreSQL at {} (user {}, database {database}) is unreachable: {e}\n\
                     start one or set BENCH_PG_URL / BENCH_PG_USER / BENCH_PG_PASSWORD",
                self.url, self.user
            )
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// A database of the benchmark's own, dropped (with its connections) when this is dropped.
pub struct PgDatabase {
    /// The server.
    pub server: PgServer,
    /// The database's name (`bench_` and random hex).
    pub name: String,
}

impl PgDatabase {
    /// Creates a database with a unique name.
    pub async fn create(server: &PgServer, unique: &str) -> Result<PgDatabase, String> {
        let name = format!("bench_{unique}");
        let admin = server.connect("postgres").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        Ok(PgDatabase {
            server: server.clone(),
            name,
        })
    }

    /// The database's URL as the broker's `[records] url` takes it.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server.url, self.name)
    }

    /// Process ids of the backends connected to this database (the broker's pool).
    pub async fn backend_pids(&self, client: &Client) -> Vec<u32> {
        client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.try_get::<_, i32>(0).ok())
                    .filter_map(|p| u32::try_from(p).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The database's cumulative work counters (`pg_stat_database`): what the broker's
    /// statements cost it, to be divided by the logins between two snapshots.
    pub async fn work(&self, client: &Client) -> DbWork {
        // Statistics are flushed by each backend at most once a second; a fresh snapshot
        // is asked for so two reads in one session see different values.
        let _ = client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await;
        let row = client
            .query_opt(
                "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = $1",
                &[&self.name],
            )
            .await
            .ok()
            .flatten();
        let get = |i: usize| {
            row.as_ref()
                .and_then(|r| r.try_get::<_, i64>(i).ok())
                .unwrap_or(0)
        };
        DbWork {
            commits: get(0),
            rollbacks: get(1),
            returned: get(2),
            fetched: get(3),
            written: get(4) + get(5) + get(6),
        }
    }

    async fn drop_now(server: &PgServer, name: &str) -> Result<(), String> {
        let admin = server.connect("postgres").await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .map_err(|e| format!("DROP DATABASE {name}: {e}"))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // A thread with a runtime of its own: this may be dropped inside or outside one.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(PgDatabase::drop_now(&server, &name)))
        })
        .join();
        match dropped {
            Ok(Ok(())) => println!("postgres: dropped database {}", self.name),
            Ok(Err(e)) => println!("postgres: could not drop database {}: {e}", self.name),
            Err(_) => println!("postgres: could not drop database {}", self.name),
        }
    }
}

/// A snapshot of a database's work counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbWork {
    /// Transactions committed (each statement outside a transaction is one).
    pub commits: i64,
    /// Transactions rolled back.
    pub rollbacks: i64,
    /// Rows read by scans.
    pub returned: i64,
    /// Rows fetched through indexes.
    pub fetched: i64,
    /// Rows inserted, updated or deleted.
    pub written: i64,
}

impl DbWork {
    /// The line per login between `self` (earlier) and `later`.
    pub fn per_login(&self, later: &DbWork, logins: u64) -> String {
        let n = logins.max(1) as f64;
        let per = |a: i64, b: i64| (b - a) as f64 / n;
        format!(
            "{:.2} commits, {:.2} rollbacks, {:.1} rows fetched, {:.1} rows scanned, {:.2} rows written",
            per(self.commits, later.commits),
            per(self.rollbacks, later.rollbacks),
            per(self.fetched, later.fetched),
            per(self.returned, later.returned),
            per(self.written, later.written),
        )
    }
}

/// CPU use of the backends of a database over an interval (backends that appear during it
/// count from zero: the broker's pool opens them as the load grows).
pub struct BackendCpu {
    start: Vec<(u32, u64)>,
    started: Instant,
}

impl BackendCpu {
    /// Starts measuring the backends `pids`.
    pub fn start(pids: &[u32]) -> BackendCpu {
        BackendCpu {
            start: pids
                .iter()
                .filter_map(|&p| Some((p, crate::sys::cpu_ticks(p)?)))
                .collect(),
            started: Instant::now(),
        }
    }

    /// Percent of one core the backends `pids` used since the start.
    pub fn finish(&self, ticks_per_sec: u64, pids: &[u32]) -> f64 {
        let ticks: u64 = pids
            .iter()
            .filter_map(|&p| {
                let now = crate::sys::cpu_ticks(p)?;
                let before = self
                    .start
                    .iter()
                    .find(|(q, _)| *q == p)
                    .map_or(0, |(_, t)| *t);
                Some(now.saturating_sub(before))
            })
            .sum();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        100.0 * ticks as f64 / ticks_per_sec as f64 / secs
    }
}

/// Rows per COPY (one transaction each).
const CHUNK: u64 = 50_000;
/// The connector the generated persons came in through.
const CONNECTOR: &str = "test-citizens";

/// How a load went.
pub struct Loaded {
    /// Persons written.
    pub persons: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Size of the database afterwards, in bytes.
    pub database_bytes: i64,
}

/// Writes `n` generated persons (with one active number and one way in each) into the
/// records' tables of `db` with binary COPY, `CHUNK` rows a transaction, then ANALYZEs.
/// `secret` is the broker's `pairwise_secret`, so keys and sealed values are of its kind.
pub async fn load_persons(
    db: &PgDatabase,
    secret: &[u8],
    n: u64,
    progress: impl Fn(u64, Duration),
) -> Result<Loaded, String> {
    let client = db.server.connect(&db.name).await?;
    let started = Instant::now();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let seal_key = SealKey::new(secret);
    let mut done = 0u64;
    while done < n {
        let count = CHUNK.min(n - done);
        let rows: Vec<Generated> = (done..done + count)
            .map(|i| Generated::new(secret, &seal_key, i, now_ms))
            .collect::<Result<_, _>>()?;
        copy_chunk(&client, &rows).await?;
        done += count;
        progress(done, started.elapsed());
    }
    client
        .batch_execute("ANALYZE persons; ANALYZE citizen_ids; ANALYZE ways_in")
        .await
        .map_err(|e| format!("ANALYZE: {e}"))?;
    let database_bytes = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .and_then(|r| r.try_get::<_, i64>(0))
        .map_err(|e| format!("pg_database_size: {e}"))?;
    Ok(Loaded {
        persons: done,
        elapsed: started.elapsed(),
        database_bytes,
    })
}

/// One generated person's rows.
struct Generated {
    id: String,
    claims: serde_json::Value,
    cid_key: String,
    cid_sealed: String,
    way_key: String,
    way_sealed: String,
    at: i64,
}

impl Generated {
    fn new(secret: &[u8], seal_key: &SealKey, i: u64, now_ms: i64) -> Result<Generated, String> {
        // A 12-digit number of its own (never one of the benchmark's citizens, which start
        // with 0), and a subject at the connector.
        let number = format!("9{:011}", i % 100_000_000_000);
        let subject = format!("scale-{i}");
        let sealed = |kind, value: &str| {
            seal(seal_key, kind, value).ok_or_else(|| "cannot seal a generated value".to_string())
        };
        let at = now_ms - i64::try_from(i % 86_400_000).unwrap_or(0);
        Ok(Generated {
            id: records::new_id(),
            claims: serde_json::json!({
                "name": format!("Generated Citizen {i}"),
                "given_name": "Generated",
                "family_name": format!("Citizen {i}"),
                "birthdate": format!("19{:02}-{:02}-{:02}", 40 + i % 60, 1 + i % 12, 1 + i % 28),
                "phone_number": format!("+849{:08}", i % 100_000_000),
            }),
            cid_key: common::hash::pairwise_b64(secret, &[b"cid", number.as_bytes()]),
            cid_sealed: sealed(Kind::CitizenId, &number)?,
            way_key: common::hash::pairwise_b64(
                secret,
                &[b"ext", CONNECTOR.as_bytes(), subject.as_bytes()],
            ),
            way_sealed: sealed(Kind::Subject, &subject)?,
            at,
        })
    }
}

/// A value of a COPY row.
fn sql<T: ToSql + Sync>(value: &T) -> &(dyn ToSql + Sync) {
    value
}

/// One transaction: the chunk's persons, then their numbers and ways in.
async fn copy_chunk(client: &Client, rows: &[Generated]) -> Result<(), String> {
    let fail = |what: &str, e: tokio_postgres::Error| format!("COPY {what}: {e}");
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| fail("BEGIN", e))?;
    copy(
        client,
        "persons (id, version, claims, updated)",
        &[Type::TEXT, Type::INT8, Type::JSONB, Type::INT8],
        rows,
        |g| vec![sql(&g.id), sql(&1i64), sql(&g.claims), sql(&g.at)],
    )
    .await?;
    copy(
        client,
        "citizen_ids (person_id, key, pos, sealed, level, source, at, active)",
        &[
            Type::TEXT,
            Type::TEXT,
            Type::INT2,
            Type::TEXT,
            Type::INT2,
            Type::TEXT,
            Type::INT8,
            Type::BOOL,
        ],
        rows,
        |g| {
            vec![
                sql(&g.id),
                sql(&g.cid_key),
                sql(&0i16),
                sql(&g.cid_sealed),
                sql(&2i16),
                sql(&CONNECTOR),
                sql(&g.at),
                sql(&true),
            ]
        },
    )
    .await?;
    copy(
        client,
        "ways_in (key, person_id, pos, connector, sealed_subject, at)",
        &[
            Type::TEXT,
            Type::TEXT,
            Type::INT2,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
        ],
        rows,
        |g| {
            vec![
                sql(&g.way_key),
                sql(&g.id),
                sql(&0i16),
                sql(&CONNECTOR),
                sql(&g.way_sealed),
                sql(&g.at),
            ]
        },
    )
    .await?;
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| fail("COMMIT", e))
}

async fn copy<'a>(
    client: &Client,
    table: &str,
    types: &[Type],
    rows: &'a [Generated],
    values: impl Fn(&'a Generated) -> Vec<&'a (dyn ToSql + Sync)>,
) -> Result<(), String> {
    let fail = |e: tokio_postgres::Error| format!("COPY {table}: {e}");
    let sink = client
        .copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .await
        .map_err(fail)?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    for row in rows {
        writer.as_mut().write(&values(row)).await.map_err(fail)?;
    }
    writer.finish().await.map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_rows_hold_keyed_hashes_and_sealed_values_only() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let seal_key = SealKey::new(secret);
        let g = Generated::new(secret, &seal_key, 42, 1_000_000).expect("generated");
        let number = "900000000042";
        for field in [&g.id, &g.cid_key, &g.cid_sealed, &g.way_key, &g.way_sealed] {
            assert!(!field.contains(number), "{field} holds the number");
        }
        assert!(!g.claims.to_string().contains(number));
        // As the broker keys and seals them, so the rows are like the ones it writes.
        assert_eq!(
            g.cid_key,
            common::hash::pairwise_b64(secret, &[b"cid", number.as_bytes()])
        );
        assert_eq!(
            broker::person::seal::open(&seal_key, Kind::CitizenId, &g.cid_sealed).as_deref(),
            Some(number)
        );
        assert_eq!(
            broker::person::seal::open(&seal_key, Kind::Subject, &g.way_sealed).as_deref(),
            Some("scale-42")
        );
    }
}
