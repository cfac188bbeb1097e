//! The records in PostgreSQL (several broker instances).
//!
//! The invariants are the database's: a partial unique index allows one *active* row per
//! number's hash (`citizen_ids_one_active`) and the primary key of `ways_in` one person per
//! way in, so two instances that both checked "not bound yet" cannot both bind: the second
//! commit fails with a unique violation and is reported as [`Commit::Conflict`]. A person is
//! updated only at the version it was read at. Every change set is one transaction.
//!
//! Every operation ends within the configured times: a free connection within the acquire
//! timeout, a statement within the statement timeout (set on the server, and enforced here
//! too in case the server stops answering); past them the caller gets
//! [`RecordsError::Unavailable`].

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Deserialize;
use tokio_postgres::error::SqlState;

use futures_util::StreamExt;

use crate::group_commit::GroupCommit;
use crate::{
    Activity, AuditQuery, AuditRow, Binding, Changes, CitizenId, Closed, Commit, ConfigVersion,
    Consent, Entry, ExportSink, IdStatus, InstanceReport, Level, Millis, Person, Records,
    RecordsError, RecordsResult, ReviewAction, ReviewItem, ReviewKind, Versioned, WayIn,
    INSTANCE_FORGOTTEN_AFTER_MS,
};

/// The migrations this binary knows, in order; the last one is the schema it needs.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_records.sql")),
    (2, include_str!("../migrations/0002_config.sql")),
];

/// The schema version this binary needs.
pub fn schema_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Whether and how the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP (a database on the same host or a private network).
    Disable,
    /// TLS, with the server's certificate checked against the web roots (and `ca_file`) and
    /// its name.
    VerifyFull,
}

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://host:port/database` (no credentials).
    pub url: String,
    /// User name, if not in the URL.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Most connections held.
    pub pool_size: usize,
    /// Longest a statement may run.
    pub statement_timeout: Duration,
    /// Longest to wait for a free connection (or a new one).
    pub acquire_timeout: Duration,
    /// TLS.
    pub tls: TlsMode,
    /// Extra CA certificates (PEM) for [`TlsMode::VerifyFull`].
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl PgOptions {
    /// Options with the defaults for everything but the URL.
    pub fn new(url: &str) -> PgOptions {
        PgOptions {
            url: url.to_string(),
            user: None,
            password: None,
            pool_size: 16,
            statement_timeout: Duration::from_millis(2000),
            acquire_timeout: Duration::from_millis(2000),
            tls: TlsMode::Disable,
            ca_file: None,
        }
    }
}

/// The PostgreSQL-backed records. Cheap to clone.
#[derive(Clone)]
pub struct PgRecords {
    pool: Pool,
    /// Bound of one whole operation, client side.
    deadline: Duration,
    /// Sign-ins waiting for the next group insert.
    sign_ins: GroupCommit<Activity>,
}

impl std::fmt::Debug for PgRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRecords").finish_non_exhaustive()
    }
}

/// A failure inside an operation: a failed precondition, or an error.
enum Fail {
    Conflict,
    Error(RecordsError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(c)
                if *c == SqlState::UNIQUE_VIOLATION
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                Fail::Conflict
            }
            Some(c) if *c == SqlState::UNDEFINED_TABLE => Fail::Error(RecordsError::Schema(
                format!("{e}: the records schema is missing; run `broker migrate`"),
            )),
            _ => Fail::Error(RecordsError::Unavailable(format!("postgres: {e}"))),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Fail {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            e => Fail::Error(RecordsError::Unavailable(format!(
                "postgres connection: {e}"
            ))),
        }
    }
}

impl From<serde_json::Error> for Fail {
    fn from(e: serde_json::Error) -> Self {
        Fail::Error(RecordsError::Corrupt(format!("postgres: {e}")))
    }
}

fn corrupt(msg: impl Into<String>) -> Fail {
    Fail::Error(RecordsError::Corrupt(msg.into()))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn tls_config(options: &PgOptions) -> RecordsResult<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &options.ca_file {
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
            RecordsError::Unavailable(format!("cannot read {}: {e}", path.display()))
        })?;
        for cert in certs {
            let cert =
                cert.map_err(|e| RecordsError::Unavailable(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| RecordsError::Unavailable(format!("{}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RecordsError::Unavailable(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl PgRecords {
    /// Builds the pool (connections are opened on first use) without checking the schema.
    pub fn connect_unchecked(options: &PgOptions) -> RecordsResult<PgRecords> {
        let mut config = tokio_postgres::Config::from_str(&options.url)
            .map_err(|e| RecordsError::Unavailable(format!("bad PostgreSQL URL: {e}")))?;
        if let Some(user) = &options.user {
            config.user(user);
        }
        if let Some(password) = &options.password {
            config.password(password);
        }
        let ms = options.statement_timeout.as_millis().max(1);
        config.options(format!("-c statement_timeout={ms}"));
        config.connect_timeout(options.acquire_timeout);
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name("broker");
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match options.tls {
            TlsMode::Disable => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            TlsMode::VerifyFull => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(options)?);
                Manager::from_config(config, tls, manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.acquire_timeout))
            .recycle_timeout(Some(options.acquire_timeout))
            .build()
            .map_err(|e| RecordsError::Unavailable(format!("postgres pool: {e}")))?;
        let deadline = options.acquire_timeout * 2 + options.statement_timeout * 2;
        Ok(PgRecords {
            pool,
            deadline,
            sign_ins: GroupCommit::default(),
        })
    }

    /// Connects and checks that the schema is the one this binary knows.
    pub async fn connect(options: &PgOptions) -> RecordsResult<PgRecords> {
        let records = Self::connect_unchecked(options)?;
        records.check_schema().await?;
        Ok(records)
    }

    /// Runs an operation within the deadline.
    async fn run<T, F>(&self, op: &str, f: F) -> Result<T, Fail>
    where
        F: std::future::Future<Output = Result<T, Fail>>,
    {
        match tokio::time::timeout(self.deadline, f).await {
            Ok(r) => r,
            Err(_) => Err(Fail::Error(RecordsError::Unavailable(format!(
                "postgres {op}: no answer within {} ms",
                self.deadline.as_millis()
            )))),
        }
    }

    async fn op<T, F>(&self, op: &str, f: F) -> RecordsResult<T>
    where
        F: std::future::Future<Output = Result<T, Fail>>,
    {
        match self.run(op, f).await {
            Ok(v) => Ok(v),
            Err(Fail::Error(e)) => Err(e),
            // Only commit and import expect conflicts; elsewhere one means a bug or a race the
            // caller cannot fix: try again later.
            Err(Fail::Conflict) => Err(RecordsError::Unavailable(format!(
                "postgres {op}: conflicting concurrent write"
            ))),
        }
    }

    /// Inserts a group of sign-ins in one statement (one transaction, one WAL flush).
    async fn insert_sign_ins(&self, rows: Vec<Activity>) -> RecordsResult<()> {
        self.op("record_activity", async {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO activity (id, person_id, client_id, connector, at) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .await?;
            let column = |f: fn(&Activity) -> &str| rows.iter().map(f).collect::<Vec<_>>();
            let at: Vec<i64> = rows.iter().map(|a| to_i64(a.at)).collect();
            client
                .execute(
                    &stmt,
                    &[
                        &column(|a| &a.id),
                        &column(|a| &a.person),
                        &column(|a| &a.client),
                        &column(|a| &a.connector),
                        &at,
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Runs `pg_sleep` on one pooled connection, for tests of timeouts.
    #[doc(hidden)]
    pub async fn sleep_for_tests(&self, seconds: f64) -> RecordsResult<()> {
        self.op("sleep", async {
            let client = self.pool.get().await?;
            client.execute("SELECT pg_sleep($1)", &[&seconds]).await?;
            Ok(())
        })
        .await
    }

    /// The schema version in the database (0: none yet).
    pub async fn current_schema(&self) -> RecordsResult<i32> {
        self.op("schema", async {
            let client = self.pool.get().await?;
            let exists = client
                .query_one("SELECT to_regclass('records_schema') IS NOT NULL", &[])
                .await?;
            if !exists.get::<_, bool>(0) {
                return Ok(0);
            }
            let row = client
                .query_one("SELECT COALESCE(MAX(version), 0) FROM records_schema", &[])
                .await?;
            Ok(row.get::<_, i32>(0))
        })
        .await
    }

    /// Refuses a schema older or newer than this binary knows.
    pub async fn check_schema(&self) -> RecordsResult<()> {
        let found = self.current_schema().await?;
        let known = schema_version();
        match found.cmp(&known) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(RecordsError::Schema(format!(
                "the database has schema version {found}, this broker needs {known}: run `broker migrate --config FILE`"
            ))),
            std::cmp::Ordering::Greater => Err(RecordsError::Schema(format!(
                "the database has schema version {found}, newer than this broker knows ({known}): run a newer broker"
            ))),
        }
    }

    /// Applies the migrations the database lacks, in one transaction under an advisory lock
    /// (two instances migrating at once apply each once). Returns the versions applied.
    pub async fn migrate(&self) -> RecordsResult<Vec<i32>> {
        let mut client = self.pool.get().await.map_err(|e| match Fail::from(e) {
            Fail::Error(e) => e,
            Fail::Conflict => RecordsError::Unavailable("postgres migrate".into()),
        })?;
        let result: Result<Vec<i32>, Fail> = async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock(727100013)", &[])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS records_schema (version INT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
            let row = tx
                .query_one("SELECT COALESCE(MAX(version), 0) FROM records_schema", &[])
                .await?;
            let found: i32 = row.get(0);
            if found > schema_version() {
                return Err(Fail::Error(RecordsError::Schema(format!(
                    "the database has schema version {found}, newer than this broker knows ({})",
                    schema_version()
                ))));
            }
            let mut applied = Vec::new();
            for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO records_schema (version, applied_at) VALUES ($1, (extract(epoch from now()) * 1000)::bigint)",
                    &[version],
                )
                .await?;
                applied.push(*version);
            }
            tx.commit().await?;
            Ok(applied)
        }
        .await;
        match result {
            Ok(v) => Ok(v),
            Err(Fail::Error(e)) => Err(e),
            Err(Fail::Conflict) => Err(RecordsError::Unavailable(
                "postgres migrate: conflicting concurrent migration".into(),
            )),
        }
    }
}

/// A whole person in one row (its numbers and ways in as JSON arrays); a macro, so that
/// the statements that filter it stay literals.
macro_rules! person_select {
    () => {
        "SELECT p.id, p.version, p.claims, p.updated,
  COALESCE((SELECT json_agg(json_build_object('key', c.key, 'sealed', c.sealed, 'level', c.level,
      'source', c.source, 'at', c.at, 'active', c.active) ORDER BY c.pos)
    FROM citizen_ids c WHERE c.person_id = p.id), '[]'::json),
  COALESCE((SELECT json_agg(json_build_object('key', w.key, 'connector', w.connector,
      'sealed_subject', w.sealed_subject, 'at', w.at) ORDER BY w.pos)
    FROM ways_in w WHERE w.person_id = p.id), '[]'::json)
FROM persons p"
    };
}

#[derive(Deserialize)]
struct IdRow {
    key: String,
    sealed: String,
    level: i16,
    source: String,
    at: i64,
    active: bool,
}

#[derive(Deserialize)]
struct WayRow {
    key: String,
    connector: String,
    sealed_subject: String,
    at: i64,
}

fn person_of(row: &tokio_postgres::Row) -> Result<Person, Fail> {
    let id: String = row.try_get(0)?;
    let version: i64 = row.try_get(1)?;
    let claims: serde_json::Value = row.try_get(2)?;
    let updated: i64 = row.try_get(3)?;
    let ids: serde_json::Value = row.try_get(4)?;
    let ways: serde_json::Value = row.try_get(5)?;
    let ids: Vec<IdRow> = serde_json::from_value(ids)?;
    let ways: Vec<WayRow> = serde_json::from_value(ways)?;
    let mut citizen_ids = Vec::with_capacity(ids.len());
    for c in ids {
        let level = Level::from_rank(c.level)
            .ok_or_else(|| corrupt(format!("person {id}: level {}", c.level)))?;
        citizen_ids.push(CitizenId {
            key: c.key,
            sealed: c.sealed,
            level,
            source: c.source,
            at: to_u64(c.at),
            status: if c.active {
                IdStatus::Active
            } else {
                IdStatus::Suspended
            },
        });
    }
    Ok(Person {
        citizen_ids,
        ways_in: ways
            .into_iter()
            .map(|w| WayIn {
                key: w.key,
                connector: w.connector,
                sealed_subject: w.sealed_subject,
                at: to_u64(w.at),
            })
            .collect(),
        claims: serde_json::from_value(claims)?,
        version: to_u64(version),
        updated: to_u64(updated),
        id,
    })
}

fn kind_name(kind: ReviewKind) -> &'static str {
    match kind {
        ReviewKind::Suspended => "suspended",
        ReviewKind::Conflict => "conflict",
    }
}

fn action_name(action: ReviewAction) -> &'static str {
    match action {
        ReviewAction::Keep => "keep",
        ReviewAction::Merge => "merge",
        ReviewAction::Release => "release",
    }
}

fn review_of(row: &tokio_postgres::Row) -> Result<ReviewItem, Fail> {
    let kind: String = row.try_get(1)?;
    let kind = match kind.as_str() {
        "suspended" => ReviewKind::Suspended,
        "conflict" => ReviewKind::Conflict,
        other => return Err(corrupt(format!("review kind {other}"))),
    };
    let action: Option<String> = row.try_get(6)?;
    let closed = match action {
        None => None,
        Some(a) => Some(Closed {
            action: match a.as_str() {
                "keep" => ReviewAction::Keep,
                "merge" => ReviewAction::Merge,
                "release" => ReviewAction::Release,
                other => return Err(corrupt(format!("review action {other}"))),
            },
            by: row.try_get::<_, Option<String>>(7)?.unwrap_or_default(),
            at: to_u64(row.try_get::<_, Option<i64>>(8)?.unwrap_or_default()),
        }),
    };
    Ok(ReviewItem {
        id: row.try_get(0)?,
        kind,
        key: row.try_get(2)?,
        holder: row.try_get(3)?,
        other: row.try_get(4)?,
        created: to_u64(row.try_get(5)?),
        closed,
    })
}

const REVIEW_SELECT: &str =
    "SELECT id, kind, key, holder, other, created, action, closed_by, closed_at FROM reviews";

fn audit_of_row(row: &tokio_postgres::Row) -> Result<AuditRow, Fail> {
    Ok(AuditRow {
        id: row.try_get(0)?,
        at: to_u64(row.try_get(1)?),
        actor: row.try_get(2)?,
        event: row.try_get(3)?,
        source: row.try_get(4)?,
        reference: row.try_get(5)?,
        detail: row.try_get(6)?,
    })
}

fn activity_of_row(row: &tokio_postgres::Row) -> Result<Activity, Fail> {
    Ok(Activity {
        id: row.try_get(0)?,
        person: row.try_get(1)?,
        client: row.try_get(2)?,
        connector: row.try_get(3)?,
        at: to_u64(row.try_get(4)?),
    })
}

/// Writes the persons of a change set (versions checked, index rows replaced).
async fn write_persons(
    tx: &deadpool_postgres::Transaction<'_>,
    persons: &[Person],
) -> Result<(), Fail> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO persons (id, version, claims, updated) VALUES ($1, 1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    let update = tx
        .prepare_cached(
            "UPDATE persons SET version = version + 1, claims = $2, updated = $3 WHERE id = $1 AND version = $4",
        )
        .await?;
    let clear_ids = tx
        .prepare_cached("DELETE FROM citizen_ids WHERE person_id = $1")
        .await?;
    let clear_ways = tx
        .prepare_cached("DELETE FROM ways_in WHERE person_id = $1")
        .await?;
    for p in persons {
        let claims = serde_json::to_value(&p.claims)?;
        let updated = to_i64(p.updated);
        let n = if p.version == 0 {
            tx.execute(&insert, &[&p.id, &claims, &updated]).await?
        } else {
            let v = to_i64(p.version);
            tx.execute(&update, &[&p.id, &claims, &updated, &v]).await?
        };
        if n != 1 {
            return Err(Fail::Conflict);
        }
        if p.version != 0 {
            tx.execute(&clear_ids, &[&p.id]).await?;
            tx.execute(&clear_ways, &[&p.id]).await?;
        }
    }
    // After every old row of the change set is gone, so a number moving between two of its
    // persons does not conflict with itself.
    let add_id = tx
        .prepare_cached(
            "INSERT INTO citizen_ids (person_id, key, pos, sealed, level, source, at, active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    let add_way = tx
        .prepare_cached(
            "INSERT INTO ways_in (key, person_id, pos, connector, sealed_subject, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    for p in persons {
        for (pos, c) in p.citizen_ids.iter().enumerate() {
            let pos = i16::try_from(pos).map_err(|_| corrupt("too many numbers"))?;
            let active = c.status == IdStatus::Active;
            tx.execute(
                &add_id,
                &[
                    &p.id,
                    &c.key,
                    &pos,
                    &c.sealed,
                    &c.level.rank(),
                    &c.source,
                    &to_i64(c.at),
                    &active,
                ],
            )
            .await?;
        }
        for (pos, w) in p.ways_in.iter().enumerate() {
            let pos = i16::try_from(pos).map_err(|_| corrupt("too many ways in"))?;
            tx.execute(
                &add_way,
                &[
                    &w.key,
                    &p.id,
                    &pos,
                    &w.connector,
                    &w.sealed_subject,
                    &to_i64(w.at),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

fn config_of_row(row: &tokio_postgres::Row) -> Result<ConfigVersion, Fail> {
    Ok(ConfigVersion {
        version: to_u64(row.try_get(0)?),
        document: row.try_get(1)?,
        author: row.try_get(2)?,
        note: row.try_get(3)?,
        at: to_u64(row.try_get(4)?),
    })
}

async fn write_audit(client: &impl GenericClient, rows: &[AuditRow]) -> Result<u64, Fail> {
    if rows.is_empty() {
        return Ok(0);
    }
    let stmt = client
        .prepare_cached(
            "INSERT INTO audit (id, at, actor, event, source, reference, detail) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    let mut n = 0;
    for r in rows {
        n += client
            .execute(
                &stmt,
                &[
                    &r.id,
                    &to_i64(r.at),
                    &r.actor,
                    &r.event,
                    &r.source,
                    &r.reference,
                    &r.detail,
                ],
            )
            .await?;
    }
    Ok(n)
}

async fn open_review(client: &impl GenericClient, item: &ReviewItem) -> Result<u64, Fail> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO reviews (id, kind, key, holder, other, created) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET created = EXCLUDED.created, action = NULL, closed_by = NULL, closed_at = NULL
             WHERE reviews.closed_at IS NOT NULL",
        )
        .await?;
    Ok(client
        .execute(
            &stmt,
            &[
                &item.id,
                &kind_name(item.kind),
                &item.key,
                &item.holder,
                &item.other,
                &to_i64(item.created),
            ],
        )
        .await?)
}

async fn commit_changes(
    client: &mut deadpool_postgres::Object,
    changes: &Changes,
) -> Result<(), Fail> {
    let tx = client.transaction().await?;
    write_persons(&tx, &changes.persons).await?;
    for item in &changes.open_reviews {
        open_review(&tx, item).await?;
    }
    for (id, closed) in &changes.close_reviews {
        let n = tx
            .execute(
                "UPDATE reviews SET action = $2, closed_by = $3, closed_at = $4 WHERE id = $1 AND closed_at IS NULL",
                &[id, &action_name(closed.action), &closed.by, &to_i64(closed.at)],
            )
            .await?;
        if n != 1 {
            return Err(Fail::Conflict);
        }
    }
    write_audit(&tx, &changes.audit).await?;
    tx.commit().await?;
    Ok(())
}

#[async_trait::async_trait]
impl Records for PgRecords {
    async fn person(&self, id: &str) -> RecordsResult<Option<Person>> {
        self.op("person", async {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(concat!(person_select!(), " WHERE p.id = $1"))
                .await?;
            match client.query_opt(&stmt, &[&id]).await? {
                Some(row) => Ok(Some(person_of(&row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn person_by_way_in(&self, key: &str) -> RecordsResult<Option<Person>> {
        self.op("person_by_way_in", async {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(concat!(
                    person_select!(),
                    " JOIN ways_in wi ON wi.person_id = p.id WHERE wi.key = $1"
                ))
                .await?;
            match client.query_opt(&stmt, &[&key]).await? {
                Some(row) => Ok(Some(person_of(&row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn binding(&self, key: &str) -> RecordsResult<Option<Binding>> {
        self.op("binding", async {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT person_id, level, source FROM citizen_ids WHERE key = $1 AND active",
                )
                .await?;
            match client.query_opt(&stmt, &[&key]).await? {
                Some(row) => {
                    let rank: i16 = row.try_get(1)?;
                    Ok(Some(Binding {
                        person: row.try_get(0)?,
                        level: Level::from_rank(rank)
                            .ok_or_else(|| corrupt(format!("binding level {rank}")))?,
                        source: row.try_get(2)?,
                    }))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn way_in(&self, key: &str) -> RecordsResult<Option<String>> {
        self.op("way_in", async {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached("SELECT person_id FROM ways_in WHERE key = $1")
                .await?;
            Ok(match client.query_opt(&stmt, &[&key]).await? {
                Some(row) => Some(row.try_get(0)?),
                None => None,
            })
        })
        .await
    }

    async fn commit(&self, changes: Changes) -> RecordsResult<Commit> {
        if changes.is_empty() {
            return Ok(Commit::Done);
        }
        let result = self
            .run("commit", async {
                let mut client = self.pool.get().await?;
                commit_changes(&mut client, &changes).await
            })
            .await;
        match result {
            Ok(()) => Ok(Commit::Done),
            Err(Fail::Conflict) => Ok(Commit::Conflict),
            Err(Fail::Error(e)) => Err(e),
        }
    }

    async fn consent(&self, person: &str, client_id: &str) -> RecordsResult<Option<Vec<String>>> {
        self.op("consent", async {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT scopes FROM consents WHERE person_id = $1 AND client_id = $2",
                )
                .await?;
            Ok(
                match client.query_opt(&stmt, &[&person, &client_id]).await? {
                    Some(row) => Some(row.try_get(0)?),
                    None => None,
                },
            )
        })
        .await
    }

    async fn put_consent(
        &self,
        person: &str,
        client_id: &str,
        scopes: &[String],
        now: Millis,
    ) -> RecordsResult<()> {
        self.op("put_consent", async {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO consents (person_id, client_id, scopes, at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (person_id, client_id) DO UPDATE SET scopes = EXCLUDED.scopes, at = EXCLUDED.at",
                )
                .await?;
            let scopes = scopes.to_vec();
            client
                .execute(&stmt, &[&person, &client_id, &scopes, &to_i64(now)])
                .await?;
            Ok(())
        })
        .await
    }

    async fn setting(&self, name: &str) -> RecordsResult<Versioned> {
        self.op("setting", async {
            let client = self.pool.get().await?;
            let row = client
                .query_opt(
                    "SELECT version, value FROM settings WHERE name = $1",
                    &[&name],
                )
                .await?;
            Ok(match row {
                Some(row) => Versioned {
                    version: to_u64(row.try_get(0)?),
                    value: row.try_get(1)?,
                },
                None => Versioned {
                    version: 0,
                    value: serde_json::Value::Null,
                },
            })
        })
        .await
    }

    async fn set_setting(
        &self,
        name: &str,
        expected: u64,
        value: &serde_json::Value,
    ) -> RecordsResult<bool> {
        let result = self
            .run("set_setting", async {
                let client = self.pool.get().await?;
                let n = if expected == 0 {
                    client
                        .execute(
                            "INSERT INTO settings (name, version, value) VALUES ($1, 1, $2) ON CONFLICT (name) DO NOTHING",
                            &[&name, value],
                        )
                        .await?
                } else {
                    client
                        .execute(
                            "UPDATE settings SET version = version + 1, value = $2 WHERE name = $1 AND version = $3",
                            &[&name, value, &to_i64(expected)],
                        )
                        .await?
                };
                Ok(n == 1)
            })
            .await;
        match result {
            Ok(done) => Ok(done),
            Err(Fail::Conflict) => Ok(false),
            Err(Fail::Error(e)) => Err(e),
        }
    }

    async fn audit(&self, rows: &[AuditRow]) -> RecordsResult<()> {
        self.op("audit", async {
            let client = self.pool.get().await?;
            write_audit(&client, rows).await?;
            Ok(())
        })
        .await
    }

    async fn audit_of(&self, reference: &str) -> RecordsResult<Vec<AuditRow>> {
        self.op("audit_of", async {
            let client = self.pool.get().await?;
            let rows = client
                .query(
                    "SELECT id, at, actor, event, source, reference, detail FROM audit WHERE reference = $1 ORDER BY at, seq",
                    &[&reference],
                )
                .await?;
            rows.iter().map(audit_of_row).collect()
        })
        .await
    }

    async fn recent_audit(&self, query: &AuditQuery) -> RecordsResult<Vec<AuditRow>> {
        self.op("recent_audit", async {
            let client = self.pool.get().await?;
            let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
            let prefix = query.event_prefix.as_deref().map(|p| {
                format!(
                    "{}%",
                    p.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                )
            });
            let rows = client
                .query(
                    "SELECT id, at, actor, event, source, reference, detail FROM audit
                     WHERE ($1::TEXT IS NULL OR actor = $1)
                       AND ($2::TEXT IS NULL OR event LIKE $2)
                       AND ($3::TEXT IS NULL OR reference = $3)
                     ORDER BY at DESC, seq DESC LIMIT $4",
                    &[&query.actor, &prefix, &query.reference, &limit],
                )
                .await?;
            rows.iter().map(audit_of_row).collect()
        })
        .await
    }

    async fn config_head(&self) -> RecordsResult<u64> {
        self.op("config_head", async {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached("SELECT COALESCE(MAX(version), 0) FROM config_versions")
                .await?;
            let row = client.query_one(&stmt, &[]).await?;
            Ok(to_u64(row.try_get(0)?))
        })
        .await
    }

    async fn config_version(&self, version: Option<u64>) -> RecordsResult<Option<ConfigVersion>> {
        self.op("config_version", async {
            let client = self.pool.get().await?;
            let row = match version {
                Some(n) => {
                    client
                        .query_opt(
                            "SELECT version, document, author, note, at FROM config_versions WHERE version = $1",
                            &[&to_i64(n)],
                        )
                        .await?
                }
                None => {
                    client
                        .query_opt(
                            "SELECT version, document, author, note, at FROM config_versions ORDER BY version DESC LIMIT 1",
                            &[],
                        )
                        .await?
                }
            };
            row.as_ref().map(config_of_row).transpose()
        })
        .await
    }

    async fn config_history(&self, limit: usize) -> RecordsResult<Vec<ConfigVersion>> {
        self.op("config_history", async {
            let client = self.pool.get().await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(
                    "SELECT version, document, author, note, at FROM config_versions ORDER BY version DESC LIMIT $1",
                    &[&limit],
                )
                .await?;
            rows.iter().map(config_of_row).collect()
        })
        .await
    }

    async fn publish_config(
        &self,
        expected: u64,
        document: &str,
        author: &str,
        note: &str,
        now: Millis,
        audit: &[AuditRow],
    ) -> RecordsResult<Option<u64>> {
        // No version follows the largest BIGINT: nothing to publish, as for a stale head.
        if i64::try_from(expected).map_or(true, |e| e == i64::MAX) {
            return Ok(None);
        }
        self.op("publish_config", async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // Two publishers that read the same head both try `head + 1`: the primary key
            // lets one in; the other finds the row taken (or the head moved) and writes nothing.
            let n = tx
                .execute(
                    "INSERT INTO config_versions (version, document, author, note, at)
                     SELECT $1::BIGINT + 1, $2, $3, $4, $5::BIGINT
                     WHERE (SELECT COALESCE(MAX(version), 0) FROM config_versions) = $1::BIGINT
                     ON CONFLICT (version) DO NOTHING",
                    &[&to_i64(expected), &document, &author, &note, &to_i64(now)],
                )
                .await?;
            if n != 1 {
                return Ok(None);
            }
            write_audit(&tx, audit).await?;
            tx.commit().await?;
            Ok(Some(expected.saturating_add(1)))
        })
        .await
    }

    async fn report_instance(&self, report: &InstanceReport) -> RecordsResult<()> {
        self.op("report_instance", async {
            let client = self.pool.get().await?;
            client
                .execute(
                    // Others' reports older than a week by the reporter's clock and by the
                    // database's (an instance whose clock runs ahead forgets no one early);
                    // its own row is the upsert's alone (one statement never both deletes
                    // and updates a row).
                    "WITH forgotten AS (DELETE FROM config_instances
                       WHERE instance <> $1
                         AND seen < LEAST($5, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT - $6))
                     INSERT INTO config_instances (instance, version, problem, seen) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (instance) DO UPDATE SET version = EXCLUDED.version, problem = EXCLUDED.problem, seen = EXCLUDED.seen",
                    &[
                        &report.instance,
                        &to_i64(report.version),
                        &report.problem,
                        &to_i64(report.seen),
                        &to_i64(report.seen.saturating_sub(INSTANCE_FORGOTTEN_AFTER_MS)),
                        &to_i64(INSTANCE_FORGOTTEN_AFTER_MS),
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn instances(&self) -> RecordsResult<Vec<InstanceReport>> {
        self.op("instances", async {
            let client = self.pool.get().await?;
            let rows = client
                .query(
                    "SELECT instance, version, problem, seen FROM config_instances ORDER BY instance",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(InstanceReport {
                        instance: row.try_get(0)?,
                        version: to_u64(row.try_get(1)?),
                        problem: row.try_get(2)?,
                        seen: to_u64(row.try_get(3)?),
                    })
                })
                .collect()
        })
        .await
    }

    async fn record_activity(&self, activity: &Activity) -> RecordsResult<()> {
        let this = self.clone();
        let write = move |rows: Vec<Activity>| {
            let this = this.clone();
            async move { this.insert_sign_ins(rows).await }
        };
        self.sign_ins
            .submit(activity.clone(), "postgres record_activity", write)
            .await
    }

    async fn activity(&self, person: &str, limit: usize) -> RecordsResult<Vec<Activity>> {
        self.op("activity", async {
            let client = self.pool.get().await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(
                    "SELECT id, person_id, client_id, connector, at FROM activity WHERE person_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
                    &[&person, &limit],
                )
                .await?;
            rows.iter().map(activity_of_row).collect()
        })
        .await
    }

    async fn purge_activity(&self, before: Millis) -> RecordsResult<u64> {
        self.op("purge_activity", async {
            let client = self.pool.get().await?;
            Ok(client
                .execute("DELETE FROM activity WHERE at < $1", &[&to_i64(before)])
                .await?)
        })
        .await
    }

    async fn reviews(&self, all: bool) -> RecordsResult<Vec<ReviewItem>> {
        self.op("reviews", async {
            let client = self.pool.get().await?;
            let filter = if all { "" } else { " WHERE closed_at IS NULL" };
            let rows = client
                .query(
                    &format!("{REVIEW_SELECT}{filter} ORDER BY created, id"),
                    &[],
                )
                .await?;
            rows.iter().map(review_of).collect()
        })
        .await
    }

    async fn review(&self, id: &str) -> RecordsResult<Option<ReviewItem>> {
        self.op("review", async {
            let client = self.pool.get().await?;
            match client
                .query_opt(&format!("{REVIEW_SELECT} WHERE id = $1"), &[&id])
                .await?
            {
                Some(row) => Ok(Some(review_of(&row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn ping(&self) -> RecordsResult<()> {
        self.check_schema().await
    }

    async fn export_each(&self, sink: &mut ExportSink<'_>) -> RecordsResult<u64> {
        type Convert = fn(&tokio_postgres::Row) -> Result<Entry, Fail>;
        let tables: [(String, Convert); 7] = [
            (concat!(person_select!(), " ORDER BY p.id").to_string(), |row| {
                Ok(Entry::Person(person_of(row)?))
            }),
            (
                "SELECT person_id, client_id, scopes, at FROM consents ORDER BY person_id, client_id".into(),
                |row| {
                    Ok(Entry::Consent(Consent {
                        person: row.try_get(0)?,
                        client: row.try_get(1)?,
                        scopes: row.try_get(2)?,
                        at: to_u64(row.try_get(3)?),
                    }))
                },
            ),
            ("SELECT name, value FROM settings ORDER BY name".into(), |row| {
                Ok(Entry::Setting {
                    name: row.try_get(0)?,
                    value: row.try_get(1)?,
                })
            }),
            (format!("{REVIEW_SELECT} ORDER BY created, id"), |row| {
                Ok(Entry::Review(review_of(row)?))
            }),
            (
                "SELECT id, at, actor, event, source, reference, detail FROM audit ORDER BY seq".into(),
                |row| Ok(Entry::Audit(audit_of_row(row)?)),
            ),
            (
                "SELECT id, person_id, client_id, connector, at FROM activity ORDER BY at, id".into(),
                |row| Ok(Entry::Activity(activity_of_row(row)?)),
            ),
            (
                "SELECT version, document, author, note, at FROM config_versions ORDER BY version".into(),
                |row| Ok(Entry::ConfigVersion(config_of_row(row)?)),
            ),
        ];
        // Rows are streamed as they come (query_raw), so no deadline applies to the whole
        // export: millions of rows take longer than any statement may during logins.
        let result: Result<u64, Fail> = async {
            let mut client = self.pool.get().await?;
            // One snapshot for the whole export.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
            let mut n = 0u64;
            for (sql, convert) in &tables {
                let rows = tx
                    .query_raw(sql.as_str(), std::iter::empty::<i32>())
                    .await?;
                let mut rows = std::pin::pin!(rows);
                while let Some(row) = rows.next().await {
                    sink(convert(&row?)?).map_err(Fail::Error)?;
                    n += 1;
                }
            }
            tx.commit().await?;
            Ok(n)
        }
        .await;
        match result {
            Ok(n) => Ok(n),
            Err(Fail::Error(e)) => Err(e),
            Err(Fail::Conflict) => Err(RecordsError::Unavailable(
                "postgres export: conflicting concurrent write".into(),
            )),
        }
    }

    async fn import(&self, entries: Vec<Entry>, force: bool) -> RecordsResult<u64> {
        let mut client = self.pool.get().await.map_err(|e| match Fail::from(e) {
            Fail::Error(e) => e,
            Fail::Conflict => RecordsError::Unavailable("postgres import".into()),
        })?;
        let result: Result<u64, Fail> = async {
            let tx = client.transaction().await?;
            // One import at a time, and the emptiness check holds until the commit.
            tx.execute("SELECT pg_advisory_xact_lock(727100014)", &[])
                .await?;
            let row = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM persons) OR EXISTS (SELECT 1 FROM consents)
                     OR EXISTS (SELECT 1 FROM settings) OR EXISTS (SELECT 1 FROM audit)
                     OR EXISTS (SELECT 1 FROM config_versions)",
                    &[],
                )
                .await?;
            if !force && row.try_get::<_, bool>(0)? {
                return Err(Fail::Error(RecordsError::NotEmpty(
                    "the target already holds records (use --force to add to them)".into(),
                )));
            }
            let mut written = 0u64;
            for entry in &entries {
                written += match entry {
                    Entry::Person(p) => {
                        let exists = tx
                            .query_opt("SELECT 1 FROM persons WHERE id = $1", &[&p.id])
                            .await?
                            .is_some();
                        if exists {
                            0
                        } else {
                            let mut fresh = p.clone();
                            fresh.version = 0;
                            match write_persons(&tx, std::slice::from_ref(&fresh)).await {
                                Ok(()) => 1,
                                Err(Fail::Conflict) => {
                                    return Err(corrupt(format!(
                                        "person {} holds a number or a way in of another person",
                                        p.id
                                    )))
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    Entry::Consent(c) => {
                        tx.execute(
                            "INSERT INTO consents (person_id, client_id, scopes, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                            &[&c.person, &c.client, &c.scopes, &to_i64(c.at)],
                        )
                        .await?
                    }
                    Entry::Setting { name, value } => {
                        tx.execute(
                            "INSERT INTO settings (name, version, value) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING",
                            &[name, value],
                        )
                        .await?
                    }
                    Entry::Audit(row) => write_audit(&tx, std::slice::from_ref(row)).await?,
                    Entry::Activity(a) => {
                        tx.execute(
                            "INSERT INTO activity (id, person_id, client_id, connector, at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                            &[&a.id, &a.person, &a.client, &a.connector, &to_i64(a.at)],
                        )
                        .await?
                    }
                    Entry::Review(item) => {
                        let n = tx
                            .execute(
                                "INSERT INTO reviews (id, kind, key, holder, other, created, action, closed_by, closed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                                &[
                                    &item.id,
                                    &kind_name(item.kind),
                                    &item.key,
                                    &item.holder,
                                    &item.other,
                                    &to_i64(item.created),
                                    &item.closed.as_ref().map(|c| action_name(c.action)),
                                    &item.closed.as_ref().map(|c| c.by.clone()),
                                    &item.closed.as_ref().map(|c| to_i64(c.at)),
                                ],
                            )
                            .await?;
                        n
                    }
                    Entry::ConfigVersion(v) => {
                        tx.execute(
                            "INSERT INTO config_versions (version, document, author, note, at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                            &[&to_i64(v.version), &v.document, &v.author, &v.note, &to_i64(v.at)],
                        )
                        .await?
                    }
                };
            }
            tx.commit().await?;
            Ok(written)
        }
        .await;
        match result {
            Ok(n) => Ok(n),
            Err(Fail::Error(e)) => Err(e),
            Err(Fail::Conflict) => Err(RecordsError::Unavailable(
                "postgres import: conflicting concurrent write".into(),
            )),
        }
    }
}
