//! The behaviour every [`Store`] must have, as one suite both backends run
//! (`tests/store_conformance.rs`). It panics with a descriptive message on the first
//! deviation. Key names are random per run, so runs against a shared Redis never collide;
//! `now` is real time wherever Redis' own clock must agree with it.

use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;

use super::{Claimed, Millis, Rotation, SingleUse, Store, StoreResult};

const TTL: Duration = Duration::from_secs(60);
const TOMBSTONE: &[u8] = b"\x00used";

/// Runs every check against `store`.
pub async fn run_all(store: &dyn Store) {
    let keys = Keys::new();
    ping(store).await;
    put_get(store, &keys).await;
    put_many(store, &keys).await;
    get_many(store, &keys).await;
    expiry(store, &keys).await;
    durable(store, &keys).await;
    put_new(store, &keys).await;
    take(store, &keys).await;
    swap(store, &keys).await;
    delete(store, &keys).await;
    rotate(store, &keys).await;
    keeps_expiry(store, &keys).await;
    rate_limit(store, &keys).await;
    sets(store, &keys).await;
    concurrent_take(store, &keys).await;
    concurrent_rotate(store, &keys).await;
    rotate_single_use(store, &keys).await;
    concurrent_single_use(store, &keys).await;
    queue(store, &keys).await;
    queue_batches(store, &keys).await;
    concurrent_claims(store, &keys).await;
    cleanup(store, &keys).await;
}

/// Current Unix time in milliseconds.
pub fn real_now() -> Millis {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_else(|e| panic!("system clock before 1970: {e}"));
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// Random key names for one run. All of them share one `{hash-tag}`, as keys used together
/// in one operation must on Redis Cluster.
struct Keys {
    run: String,
}

impl Keys {
    fn new() -> Self {
        Self {
            run: format!("conformance-{:016x}", rand::random::<u64>()),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.run)
    }

    /// A queue name of this run (no braces: the store puts a queue under its own tag).
    fn queue(&self, name: &str) -> String {
        format!("{}-{name}", self.run)
    }
}

fn ids(claimed: &[Claimed]) -> Vec<&str> {
    let mut ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids
}

fn ok<T>(what: &str, result: StoreResult<T>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: store error: {e}"))
}

fn expect_eq<T: PartialEq + Debug>(what: &str, actual: T, expected: T) {
    assert_eq!(actual, expected, "conformance: {what}");
}

fn some(v: &[u8]) -> Option<Vec<u8>> {
    Some(v.to_vec())
}

async fn ping(store: &dyn Store) {
    ok("ping", store.ping().await);
}

async fn put_get(store: &dyn Store, keys: &Keys) {
    let k = keys.key("put-get");
    let now = real_now();
    expect_eq(
        "get of a key never written",
        ok("get", store.get(&k, now).await),
        None,
    );
    ok("put", store.put(&k, b"one", Some(TTL), now).await);
    expect_eq(
        "get after put",
        ok("get", store.get(&k, now).await),
        some(b"one"),
    );
    ok("put", store.put(&k, b"two", Some(TTL), now).await);
    expect_eq(
        "get after overwrite",
        ok("get", store.get(&k, now).await),
        some(b"two"),
    );
    // Binary values survive untouched.
    let binary = [0u8, 255, 10, 13, 0, 1];
    ok("put", store.put(&k, &binary, Some(TTL), now).await);
    expect_eq(
        "binary round trip",
        ok("get", store.get(&k, now).await),
        some(&binary),
    );
    ok("put", store.put(&k, b"", Some(TTL), now).await);
    expect_eq(
        "empty value round trip",
        ok("get", store.get(&k, now).await),
        some(b""),
    );
}

async fn put_many(store: &dyn Store, keys: &Keys) {
    let (a, b) = (keys.key("many-a"), keys.key("many-b"));
    let now = real_now();
    ok("put", store.put(&a, b"older", Some(TTL), now).await);
    ok(
        "put_many",
        store.put_many(&[&a, &b], b"both", Some(TTL), now).await,
    );
    for k in [&a, &b] {
        expect_eq(
            "get after put_many",
            ok("get", store.get(k, now).await),
            some(b"both"),
        );
    }
    // Written a minute ago with a one-second lifetime: both are gone.
    ok(
        "put_many",
        store
            .put_many(
                &[&a, &b],
                b"short",
                Some(Duration::from_secs(1)),
                now - 60_000,
            )
            .await,
    );
    for k in [&a, &b] {
        expect_eq(
            "put_many's values expire together",
            ok("get", store.get(k, now).await),
            None,
        );
    }
    ok(
        "put_many",
        store.put_many(&[&a, &b], b"kept", None, now).await,
    );
    for k in [&a, &b] {
        expect_eq(
            "put_many without a lifetime is durable",
            ok("get", store.get(k, now + 86_400_000).await),
            some(b"kept"),
        );
        ok("delete", store.delete(k, now).await);
    }
}

async fn get_many(store: &dyn Store, keys: &Keys) {
    // Three hash tags: on Redis Cluster the keys lie in different slots.
    let [a, b, c] = ["a", "b", "c"].map(|t| format!("{{{}-many-{t}}}:k", keys.run));
    let now = real_now();
    ok("put", store.put(&a, b"one", Some(TTL), now).await);
    ok("put", store.put(&c, b"three", Some(TTL), now).await);
    ok(
        "put",
        store
            .put(&b, b"gone", Some(Duration::from_secs(1)), now - 60_000)
            .await,
    );
    expect_eq(
        "get_many in the order of the keys, nothing for a missing or expired key",
        ok("get_many", store.get_many(&[&c, &b, &a, &c], now).await),
        vec![some(b"three"), None, some(b"one"), some(b"three")],
    );
    expect_eq(
        "get_many of no keys",
        ok("get_many", store.get_many(&[], now).await),
        Vec::new(),
    );
    for k in [&a, &b, &c] {
        ok("delete", store.delete(k, now).await);
    }
}

async fn expiry(store: &dyn Store, keys: &Keys) {
    let k = keys.key("expiry");
    let now = real_now();
    // Written a minute ago with a one-second TTL: long gone.
    ok(
        "put",
        store
            .put(&k, b"old", Some(Duration::from_secs(1)), now - 60_000)
            .await,
    );
    expect_eq(
        "get after expiry",
        ok("get", store.get(&k, now).await),
        None,
    );
    // Overwriting a live TTL record with an expired one removes it.
    ok("put", store.put(&k, b"live", Some(TTL), now).await);
    ok(
        "put",
        store
            .put(&k, b"dead", Some(Duration::from_secs(1)), now - 60_000)
            .await,
    );
    expect_eq(
        "put with an expiry in the past",
        ok("get", store.get(&k, now).await),
        None,
    );
}

async fn durable(store: &dyn Store, keys: &Keys) {
    let k = keys.key("durable");
    let now = real_now();
    ok("put durable", store.put(&k, b"forever", None, now).await);
    let later = now + 10 * 365 * 24 * 3600 * 1000;
    expect_eq(
        "durable record ten years later",
        ok("get", store.get(&k, later).await),
        some(b"forever"),
    );
    // A durable write replaces a TTL record and drops its expiry.
    let k2 = keys.key("durable-over-ttl");
    ok("put", store.put(&k2, b"ttl", Some(TTL), now).await);
    ok("put durable", store.put(&k2, b"durable", None, now).await);
    expect_eq(
        "durable overwrite of a TTL record ten years later",
        ok("get", store.get(&k2, later).await),
        some(b"durable"),
    );
}

async fn put_new(store: &dyn Store, keys: &Keys) {
    let k = keys.key("put-new");
    let now = real_now();
    expect_eq(
        "put_new on a fresh key",
        ok("put_new", store.put_new(&k, b"first", Some(TTL), now).await),
        true,
    );
    expect_eq(
        "put_new on a live key is refused",
        ok(
            "put_new",
            store.put_new(&k, b"second", Some(TTL), now).await,
        ),
        false,
    );
    expect_eq(
        "put_new refused leaves the value",
        ok("get", store.get(&k, now).await),
        some(b"first"),
    );

    let expired = keys.key("put-new-expired");
    ok(
        "put",
        store
            .put(
                &expired,
                b"stale",
                Some(Duration::from_secs(1)),
                now - 60_000,
            )
            .await,
    );
    expect_eq(
        "put_new on an expired key is accepted",
        ok(
            "put_new",
            store.put_new(&expired, b"fresh", Some(TTL), now).await,
        ),
        true,
    );
    expect_eq(
        "put_new over an expired key",
        ok("get", store.get(&expired, now).await),
        some(b"fresh"),
    );

    let durable = keys.key("put-new-durable");
    expect_eq(
        "durable put_new",
        ok("put_new", store.put_new(&durable, b"d", None, now).await),
        true,
    );
    expect_eq(
        "durable put_new on a durable key is refused",
        ok("put_new", store.put_new(&durable, b"e", None, now).await),
        false,
    );
    expect_eq(
        "durable put_new value",
        ok("get", store.get(&durable, now).await),
        some(b"d"),
    );
}

async fn sets(store: &dyn Store, keys: &Keys) {
    let k = keys.key("set");
    let now = real_now();
    expect_eq(
        "members of a missing set",
        ok("members", store.members(&k, now).await),
        Vec::<String>::new(),
    );
    for m in ["a", "b", "a"] {
        ok("add_member", store.add_member(&k, m, TTL, now).await);
    }
    let mut members = ok("members", store.members(&k, now).await);
    members.sort();
    expect_eq(
        "members, each once",
        members,
        vec!["a".to_string(), "b".to_string()],
    );

    let expired = keys.key("set-expired");
    ok(
        "add_member",
        store
            .add_member(&expired, "x", Duration::from_secs(1), now - 60_000)
            .await,
    );
    expect_eq(
        "members of an expired set",
        ok("members", store.members(&expired, now).await),
        Vec::<String>::new(),
    );
    ok("delete", store.delete(&k, now).await);
    expect_eq(
        "members after delete",
        ok("members", store.members(&k, now).await),
        Vec::<String>::new(),
    );
}

async fn take(store: &dyn Store, keys: &Keys) {
    let k = keys.key("take");
    let now = real_now();
    ok("put", store.put(&k, b"code", Some(TTL), now).await);
    expect_eq(
        "first take",
        ok("take", store.take(&k, now).await),
        some(b"code"),
    );
    expect_eq("second take", ok("take", store.take(&k, now).await), None);
    expect_eq("get after take", ok("get", store.get(&k, now).await), None);
    expect_eq(
        "take of a missing key",
        ok("take", store.take(&keys.key("take-missing"), now).await),
        None,
    );

    let expired = keys.key("take-expired");
    ok(
        "put",
        store
            .put(
                &expired,
                b"stale",
                Some(Duration::from_secs(1)),
                now - 60_000,
            )
            .await,
    );
    expect_eq(
        "take of an expired key",
        ok("take", store.take(&expired, now).await),
        None,
    );
}

async fn swap(store: &dyn Store, keys: &Keys) {
    let k = keys.key("swap");
    let now = real_now();
    ok("put", store.put(&k, b"code", Some(TTL), now).await);
    expect_eq(
        "swap returns the old value",
        ok("swap", store.swap(&k, TOMBSTONE, now).await),
        some(b"code"),
    );
    expect_eq(
        "swap leaves the tombstone",
        ok("get", store.get(&k, now).await),
        some(TOMBSTONE),
    );

    let missing = keys.key("swap-missing");
    expect_eq(
        "swap of a missing key",
        ok("swap", store.swap(&missing, TOMBSTONE, now).await),
        None,
    );
    expect_eq(
        "swap leaves a missing key missing",
        ok("get", store.get(&missing, now).await),
        None,
    );

    let expired = keys.key("swap-expired");
    ok(
        "put",
        store
            .put(
                &expired,
                b"stale",
                Some(Duration::from_secs(1)),
                now - 60_000,
            )
            .await,
    );
    expect_eq(
        "swap of an expired key",
        ok("swap", store.swap(&expired, TOMBSTONE, now).await),
        None,
    );
    expect_eq(
        "swap leaves an expired key missing",
        ok("get", store.get(&expired, now).await),
        None,
    );
}

async fn delete(store: &dyn Store, keys: &Keys) {
    let k = keys.key("delete");
    let now = real_now();
    ok("put", store.put(&k, b"session", Some(TTL), now).await);
    expect_eq(
        "delete of a live key",
        ok("delete", store.delete(&k, now).await),
        true,
    );
    expect_eq(
        "get after delete",
        ok("get", store.get(&k, now).await),
        None,
    );
    expect_eq(
        "second delete",
        ok("delete", store.delete(&k, now).await),
        false,
    );

    let durable = keys.key("delete-durable");
    ok("put durable", store.put(&durable, b"d", None, now).await);
    expect_eq(
        "delete of a durable key",
        ok("delete", store.delete(&durable, now).await),
        true,
    );
    expect_eq(
        "get after durable delete",
        ok("get", store.get(&durable, now).await),
        None,
    );

    let expired = keys.key("delete-expired");
    ok(
        "put",
        store
            .put(
                &expired,
                b"stale",
                Some(Duration::from_secs(1)),
                now - 60_000,
            )
            .await,
    );
    expect_eq(
        "delete of an expired key",
        ok("delete", store.delete(&expired, now).await),
        false,
    );
}

async fn rotate_once(
    store: &dyn Store,
    guard: &str,
    old: &str,
    new: &str,
    now: Millis,
) -> Rotation {
    ok(
        "rotate",
        store.rotate(guard, old, TOMBSTONE, new, now).await,
    )
}

async fn rotate(store: &dyn Store, keys: &Keys) {
    let now = real_now();
    let guard = keys.key("rot-family");
    let (r1, r2, r3) = (keys.key("rot-1"), keys.key("rot-2"), keys.key("rot-3"));
    ok(
        "put guard",
        store.put(&guard, b"family", Some(TTL), now).await,
    );
    ok("put", store.put(&r1, b"token-1", Some(TTL), now).await);

    expect_eq(
        "first rotation",
        rotate_once(store, &guard, &r1, &r2, now).await,
        Rotation::Rotated(b"token-1".to_vec()),
    );
    expect_eq(
        "new key after rotation holds the old value",
        ok("get", store.get(&r2, now).await),
        some(b"token-1"),
    );
    expect_eq(
        "old key after rotation",
        ok("get", store.get(&r1, now).await),
        some(TOMBSTONE),
    );

    expect_eq(
        "second rotation of the same old key",
        rotate_once(store, &guard, &r1, &r3, now).await,
        Rotation::Reused(TOMBSTONE.to_vec()),
    );
    expect_eq(
        "reuse writes no new key",
        ok("get", store.get(&r3, now).await),
        None,
    );
    expect_eq(
        "reuse keeps the tombstone",
        ok("get", store.get(&r1, now).await),
        some(TOMBSTONE),
    );

    let unknown = keys.key("rot-unknown");
    let r4 = keys.key("rot-4");
    expect_eq(
        "rotation of an unknown key",
        rotate_once(store, &guard, &unknown, &r4, now).await,
        Rotation::Missing,
    );
    expect_eq(
        "missing rotation writes no new key",
        ok("get", store.get(&r4, now).await),
        None,
    );
    expect_eq(
        "missing rotation writes no old key",
        ok("get", store.get(&unknown, now).await),
        None,
    );

    let stale = keys.key("rot-expired");
    ok(
        "put",
        store
            .put(&stale, b"stale", Some(Duration::from_secs(1)), now - 60_000)
            .await,
    );
    expect_eq(
        "rotation of an expired key",
        rotate_once(store, &guard, &stale, &r4, now).await,
        Rotation::Missing,
    );
    expect_eq(
        "expired rotation writes no new key",
        ok("get", store.get(&r4, now).await),
        None,
    );

    // Family revoked: the guard is gone, so even a live token does not rotate.
    expect_eq(
        "delete guard",
        ok("delete", store.delete(&guard, now).await),
        true,
    );
    expect_eq(
        "rotation after the guard is deleted",
        rotate_once(store, &guard, &r2, &r4, now).await,
        Rotation::Missing,
    );
    expect_eq(
        "revoked rotation writes no new key",
        ok("get", store.get(&r4, now).await),
        None,
    );
    expect_eq(
        "revoked rotation leaves the old value",
        ok("get", store.get(&r2, now).await),
        some(b"token-1"),
    );

    // A durable old record gives a durable new one.
    let durable_guard = keys.key("rot-durable-family");
    let (d1, d2) = (keys.key("rot-durable-1"), keys.key("rot-durable-2"));
    ok(
        "put guard",
        store.put(&durable_guard, b"family", Some(TTL), now).await,
    );
    ok("put durable", store.put(&d1, b"token-d", None, now).await);
    expect_eq(
        "rotation of a durable key",
        rotate_once(store, &durable_guard, &d1, &d2, now).await,
        Rotation::Rotated(b"token-d".to_vec()),
    );
    let later = now + 10 * 365 * 24 * 3600 * 1000;
    expect_eq(
        "new key of a durable rotation ten years later",
        ok("get", store.get(&d2, later).await),
        some(b"token-d"),
    );
    expect_eq(
        "tombstone of a durable rotation ten years later",
        ok("get", store.get(&d1, later).await),
        some(TOMBSTONE),
    );
}

/// `swap` and `rotate` keep the old record's expiry: the tombstones they leave vanish when
/// the original record would have, and so does the new key `rotate` writes. Real time,
/// because Redis expires by its own clock.
async fn keeps_expiry(store: &dyn Store, keys: &Keys) {
    let short = Duration::from_millis(300);
    let now = real_now();
    let swapped = keys.key("expiry-swap");
    ok("put", store.put(&swapped, b"code", Some(short), now).await);
    expect_eq(
        "swap",
        ok("swap", store.swap(&swapped, TOMBSTONE, now).await),
        some(b"code"),
    );

    let guard = keys.key("expiry-family");
    let (old, new) = (keys.key("expiry-rot-old"), keys.key("expiry-rot-new"));
    ok(
        "put guard",
        store.put(&guard, b"family", Some(TTL), now).await,
    );
    ok("put", store.put(&old, b"token", Some(short), now).await);
    expect_eq(
        "rotation",
        rotate_once(store, &guard, &old, &new, now).await,
        Rotation::Rotated(b"token".to_vec()),
    );
    expect_eq(
        "rotated new key holds the old value",
        ok("get", store.get(&new, real_now()).await),
        some(b"token"),
    );

    // Poll (bounded) until both tombstones are gone. Each round reads the new key, then the
    // old one, then the new one again: since both expire at the same instant, the new key
    // must not be gone while the old one is still there, nor be there once it is gone.
    let mut left = (true, true);
    for _ in 0..100 {
        let new_before = ok("get", store.get(&new, real_now()).await);
        left = (
            ok("get", store.get(&swapped, real_now()).await).is_some(),
            ok("get", store.get(&old, real_now()).await).is_some(),
        );
        let new_after = ok("get", store.get(&new, real_now()).await);
        if left.1 {
            expect_eq(
                "rotated new key while the old key is live",
                new_before,
                some(b"token"),
            );
        } else {
            expect_eq("rotated new key once the old key expired", new_after, None);
        }
        if left == (false, false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !left.0,
        "conformance: the tombstone left by swap must keep the record's expiry"
    );
    assert!(
        !left.1,
        "conformance: the tombstone left by rotate must keep the record's expiry"
    );
    expect_eq(
        "rotated new key expires with the old key",
        ok("get", store.get(&new, real_now()).await),
        None,
    );
}

async fn rate_limit(store: &dyn Store, keys: &Keys) {
    let window = Duration::from_secs(60);
    let window_ms = 60_000;
    let limit = 3;
    let k = keys.key("rate");
    // Start of the next window: every hit below falls inside one window whose end lies in
    // the future for Redis too.
    let start = (real_now() / window_ms + 1) * window_ms;
    for i in 1..=limit {
        let d = ok(
            "hit_rate_limit",
            store.hit_rate_limit(&k, limit, window, start + i).await,
        );
        assert!(
            d.allowed,
            "conformance: hit {i} of {limit} must be allowed: {d:?}"
        );
        expect_eq("rate count", d.count, i);
        expect_eq(
            "retry_after is the rest of the window",
            d.retry_after,
            Duration::from_millis(window_ms - i),
        );
    }
    let d = ok(
        "hit_rate_limit",
        store.hit_rate_limit(&k, limit, window, start + 10).await,
    );
    assert!(
        !d.allowed,
        "conformance: hit over the limit must be refused: {d:?}"
    );
    expect_eq("rate count over the limit", d.count, limit + 1);
    assert!(
        d.retry_after <= window && d.retry_after == Duration::from_millis(window_ms - 10),
        "conformance: retry_after must be the rest of the window: {d:?}"
    );

    expect_eq(
        "rate_count reads the window's hits without counting one",
        ok("rate_count", store.rate_count(&k, window, start + 11).await),
        limit + 1,
    );
    expect_eq(
        "rate_count again",
        ok("rate_count", store.rate_count(&k, window, start + 12).await),
        limit + 1,
    );

    let other = keys.key("rate-other");
    expect_eq(
        "rate_count of a key never hit",
        ok(
            "rate_count",
            store.rate_count(&other, window, start + 10).await,
        ),
        0,
    );
    let d = ok(
        "hit_rate_limit",
        store
            .hit_rate_limit(&other, limit, window, start + 10)
            .await,
    );
    assert!(
        d.allowed && d.count == 1,
        "conformance: rate keys are independent: {d:?}"
    );

    let next = start + window_ms;
    let d = ok(
        "hit_rate_limit",
        store.hit_rate_limit(&k, limit, window, next + 5).await,
    );
    assert!(
        d.allowed && d.count == 1,
        "conformance: a new window starts fresh: {d:?}"
    );
    expect_eq(
        "rate_count in the new window",
        ok("rate_count", store.rate_count(&k, window, next + 6).await),
        1,
    );
    expect_eq(
        "retry_after in the new window",
        d.retry_after,
        Duration::from_millis(window_ms - 5),
    );
}

async fn concurrent_take(store: &dyn Store, keys: &Keys) {
    let k = keys.key("race-take");
    let now = real_now();
    ok("put", store.put(&k, b"once", Some(TTL), now).await);
    let results = join_all((0..20).map(|_| store.take(&k, now))).await;
    let winners = results
        .into_iter()
        .map(|r| ok("concurrent take", r))
        .filter(Option::is_some)
        .count();
    expect_eq("concurrent takes that got the value", winners, 1);
}

async fn concurrent_rotate(store: &dyn Store, keys: &Keys) {
    let now = real_now();
    let guard = keys.key("race-family");
    let old = keys.key("race-old");
    ok(
        "put guard",
        store.put(&guard, b"family", Some(TTL), now).await,
    );
    ok("put", store.put(&old, b"token", Some(TTL), now).await);
    let news: Vec<String> = (0..20)
        .map(|i| keys.key(&format!("race-new-{i}")))
        .collect();
    let results = join_all(
        news.iter()
            .map(|new| store.rotate(&guard, &old, TOMBSTONE, new, now)),
    )
    .await;
    let results: Vec<Rotation> = results
        .into_iter()
        .map(|r| ok("concurrent rotate", r))
        .collect();
    let rotated = results
        .iter()
        .filter(|r| matches!(r, Rotation::Rotated(_)))
        .count();
    let reused = results
        .iter()
        .filter(|r| matches!(r, Rotation::Reused(_)))
        .count();
    expect_eq("concurrent rotations that won", rotated, 1);
    expect_eq("concurrent rotations that saw reuse", reused, 19);
    let mut written = 0;
    for new in &news {
        if ok("get", store.get(new, now).await).is_some() {
            written += 1;
        }
    }
    expect_eq("new keys written by concurrent rotations", written, 1);
}

fn single_use(key: &str) -> SingleUse<'_> {
    SingleUse { key, ttl: TTL }
}

async fn rotate_single_use(store: &dyn Store, keys: &Keys) {
    let now = real_now();
    let guard = keys.key("su-family");
    let (r1, r2, r3) = (keys.key("su-1"), keys.key("su-2"), keys.key("su-3"));
    let (m1, m2, m3) = (keys.key("su-m1"), keys.key("su-m2"), keys.key("su-m3"));
    let use_once = |old: &str, new: &str, marker: &str| {
        let (old, new, marker) = (old.to_string(), new.to_string(), marker.to_string());
        let guard = guard.clone();
        async move {
            ok(
                "rotate_single_use",
                store
                    .rotate_single_use(&guard, &old, TOMBSTONE, &new, single_use(&marker), now)
                    .await,
            )
        }
    };
    ok(
        "put guard",
        store.put(&guard, b"family", Some(TTL), now).await,
    );
    ok("put", store.put(&r1, b"token-1", Some(TTL), now).await);
    expect_eq(
        "rotation behind a fresh marker",
        use_once(&r1, &r2, &m1).await,
        Rotation::Rotated(b"token-1".to_vec()),
    );
    expect_eq(
        "the marker is written",
        ok("get", store.get(&m1, now).await).is_some(),
        true,
    );
    expect_eq(
        "a used marker with the new token",
        use_once(&r2, &r3, &m1).await,
        Rotation::Replayed,
    );
    expect_eq(
        "a replay writes no new key",
        ok("get", store.get(&r3, now).await),
        None,
    );
    expect_eq(
        "a replay leaves the token live",
        ok("get", store.get(&r2, now).await),
        some(b"token-1"),
    );
    expect_eq(
        "the old token behind a fresh marker",
        use_once(&r1, &r3, &m2).await,
        Rotation::Reused(TOMBSTONE.to_vec()),
    );
    expect_eq(
        "a reuse uses up its marker too",
        use_once(&r2, &r3, &m2).await,
        Rotation::Replayed,
    );
    let unknown = keys.key("su-unknown");
    expect_eq(
        "an unknown token behind a fresh marker",
        use_once(&unknown, &r3, &m3).await,
        Rotation::Missing,
    );
    expect_eq(
        "a missing token uses up its marker too",
        ok("get", store.get(&m3, now).await).is_some(),
        true,
    );
}

/// One proof sent many times at once with one token: one rotation, the others replays.
async fn concurrent_single_use(store: &dyn Store, keys: &Keys) {
    let now = real_now();
    let guard = keys.key("sur-family");
    let old = keys.key("sur-old");
    let marker = keys.key("sur-marker");
    ok(
        "put guard",
        store.put(&guard, b"family", Some(TTL), now).await,
    );
    ok("put", store.put(&old, b"token", Some(TTL), now).await);
    let news: Vec<String> = (0..20).map(|i| keys.key(&format!("sur-new-{i}"))).collect();
    let results = join_all(news.iter().map(|new| {
        store.rotate_single_use(&guard, &old, TOMBSTONE, new, single_use(&marker), now)
    }))
    .await;
    let results: Vec<Rotation> = results
        .into_iter()
        .map(|r| ok("concurrent rotate_single_use", r))
        .collect();
    let rotated = results
        .iter()
        .filter(|r| matches!(r, Rotation::Rotated(_)))
        .count();
    let replayed = results.iter().filter(|r| **r == Rotation::Replayed).count();
    expect_eq("concurrent single-use rotations that won", rotated, 1);
    expect_eq(
        "concurrent single-use rotations refused as replays",
        replayed,
        19,
    );
}

async fn queue(store: &dyn Store, keys: &Keys) {
    let q = keys.queue("queue");
    let now: Millis = 1_000_000;
    let lease = Duration::from_secs(30);
    ok("enqueue", store.enqueue(&q, "a", b"first", now - 1).await);
    ok(
        "enqueue",
        store.enqueue(&q, "b", b"later", now + 60_000).await,
    );
    let claimed = ok("claim", store.claim_due(&q, 10, lease, now).await);
    expect_eq(
        "claim takes the due item only",
        claimed.clone(),
        vec![Claimed {
            id: "a".into(),
            value: b"first".to_vec(),
            lease_until: now + 30_000,
        }],
    );
    let again = ok("claim", store.claim_due(&q, 10, lease, now + 29_999).await);
    expect_eq("a leased item is not claimed again", again, vec![]);
    // The claimer stopped: once the lease ends another one takes the item.
    let retaken = ok("claim", store.claim_due(&q, 10, lease, now + 30_000).await);
    expect_eq("a lapsed lease is claimed again", ids(&retaken), vec!["a"]);
    expect_eq(
        "the new claim's lease",
        retaken[0].lease_until,
        now + 60_000,
    );
    let stale = ok(
        "settle",
        store.settle(&q, "a", claimed[0].lease_until, None).await,
    );
    expect_eq("a lapsed claim cannot settle", stale, false);
    let lease_until = retaken[0].lease_until;
    let kept = ok(
        "settle",
        store
            .settle(&q, "a", lease_until, Some((b"second", now + 45_000)))
            .await,
    );
    expect_eq("the holder reschedules", kept, true);
    let twice = ok("settle", store.settle(&q, "a", lease_until, None).await);
    expect_eq("a settled claim is over", twice, false);
    expect_eq(
        "a rescheduled item waits for its due time",
        ok("claim", store.claim_due(&q, 10, lease, now + 44_999).await),
        vec![],
    );
    let retry = ok("claim", store.claim_due(&q, 10, lease, now + 45_000).await);
    expect_eq("a retry carries its new value", ids(&retry), vec!["a"]);
    expect_eq(
        "the retry's value",
        retry[0].value.clone(),
        b"second".to_vec(),
    );
    let done = ok(
        "settle",
        store.settle(&q, "a", retry[0].lease_until, None).await,
    );
    expect_eq("the holder removes", done, true);
    let later = ok(
        "claim",
        store.claim_due(&q, 10, lease, now + 3_600_000).await,
    );
    expect_eq("a removed item never comes back", ids(&later), vec!["b"]);
    ok(
        "settle",
        store.settle(&q, "b", later[0].lease_until, None).await,
    );
    // Replacing an item of the same id.
    ok("enqueue", store.enqueue(&q, "c", b"old", now).await);
    ok("enqueue", store.enqueue(&q, "c", b"new", now).await);
    let replaced = ok("claim", store.claim_due(&q, 10, lease, now).await);
    expect_eq("enqueue replaces by id", replaced.len(), 1);
    expect_eq(
        "the replacing value",
        replaced[0].value.clone(),
        b"new".to_vec(),
    );
    ok(
        "settle",
        store.settle(&q, "c", replaced[0].lease_until, None).await,
    );
    // Queues are separate.
    ok(
        "enqueue",
        store.enqueue(&keys.queue("other"), "d", b"x", now).await,
    );
    expect_eq(
        "another queue's item",
        ok("claim", store.claim_due(&q, 10, lease, now).await),
        vec![],
    );
    let other = ok(
        "claim",
        store.claim_due(&keys.queue("other"), 10, lease, now).await,
    );
    expect_eq("its own queue's item", ids(&other), vec!["d"]);
    ok(
        "settle",
        store
            .settle(&keys.queue("other"), "d", other[0].lease_until, None)
            .await,
    );
}

async fn queue_batches(store: &dyn Store, keys: &Keys) {
    let q = keys.queue("batches");
    let now: Millis = 1_000_000;
    let lease = Duration::from_secs(30);
    for id in ["x", "y", "z"] {
        ok("enqueue", store.enqueue(&q, id, b"v", now).await);
    }
    let first = ok("claim", store.claim_due(&q, 2, lease, now).await);
    expect_eq("claim takes at most max", first.len(), 2);
    let second = ok("claim", store.claim_due(&q, 2, lease, now).await);
    expect_eq("the rest comes next", second.len(), 1);
    let mut all: Vec<&str> = ids(&first);
    all.extend(ids(&second));
    all.sort_unstable();
    expect_eq("every item once", all, vec!["x", "y", "z"]);
    for c in first.iter().chain(&second) {
        ok("settle", store.settle(&q, &c.id, c.lease_until, None).await);
    }
}

/// Twenty claimers at once (several broker instances): each item goes to exactly one.
async fn concurrent_claims(store: &dyn Store, keys: &Keys) {
    let q = keys.queue("race-claims");
    let now: Millis = 1_000_000;
    let names: Vec<String> = (0..10).map(|i| format!("item-{i:02}")).collect();
    for id in &names {
        ok("enqueue", store.enqueue(&q, id, b"v", now).await);
    }
    let results =
        join_all((0..20).map(|_| store.claim_due(&q, 10, Duration::from_secs(30), now))).await;
    let claimed: Vec<Claimed> = results
        .into_iter()
        .flat_map(|r| ok("concurrent claim", r))
        .collect();
    let mut got: Vec<&str> = ids(&claimed);
    got.dedup();
    expect_eq("claims in all", claimed.len(), names.len());
    expect_eq(
        "each item claimed once",
        got,
        names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for c in &claimed {
        ok("settle", store.settle(&q, &c.id, c.lease_until, None).await);
    }
}

/// Durable records would stay in a shared Redis forever; TTL records expire by themselves.
async fn cleanup(store: &dyn Store, keys: &Keys) {
    let now = real_now();
    for name in [
        "durable",
        "durable-over-ttl",
        "put-new-durable",
        "rot-durable-1",
        "rot-durable-2",
    ] {
        ok("cleanup", store.delete(&keys.key(name), now).await);
    }
}
