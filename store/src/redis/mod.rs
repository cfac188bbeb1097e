//! Store on Redis, shared by several broker instances: one server ([`RedisStore::connect`]),
//! a master found through Sentinel ([`RedisStore::connect_sentinel`], see [`sentinel`]) or
//! Redis Cluster ([`RedisStore::connect_cluster`]).
//!
//! Expiry is absolute (`PXAT now+ttl`) so the caller's `now` is honoured the same way as by
//! the embedded store; a `PXAT` in the past makes the record vanish at once. Reads rely on
//! Redis' own clock. Multi-key operations (`rotate`) run as one Lua script, so their keys
//! must share a `{hash-tag}` on Redis Cluster; the callers build them that way.
//!
//! Needs Redis 7.0 or later (`SET ... XX GET`, `GETDEL`, `PXAT`, `KEEPTTL`, `PEXPIRETIME`).
//!
//! Every call is bounded by `op_timeout`. A call that times out may still have been applied
//! by Redis (for instance a `take`): the caller sees `Unavailable` and the record is consumed,
//! which fails closed.

mod sentinel;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, ErrorKind, RedisError, RedisResult, Script, ScriptInvocation, Value};

pub use sentinel::SentinelOptions;

use super::{
    expiry, Claimed, Millis, RateDecision, Rotation, SingleUse, Store, StoreError, StoreResult,
};

/// The body of the rotation scripts. KEYS: guard, old, new. ARGV[1]: tombstone.
/// Returns {0} missing, {1, old value} rotated, {2, old value} reused.
/// `new` gets the old value and the old key's absolute expiry (`PEXPIRETIME`, exact; time
/// is frozen while a script runs), or no expiry if the old key has none. A plain `SET`
/// drops any expiry a previous `new` record had.
macro_rules! rotate_lua {
    () => {
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local old = redis.call('GET', KEYS[2])
if not old then return {0} end
if old == ARGV[1] then return {2, old} end
local at = redis.call('PEXPIRETIME', KEYS[2])
redis.call('SET', KEYS[2], ARGV[1], 'KEEPTTL')
if at > 0 then
  redis.call('SET', KEYS[3], old, 'PXAT', at)
else
  redis.call('SET', KEYS[3], old)
end
return {1, old}
"
    };
}

/// [`Store::rotate`]: KEYS guard, old, new; ARGV tombstone.
const ROTATE_LUA: &str = rotate_lua!();

/// The rotation behind a single-use marker. KEYS: guard, old, new, marker. ARGV:
/// tombstone, the marker's expiry (PXAT millis). Returns {3} when the marker existed
/// (nothing written), else as [`ROTATE_LUA`] (the marker then written).
const ROTATE_SINGLE_USE_LUA: &str = concat!(
    "if not redis.call('SET', KEYS[4], '1', 'NX', 'PXAT', ARGV[2]) then return {3} end",
    rotate_lua!()
);

/// KEYS: where to write. ARGV: the value, its expiry (PXAT millis) or '' for none.
const PUT_MANY_LUA: &str = r"
for _, key in ipairs(KEYS) do
  if ARGV[2] == '' then
    redis.call('SET', key, ARGV[1])
  else
    redis.call('SET', key, ARGV[1], 'PXAT', ARGV[2])
  end
end
return 1
";

/// KEYS: window counter. ARGV: window end (PEXPIREAT millis). Returns the count.
/// The expiry is set on every hit so a counter can never be left without one.
const RATE_LUA: &str = r"
local count = redis.call('INCR', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return count
";

/// KEYS: set. ARGV: member, expiry (PEXPIREAT millis).
const ADD_MEMBER_LUA: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
";

/// A durable queue is a sorted set of ids by due time (`q:{queue}:due`) and a hash of the
/// items (`q:{queue}:items`), under one hash tag so every queue script runs in one slot.
///
/// KEYS: due, items. ARGV: id, value, due.
const ENQUEUE_LUA: &str = r"
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
";

/// KEYS: due, items. ARGV: now, lease end, max. Returns {id, value, id, value, ...} of the
/// claimed items, each now due at the lease end. An id without an item is dropped.
const CLAIM_LUA: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[2], id)
  if v then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    table.insert(out, id)
    table.insert(out, v)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
";

/// KEYS: due, items. ARGV: id, lease end, '1' to keep (then value, due) or '0' to remove.
/// Returns 1 if the claim held (the item is still due at the lease end), else 0.
const SETTLE_LUA: &str = r"
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not at or tonumber(at) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
";

/// Redis Cluster: seed nodes and the credentials of every node.
#[derive(Clone, Default)]
pub struct ClusterOptions {
    /// `redis://host:port` of some nodes (the others are discovered); no credentials inside.
    pub nodes: Vec<String>,
    /// ACL user of the nodes.
    pub username: Option<String>,
    /// Password of the nodes.
    pub password: Option<String>,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// How the store reaches Redis.
#[derive(Clone)]
enum Backend {
    /// One server; the connection manager reconnects to it in the background.
    Single(Arc<SingleNode>),
    /// Redis Cluster; the cluster connection follows slot moves and node failovers.
    Cluster(ClusterConnection),
    /// The master Sentinel names, re-resolved after connection errors.
    Sentinel(Arc<sentinel::SentinelMaster>),
}

/// One Redis server, with one connection per thread that uses it: an actix worker then
/// talks to Redis from its own runtime, with no hop to another thread (and its wake-ups)
/// on every call.
struct SingleNode {
    client: ::redis::Client,
    op_timeout: Duration,
    /// Tells the connections of this store apart from those of another in the same thread.
    id: u64,
}

thread_local! {
    static CONNECTIONS: std::cell::RefCell<std::collections::HashMap<u64, ConnectionManager>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

impl SingleNode {
    fn config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(Some(self.op_timeout))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1))
    }

    /// A new connection manager, driven by the current thread's runtime.
    async fn open(&self) -> StoreResult<ConnectionManager> {
        match tokio::time::timeout(
            self.op_timeout,
            ConnectionManager::new_with_config(self.client.clone(), self.config()),
        )
        .await
        {
            Ok(Ok(con)) => Ok(con),
            Ok(Err(e)) => Err(map_err("connect", &e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis connect: no connection within {:?}",
                self.op_timeout
            ))),
        }
    }

    /// This thread's connection, opened on first use.
    async fn connection(&self) -> StoreResult<ConnectionManager> {
        if let Some(con) = CONNECTIONS.with(|c| c.borrow().get(&self.id).cloned()) {
            return Ok(con);
        }
        let con = self.open().await?;
        CONNECTIONS.with(|c| c.borrow_mut().insert(self.id, con.clone()));
        Ok(con)
    }
}

/// One Redis call, runnable again on another connection.
enum Call<'a> {
    Cmd(Cmd),
    Script(ScriptInvocation<'a>),
}

impl Call<'_> {
    async fn run(&self, con: &mut (impl ConnectionLike + Send)) -> RedisResult<Value> {
        match self {
            Call::Cmd(cmd) => cmd.query_async::<Value>(con).await,
            Call::Script(invocation) => invocation.invoke_async::<Value>(con).await,
        }
    }
}

/// Whether a call may be sent again after an error that leaves its outcome unknown (the
/// request may have been applied before the connection broke).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: sending them twice changes nothing.
    Idempotent,
    /// Writes: sent again only when the server certainly refused them (`READONLY`).
    OnlyIfRefused,
}

/// The Redis-backed store. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    backend: Backend,
    prefix: String,
    op_timeout: Duration,
    rotate: Script,
    rotate_single_use: Script,
    rate: Script,
    put_many: Script,
    add_member: Script,
    enqueue: Script,
    claim: Script,
    settle: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

/// Maps a Redis error without its detail text, which could echo data; I/O errors are the
/// exception since they only describe the socket.
fn map_err(op: &str, e: &RedisError) -> StoreError {
    let code = e.code().unwrap_or_default();
    if code == "WRONGTYPE" || e.kind() == ErrorKind::UnexpectedReturnType {
        return StoreError::Corrupt(format!("redis {op}: {} {code}", e.category()));
    }
    if e.kind() == ErrorKind::Io {
        return StoreError::Unavailable(format!("redis {op}: {e}"));
    }
    // Server errors (LOADING, READONLY, OOM, NOPERM, ...), auth and client errors: the
    // backend cannot serve us right now.
    StoreError::Unavailable(
        format!("redis {op}: {} {code}", e.category())
            .trim_end()
            .to_owned(),
    )
}

fn corrupt(op: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("redis {op}: unexpected reply, {what}"))
}

/// A bulk string or nil.
fn bytes_opt(op: &str, v: Value) -> StoreResult<Option<Vec<u8>>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        _ => Err(corrupt(op, "expected a string or nil")),
    }
}

fn int(op: &str, v: &Value) -> StoreResult<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        _ => Err(corrupt(op, "expected an integer")),
    }
}

/// `OK` (written) or nil (condition not met).
fn ok_or_nil(op: &str, v: Value) -> StoreResult<bool> {
    match v {
        Value::Okay => Ok(true),
        Value::SimpleString(s) if s == "OK" => Ok(true),
        Value::Nil => Ok(false),
        _ => Err(corrupt(op, "expected OK or nil")),
    }
}

/// `PXAT` argument for a TTL, never 0 (Redis rejects non-positive expiries).
fn pxat(ttl: Duration, now: Millis) -> Millis {
    expiry(Some(ttl), now).unwrap_or(now).max(1)
}

impl RedisStore {
    /// Connects to Redis. Fails with `Unavailable` if it cannot be reached within
    /// `op_timeout`; later outages are retried in the background by the connection manager.
    pub async fn connect(url: &str, prefix: &str, op_timeout: Duration) -> StoreResult<Self> {
        // The URL may carry a password: never put it, or the client's text about it, in errors.
        let client = ::redis::Client::open(url).map_err(|e| {
            StoreError::Unavailable(format!("invalid Redis URL ({})", e.category()))
        })?;
        let node = SingleNode {
            client,
            op_timeout,
            id: rand::random(),
        };
        // Fail fast when Redis cannot be reached at start; the connection is kept for this
        // thread.
        node.connection().await?;
        Ok(Self::new(
            Backend::Single(Arc::new(node)),
            prefix,
            op_timeout,
        ))
    }

    /// Connects to Redis Cluster through some of its nodes. Fails with `Unavailable` if the
    /// cluster cannot be reached within `op_timeout`; afterwards the cluster connection
    /// follows slot moves and failovers by itself.
    ///
    /// Keys used together in one script must share a `{hash-tag}`; a prefix with braces would
    /// change which part of the key is hashed, so it is refused.
    pub async fn connect_cluster(
        options: &ClusterOptions,
        prefix: &str,
        op_timeout: Duration,
    ) -> StoreResult<Self> {
        if prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(
                "redis cluster: the key prefix must not contain `{` or `}`".into(),
            ));
        }
        let mut builder = ClusterClient::builder(options.nodes.iter().map(String::as_str))
            .connection_timeout(op_timeout)
            .response_timeout(op_timeout)
            .retries(3);
        if let Some(username) = &options.username {
            builder = builder.username(username);
        }
        if let Some(password) = &options.password {
            builder = builder.password(password);
        }
        // Never the client's text: it could quote a node URL.
        let client = builder.build().map_err(|e| {
            StoreError::Unavailable(format!("invalid Redis Cluster nodes ({})", e.category()))
        })?;
        let con = match tokio::time::timeout(op_timeout, client.get_async_connection()).await {
            Ok(Ok(con)) => con,
            Ok(Err(e)) => return Err(map_err("connect", &e)),
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "redis connect: no cluster connection within {op_timeout:?}"
                )))
            }
        };
        Ok(Self::new(Backend::Cluster(con), prefix, op_timeout))
    }

    /// Connects to the master the sentinels name. Fails with `Unavailable` if no sentinel
    /// names a reachable master within `op_timeout`. After a connection error, a timeout or a
    /// `READONLY` answer the master is looked up again through the sentinels, so the store
    /// follows a failover without a restart.
    pub async fn connect_sentinel(
        options: &SentinelOptions,
        prefix: &str,
        op_timeout: Duration,
    ) -> StoreResult<Self> {
        let master = sentinel::SentinelMaster::new(options, op_timeout)?;
        master.connect().await?;
        Ok(Self::new(
            Backend::Sentinel(Arc::new(master)),
            prefix,
            op_timeout,
        ))
    }

    fn new(backend: Backend, prefix: &str, op_timeout: Duration) -> Self {
        Self {
            backend,
            prefix: prefix.to_owned(),
            op_timeout,
            rotate: Script::new(ROTATE_LUA),
            rotate_single_use: Script::new(ROTATE_SINGLE_USE_LUA),
            rate: Script::new(RATE_LUA),
            put_many: Script::new(PUT_MANY_LUA),
            add_member: Script::new(ADD_MEMBER_LUA),
            enqueue: Script::new(ENQUEUE_LUA),
            claim: Script::new(CLAIM_LUA),
            settle: Script::new(SETTLE_LUA),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The keys of a queue: its due-time index and its items, under one hash tag.
    fn queue_keys(&self, queue: &str) -> StoreResult<(String, String)> {
        if queue.contains(['{', '}']) {
            return Err(StoreError::Corrupt(
                "redis queue: a queue name must not contain `{` or `}`".into(),
            ));
        }
        Ok((
            self.key(&format!("q:{{{queue}}}:due")),
            self.key(&format!("q:{{{queue}}}:items")),
        ))
    }

    /// Runs one Redis call under the operation timeout.
    async fn timed<T>(
        &self,
        op: &str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(self.op_timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_err(op, &e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis {op}: no answer within {:?}",
                self.op_timeout
            ))),
        }
    }

    /// Runs one call on whatever backend, under the operation timeout.
    async fn exec(&self, op: &str, call: Call<'_>, retry: Retry) -> StoreResult<Value> {
        match &self.backend {
            Backend::Single(node) => {
                let mut con = node.connection().await?;
                self.timed(op, call.run(&mut con)).await
            }
            Backend::Cluster(con) => self.timed(op, call.run(&mut con.clone())).await,
            Backend::Sentinel(master) => master.exec(op, &call, retry, self.op_timeout).await,
        }
    }

    /// A write.
    async fn query(&self, op: &str, cmd: Cmd) -> StoreResult<Value> {
        self.exec(op, Call::Cmd(cmd), Retry::OnlyIfRefused).await
    }

    /// A read.
    async fn read(&self, op: &str, cmd: Cmd) -> StoreResult<Value> {
        self.exec(op, Call::Cmd(cmd), Retry::Idempotent).await
    }

    async fn script(&self, op: &str, invocation: ScriptInvocation<'_>) -> StoreResult<Value> {
        self.exec(op, Call::Script(invocation), Retry::OnlyIfRefused)
            .await
    }
}

/// The reply of [`ROTATE_LUA`] or [`ROTATE_SINGLE_USE_LUA`].
fn rotation(reply: Value) -> StoreResult<Rotation> {
    let Value::Array(items) = reply else {
        return Err(corrupt("rotate", "expected an array"));
    };
    let mut items = items.into_iter();
    let status = match items.next() {
        Some(v) => int("rotate", &v)?,
        None => return Err(corrupt("rotate", "empty array")),
    };
    let mut old_value = || match items.next().map(|v| bytes_opt("rotate", v)) {
        Some(Ok(Some(b))) => Ok(b),
        Some(Err(e)) => Err(e),
        _ => Err(corrupt("rotate", "missing old value")),
    };
    match status {
        0 => Ok(Rotation::Missing),
        1 => Ok(Rotation::Rotated(old_value()?)),
        2 => Ok(Rotation::Reused(old_value()?)),
        3 => Ok(Rotation::Replayed),
        _ => Err(corrupt("rotate", "unknown status")),
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<()> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PXAT").arg(pxat(ttl, now));
        }
        let reply = self.query("put", cmd).await?;
        if ok_or_nil("put", reply)? {
            Ok(())
        } else {
            Err(corrupt("put", "SET answered nil"))
        }
    }

    async fn put_many(
        &self,
        keys: &[&str],
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<()> {
        let mut call = self.put_many.prepare_invoke();
        for key in keys {
            call.key(self.key(key));
        }
        call.arg(value);
        match ttl {
            Some(ttl) => call.arg(pxat(ttl, now)),
            None => call.arg(""),
        };
        self.script("put_many", call).await.map(|_| ())
    }

    async fn put_new(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<bool> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PXAT").arg(pxat(ttl, now));
        }
        let reply = self.query("put_new", cmd).await?;
        ok_or_nil("put_new", reply)
    }

    async fn get(&self, key: &str, _now: Millis) -> StoreResult<Option<Vec<u8>>> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(self.key(key));
        bytes_opt("get", self.read("get", cmd).await?)
    }

    async fn get_many(&self, keys: &[&str], _now: Millis) -> StoreResult<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // On Redis Cluster the client splits an MGET by slot and joins the answers.
        let mut cmd = ::redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.key(key));
        }
        match self.read("get_many", cmd).await? {
            Value::Array(items) if items.len() == keys.len() => items
                .into_iter()
                .map(|v| bytes_opt("get_many", v))
                .collect(),
            _ => Err(corrupt("get_many", "expected one answer per key")),
        }
    }

    async fn take(&self, key: &str, _now: Millis) -> StoreResult<Option<Vec<u8>>> {
        let mut cmd = ::redis::cmd("GETDEL");
        cmd.arg(self.key(key));
        bytes_opt("take", self.query("take", cmd).await?)
    }

    async fn swap(
        &self,
        key: &str,
        tombstone: &[u8],
        _now: Millis,
    ) -> StoreResult<Option<Vec<u8>>> {
        // XX: a missing key stays missing; GET returns the previous value (or nil).
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(tombstone)
            .arg("XX")
            .arg("GET")
            .arg("KEEPTTL");
        bytes_opt("swap", self.query("swap", cmd).await?)
    }

    async fn delete(&self, key: &str, _now: Millis) -> StoreResult<bool> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key(key));
        Ok(int("delete", &self.query("delete", cmd).await?)? > 0)
    }

    async fn rotate(
        &self,
        guard: &str,
        old: &str,
        tombstone: &[u8],
        new: &str,
        _now: Millis,
    ) -> StoreResult<Rotation> {
        let mut call = self.rotate.prepare_invoke();
        call.key(self.key(guard))
            .key(self.key(old))
            .key(self.key(new))
            .arg(tombstone);
        rotation(self.script("rotate", call).await?)
    }

    async fn rotate_single_use(
        &self,
        guard: &str,
        old: &str,
        tombstone: &[u8],
        new: &str,
        once: SingleUse<'_>,
        now: Millis,
    ) -> StoreResult<Rotation> {
        if matches!(self.backend, Backend::Cluster(_)) {
            // The marker's key is not in the family's slot: two steps.
            return super::rotate_in_two_steps(self, guard, old, tombstone, new, once, now).await;
        }
        let mut call = self.rotate_single_use.prepare_invoke();
        call.key(self.key(guard))
            .key(self.key(old))
            .key(self.key(new))
            .key(self.key(once.key))
            .arg(tombstone)
            .arg(pxat(once.ttl, now));
        rotation(self.script("rotate_single_use", call).await?)
    }

    async fn hit_rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
        now: Millis,
    ) -> StoreResult<RateDecision> {
        let (counter, window_end) = crate::rate_window(key, window, now);
        let mut call = self.rate.prepare_invoke();
        call.key(self.key(&counter)).arg(window_end);
        let reply = self.script("hit_rate_limit", call).await?;
        let count = u64::try_from(int("hit_rate_limit", &reply)?)
            .map_err(|_| corrupt("hit_rate_limit", "negative count"))?;
        Ok(RateDecision {
            allowed: count <= limit,
            count,
            retry_after: Duration::from_millis(window_end.saturating_sub(now)),
        })
    }

    async fn rate_count(&self, key: &str, window: Duration, now: Millis) -> StoreResult<u64> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(self.key(&crate::rate_window(key, window, now).0));
        match bytes_opt("rate_count", self.read("rate_count", cmd).await?)? {
            None => Ok(0),
            Some(raw) => std::str::from_utf8(&raw)
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| corrupt("rate_count", "a count that is not a number")),
        }
    }

    async fn add_member(
        &self,
        key: &str,
        member: &str,
        ttl: Duration,
        now: Millis,
    ) -> StoreResult<()> {
        let mut call = self.add_member.prepare_invoke();
        call.key(self.key(key)).arg(member).arg(pxat(ttl, now));
        self.script("add_member", call).await.map(|_| ())
    }

    async fn members(&self, key: &str, _now: Millis) -> StoreResult<Vec<String>> {
        let mut cmd = ::redis::cmd("SMEMBERS");
        cmd.arg(self.key(key));
        match self.read("members", cmd).await? {
            Value::Array(items) | Value::Set(items) => items
                .into_iter()
                .map(|v| match bytes_opt("members", v)? {
                    Some(b) => String::from_utf8(b).map_err(|_| corrupt("members", "not UTF-8")),
                    None => Err(corrupt("members", "nil member")),
                })
                .collect(),
            Value::Nil => Ok(Vec::new()),
            _ => Err(corrupt("members", "expected a set")),
        }
    }

    async fn enqueue(&self, queue: &str, id: &str, value: &[u8], due: Millis) -> StoreResult<()> {
        let (due_key, items_key) = self.queue_keys(queue)?;
        let mut call = self.enqueue.prepare_invoke();
        call.key(due_key).key(items_key).arg(id).arg(value).arg(due);
        self.script("enqueue", call).await.map(|_| ())
    }

    async fn claim_due(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
        now: Millis,
    ) -> StoreResult<Vec<Claimed>> {
        let (due_key, items_key) = self.queue_keys(queue)?;
        let lease_until = expiry(Some(lease), now).unwrap_or(now);
        let mut call = self.claim.prepare_invoke();
        call.key(due_key)
            .key(items_key)
            .arg(now)
            .arg(lease_until)
            .arg(max);
        let Value::Array(items) = self.script("claim_due", call).await? else {
            return Err(corrupt("claim_due", "expected an array"));
        };
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let Some(id) = items.next() {
            let id = bytes_opt("claim_due", id)?
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| corrupt("claim_due", "an id that is not UTF-8"))?;
            let value = match items.next().map(|v| bytes_opt("claim_due", v)) {
                Some(Ok(Some(v))) => v,
                Some(Err(e)) => return Err(e),
                _ => return Err(corrupt("claim_due", "an id without its value")),
            };
            out.push(Claimed {
                id,
                value,
                lease_until,
            });
        }
        Ok(out)
    }

    async fn settle(
        &self,
        queue: &str,
        id: &str,
        lease_until: Millis,
        next: Option<(&[u8], Millis)>,
    ) -> StoreResult<bool> {
        let (due_key, items_key) = self.queue_keys(queue)?;
        let mut call = self.settle.prepare_invoke();
        call.key(due_key).key(items_key).arg(id).arg(lease_until);
        match next {
            Some((value, due)) => call.arg("1").arg(value).arg(due),
            None => call.arg("0"),
        };
        Ok(int("settle", &self.script("settle", call).await?)? == 1)
    }

    async fn keys_with_prefix(&self, prefix: &str, _now: Millis) -> StoreResult<Vec<String>> {
        if matches!(self.backend, Backend::Cluster(_)) {
            return Err(StoreError::Unavailable(
                "keys_with_prefix: not on Redis Cluster (move the records from each node)".into(),
            ));
        }
        let mut pattern = String::new();
        for c in self.key(prefix).chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        let mut cursor = "0".to_string();
        let mut out = Vec::new();
        loop {
            let mut cmd = ::redis::cmd("SCAN");
            cmd.arg(&cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let Value::Array(parts) = self.read("keys_with_prefix", cmd).await? else {
                return Err(corrupt("keys_with_prefix", "expected an array"));
            };
            let mut parts = parts.into_iter();
            let next = bytes_opt("keys_with_prefix", parts.next().unwrap_or(Value::Nil))?
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| corrupt("keys_with_prefix", "no cursor"))?;
            if let Some(Value::Array(keys)) = parts.next() {
                for k in keys {
                    if let Some(b) = bytes_opt("keys_with_prefix", k)? {
                        let key = String::from_utf8(b)
                            .map_err(|_| corrupt("keys_with_prefix", "not UTF-8"))?;
                        if let Some(rest) = key.strip_prefix(&self.prefix) {
                            out.push(rest.to_string());
                        }
                    }
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn ping(&self) -> StoreResult<()> {
        match self.read("ping", ::redis::cmd("PING")).await? {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            Value::BulkString(b) if b == b"PONG" => Ok(()),
            _ => Err(corrupt("ping", "expected PONG")),
        }
    }
}
