//! The master of a Sentinel-monitored Redis, followed across failovers.
//!
//! A connection to a master does not follow a failover by itself (redis-rs #1438): when the
//! old master dies, or comes back demoted to a replica, every call on it fails. So the store
//! keeps one multiplexed connection to the master it last resolved, drops it after a
//! connection error, a timeout or a `READONLY`/`MASTERDOWN` answer, and the next call asks
//! the sentinels again (`SENTINEL GET-MASTER-ADDR-BY-NAME`), checking with `ROLE` that the
//! address they give is a master indeed.
//!
//! The sentinels are asked all at once, each under the operation timeout, and the first one
//! naming a live master wins: one unreachable sentinel (even one that drops packets) costs
//! nothing. (The `redis` crate's own `Sentinel` takes its answers in list order without
//! connection timeouts, so one black-holed sentinel would stall every lookup.)
//!
//! A call whose outcome is unknown (the connection broke after the request went out) is not
//! sent again, except reads: sending a `take` or a `rotate` twice would consume the record
//! or see the caller's own rotation as a replay. It fails with `Unavailable` and the next
//! call goes to the new master. A write the old master refused (`READONLY`) is sent again
//! once, to the master resolved afresh.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, Role, Value,
};
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::{map_err, Call, Retry};
use crate::{StoreError, StoreResult};

/// Where the sentinels are and how to reach the master they name.
#[derive(Clone, Default)]
pub struct SentinelOptions {
    /// `redis://host:port` of each sentinel; no credentials inside.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the master under.
    pub master_name: String,
    /// ACL user of the master and replicas.
    pub username: Option<String>,
    /// Password of the master and replicas.
    pub password: Option<String>,
    /// Password of the sentinels (`requirepass` in their configuration), if any.
    pub sentinel_password: Option<String>,
    /// Database number on the master.
    pub db: i64,
}

impl std::fmt::Debug for SentinelOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("SentinelOptions")
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("sentinel_password", &redacted(&self.sentinel_password))
            .field("db", &self.db)
            .finish()
    }
}

/// A connection to the current master and the resolution that made it.
#[derive(Clone)]
struct Master {
    /// Distinguishes resolutions, so a late error on an old connection never drops a newer
    /// one.
    generation: u64,
    con: MultiplexedConnection,
}

/// The master named by the sentinels, resolved again whenever its connection fails.
pub(super) struct SentinelMaster {
    sentinels: Vec<ConnectionInfo>,
    master_name: String,
    /// Credentials and database of the master (its address comes from the sentinels).
    master_settings: RedisConnectionInfo,
    /// Connection and response timeouts of every connection made here.
    config: AsyncConnectionConfig,
    op_timeout: Duration,
    current: Mutex<Option<Master>>,
    /// One resolution at a time; callers arriving meanwhile use its result.
    resolving: tokio::sync::Mutex<()>,
    generations: AtomicU64,
}

/// Whether an error means the connection should be dropped and the master looked up again.
fn is_stale(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.kind() == ErrorKind::Parse || refused_by_non_master(e)
}

/// The server refused the call because it is not (or no longer) the master: the call was
/// not applied.
fn refused_by_non_master(e: &RedisError) -> bool {
    matches!(e.code(), Some("READONLY" | "MASTERDOWN"))
}

fn unavailable(msg: impl Into<String>) -> StoreError {
    StoreError::Unavailable(msg.into())
}

impl SentinelMaster {
    pub(super) fn new(options: &SentinelOptions, op_timeout: Duration) -> StoreResult<Self> {
        if options.sentinels.is_empty() {
            return Err(unavailable(
                "redis sentinel: no sentinel address configured",
            ));
        }
        if options.master_name.is_empty() {
            return Err(unavailable("redis sentinel: no master name configured"));
        }
        let sentinels = options
            .sentinels
            .iter()
            .map(|url| {
                // Never the client's text about the URL: it could quote it.
                let info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| unavailable(format!("invalid sentinel URL ({})", e.category())))?;
                let mut settings = info.redis_settings().clone();
                if let Some(password) = &options.sentinel_password {
                    settings = settings.set_password(password);
                }
                Ok(info.set_redis_settings(settings))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let mut master_settings = RedisConnectionInfo::default().set_db(options.db);
        if let Some(username) = &options.username {
            master_settings = master_settings.set_username(username);
        }
        if let Some(password) = &options.password {
            master_settings = master_settings.set_password(password);
        }
        Ok(Self {
            sentinels,
            master_name: options.master_name.clone(),
            master_settings,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(op_timeout))
                .set_response_timeout(Some(op_timeout)),
            op_timeout,
            current: Mutex::new(None),
            resolving: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
        })
    }

    /// Resolves the master once, within the operation timeout (for start-up).
    pub(super) async fn connect(&self) -> StoreResult<()> {
        let timeout = self.op_timeout;
        match tokio::time::timeout(timeout, self.master()).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(unavailable(format!(
                "redis connect: no master found through the sentinels within {timeout:?}"
            ))),
        }
    }

    /// Runs one call on the master, bounded by `timeout` as a whole (lookup included).
    pub(super) async fn exec(
        &self,
        op: &str,
        call: &Call<'_>,
        retry: Retry,
        timeout: Duration,
    ) -> StoreResult<Value> {
        // The resolution whose connection is in use, to drop it if the call times out.
        let mut in_use = None;
        let attempt = async {
            let mut sent = 0;
            loop {
                let mut master = self.master().await?;
                in_use = Some(master.generation);
                sent += 1;
                match call.run(&mut master.con).await {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        if !is_stale(&e) {
                            return Err(map_err(op, &e));
                        }
                        self.forget(master.generation);
                        in_use = None;
                        let again = refused_by_non_master(&e) || retry == Retry::Idempotent;
                        if !again || sent > 1 {
                            return Err(map_err(op, &e));
                        }
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                if let Some(generation) = in_use {
                    self.forget(generation);
                }
                Err(unavailable(format!(
                    "redis {op}: no answer within {timeout:?}"
                )))
            }
        }
    }

    fn current(&self) -> Option<Master> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the connection of this resolution, unless a newer one replaced it already.
    fn forget(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|m| m.generation == generation) {
            *current = None;
        }
    }

    /// The connection to the current master, resolved through the sentinels if there is
    /// none.
    async fn master(&self) -> StoreResult<Master> {
        if let Some(master) = self.current() {
            return Ok(master);
        }
        let _one_at_a_time = self.resolving.lock().await;
        if let Some(master) = self.current() {
            return Ok(master);
        }
        let con = self.resolve().await?;
        let master = Master {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            con,
        };
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(master.clone());
        Ok(master)
    }

    /// Asks every sentinel at once; the first that names a live master wins.
    async fn resolve(&self) -> StoreResult<MultiplexedConnection> {
        let mut lookups: FuturesUnordered<_> = self
            .sentinels
            .iter()
            .map(|sentinel| self.ask(sentinel))
            .collect();
        let mut last = String::from("no sentinel configured");
        while let Some(lookup) = lookups.next().await {
            match lookup {
                Ok(con) => return Ok(con),
                Err(why) => last = why,
            }
        }
        // Whatever went wrong, the master cannot be reached: never `Corrupt` here.
        Err(unavailable(format!(
            "redis sentinel: no master found (last: {last})"
        )))
    }

    /// Asks one sentinel for the master's address, connects to it and checks its role.
    async fn ask(&self, sentinel: &ConnectionInfo) -> Result<MultiplexedConnection, String> {
        let client = Client::open(sentinel.clone())
            .map_err(|e| format!("invalid sentinel address ({})", e.category()))?;
        let mut con = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| why("sentinel connect", &e))?;
        let address: Option<(String, u16)> = ::redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.master_name)
            .query_async(&mut con)
            .await
            .map_err(|e| why("sentinel lookup", &e))?;
        let Some((host, port)) = address else {
            return Err("a sentinel does not know the master name".into());
        };
        let info = ConnectionAddr::Tcp(host, port)
            .into_connection_info()
            .map_err(|e| format!("invalid master address ({})", e.category()))?
            .set_redis_settings(self.master_settings.clone());
        let client =
            Client::open(info).map_err(|e| format!("invalid master address ({})", e.category()))?;
        let mut master = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| why("master connect", &e))?;
        let role: Role = ::redis::cmd("ROLE")
            .query_async(&mut master)
            .await
            .map_err(|e| why("master role", &e))?;
        match role {
            Role::Primary { .. } => Ok(master),
            _ => Err("the address a sentinel named is not a master (failover in progress)".into()),
        }
    }
}

/// The reason of an error, as [`map_err`] words it (no detail text that could echo data).
fn why(op: &str, e: &RedisError) -> String {
    match map_err(op, e) {
        StoreError::Unavailable(why) | StoreError::Corrupt(why) => why,
    }
}
