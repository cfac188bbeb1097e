//! One-time codes and the rate limits around them, on the shared [`KeyValue`] state.
//!
//! * A code is 6 random digits, lives a short time, is stored only as a keyed hash (bound
//!   to its flow and to a per-code nonce), allows a limited number of attempts (counted
//!   atomically before the comparison, so parallel guesses cannot exceed it) and is
//!   single use. A new code may be sent only after a cooldown.
//! * A [`Guard`] counts each action (a verification at the bank, an SMS, a wrong code)
//!   against every dimension at once: the citizen ID number, the phone number and the
//!   client address. When one dimension goes over its limit it is locked for the rest of
//!   the window, and a lock on any dimension blocks every action that involves it, so an
//!   attacker cannot get round a limit by switching the phone, the ID number or the
//!   address. Keys hold only keyed hashes.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::kv::{KeyValue, KvError};
use common::hash::KeyedHash;

/// Digits of a code.
pub const CODE_DIGITS: usize = 6;

/// A fresh code: 6 uniformly random digits.
pub fn generate_code() -> String {
    let n: u32 = rand::rng().random_range(0..1_000_000);
    format!("{n:06}")
}

/// Random bytes as hex (flow ids, nonces).
pub fn random_id() -> String {
    let b: [u8; 16] = rand::rng().random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How codes behave.
#[derive(Debug, Clone, Copy)]
pub struct CodePolicy {
    /// Lifetime of a code.
    pub ttl: Duration,
    /// Attempts per code.
    pub max_attempts: u64,
    /// Time before a new code may be sent.
    pub resend_cooldown: Duration,
}

#[derive(Serialize, Deserialize)]
struct CodeRecord {
    mac: String,
    nonce: String,
}

/// What checking a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right code; it is used up.
    Right,
    /// Wrong code; `remaining` attempts are left for this code.
    Wrong {
        /// Attempts left.
        remaining: u64,
    },
    /// No attempts left: the code is gone, a new one is needed.
    Exhausted,
    /// No live code (expired, already used, or never sent).
    Expired,
}

/// One-time codes of one connector.
#[derive(Debug, Clone)]
pub struct Codes {
    hasher: KeyedHash,
    prefix: String,
    /// The policy.
    pub policy: CodePolicy,
}

impl Codes {
    /// Codes stored under `prefix`, hashed with `hasher`.
    pub fn new(hasher: KeyedHash, prefix: &str, policy: CodePolicy) -> Self {
        Codes {
            hasher,
            prefix: prefix.into(),
            policy,
        }
    }

    fn mac(&self, flow: &str, nonce: &str, code: &str) -> String {
        let mac = self
            .hasher
            .mac(&[b"otp", flow.as_bytes(), nonce.as_bytes(), code.as_bytes()]);
        mac.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn key(&self, flow: &str) -> String {
        format!("{}:otp:{flow}", self.prefix)
    }

    /// Starts the resend cooldown of a flow. `None` when a code may be sent now (and the
    /// cooldown has started); otherwise the time left.
    pub async fn start_cooldown(
        &self,
        kv: &dyn KeyValue,
        flow: &str,
        now: u64,
    ) -> Result<Option<Duration>, KvError> {
        let key = format!("{}:cool:{flow}", self.prefix);
        let until = now.saturating_add(ms(self.policy.resend_cooldown));
        if self.policy.resend_cooldown.is_zero()
            || kv
                .put_new(
                    &key,
                    until.to_string().as_bytes(),
                    self.policy.resend_cooldown,
                    now,
                )
                .await?
        {
            return Ok(None);
        }
        let left = kv
            .get(&key, now)
            .await?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|u| u.saturating_sub(now))
            .unwrap_or(1000);
        Ok(Some(Duration::from_millis(left.max(1000))))
    }

    /// Makes a new code for a flow (replacing any earlier one) and returns it in clear, to
    /// be sent; only its keyed hash is stored.
    pub async fn issue(&self, kv: &dyn KeyValue, flow: &str, now: u64) -> Result<String, KvError> {
        let code = generate_code();
        let nonce = random_id();
        let record = CodeRecord {
            mac: self.mac(flow, &nonce, &code),
            nonce,
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| KvError(e.to_string()))?;
        kv.put(&self.key(flow), &bytes, self.policy.ttl, now)
            .await?;
        Ok(code)
    }

    /// Checks a code: counts the attempt first, then compares in constant time; a right
    /// code is consumed atomically (two parallel right answers: one wins).
    pub async fn check(
        &self,
        kv: &dyn KeyValue,
        flow: &str,
        code: &str,
        now: u64,
    ) -> Result<CodeCheck, KvError> {
        let key = self.key(flow);
        let Some(record) = kv
            .get(&key, now)
            .await?
            .and_then(|b| serde_json::from_slice::<CodeRecord>(&b).ok())
        else {
            return Ok(CodeCheck::Expired);
        };
        let attempts = kv
            .hit(
                &format!("{}:att:{flow}:{}", self.prefix, record.nonce),
                self.policy.max_attempts,
                self.policy.ttl,
                now,
            )
            .await?;
        if !attempts.allowed {
            kv.delete(&key, now).await?;
            return Ok(CodeCheck::Exhausted);
        }
        let given = self.mac(flow, &record.nonce, code.trim());
        if bool::from(given.as_bytes().ct_eq(record.mac.as_bytes())) {
            // Single use: only the request that removes the record wins.
            return Ok(match kv.take(&key, now).await? {
                Some(_) => CodeCheck::Right,
                None => CodeCheck::Expired,
            });
        }
        let remaining = self.policy.max_attempts.saturating_sub(attempts.count);
        if remaining == 0 {
            kv.delete(&key, now).await?;
        }
        Ok(CodeCheck::Wrong { remaining })
    }
}

/// Limits of one action, per dimension, in one window (0 = no limit on that dimension).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PerDimension {
    /// Per citizen ID number.
    pub per_id: u64,
    /// Per phone number.
    pub per_phone: u64,
    /// Per client address.
    pub per_address: u64,
}

/// The dimensions one request touches, as keyed-hash tags.
#[derive(Debug, Clone)]
pub struct Guard {
    prefix: String,
    dims: Vec<(&'static str, String)>,
}

impl Guard {
    /// A guard over the given (dimension, value) pairs; values are hashed here. Empty values
    /// are left out.
    pub fn new(hasher: &KeyedHash, prefix: &str, dims: &[(&'static str, &str)]) -> Self {
        Guard {
            prefix: prefix.into(),
            dims: dims
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(d, v)| (*d, hasher.tag(d, v)))
                .collect(),
        }
    }

    fn lock_key(&self, dim: &str, tag: &str) -> String {
        format!("{}:lock:{dim}:{tag}", self.prefix)
    }

    /// The time left on the longest lock of any dimension, if one is locked (the locks of
    /// every dimension read with one call: one round trip, one per node on Redis Cluster).
    pub async fn locked(&self, kv: &dyn KeyValue, now: u64) -> Result<Option<Duration>, KvError> {
        let keys: Vec<String> = self
            .dims
            .iter()
            .map(|(dim, tag)| self.lock_key(dim, tag))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let longest = kv
            .get_many(&keys, now)
            .await?
            .into_iter()
            .flatten()
            .filter_map(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
            .filter(|until| *until > now)
            .max();
        Ok(longest.map(|u| Duration::from_millis(u.saturating_sub(now))))
    }

    /// Counts one `action` against every dimension. A dimension over its limit is locked
    /// until its window ends; returns the longest such time, if any went over.
    pub async fn count(
        &self,
        kv: &dyn KeyValue,
        action: &str,
        limits: PerDimension,
        window: Duration,
        now: u64,
    ) -> Result<Option<Duration>, KvError> {
        let mut longest: Option<Duration> = None;
        for (dim, tag) in &self.dims {
            let limit = match *dim {
                "id" => limits.per_id,
                "phone" => limits.per_phone,
                "address" => limits.per_address,
                _ => 0,
            };
            if limit == 0 {
                continue;
            }
            let hit = kv
                .hit(
                    &format!("{}:rl:{action}:{dim}:{tag}", self.prefix),
                    limit,
                    window,
                    now,
                )
                .await?;
            if !hit.allowed {
                let wait = hit.retry_after.max(Duration::from_secs(1));
                let until = now.saturating_add(ms(wait));
                kv.put(
                    &self.lock_key(dim, tag),
                    until.to_string().as_bytes(),
                    wait,
                    now,
                )
                .await?;
                longest = Some(longest.map_or(wait, |l| l.max(wait)));
            }
        }
        Ok(longest)
    }
}

/// An attempt counted by [`Guard::attempt`] before its check: a success is recorded with
/// [`Attempt::succeeded`], so only failures use up the limit.
#[derive(Debug)]
#[must_use = "a success must be recorded, or it counts as a failure"]
pub struct Attempt {
    /// The successes counter of each limited dimension.
    successes: Vec<String>,
    /// The window the attempts are counted in.
    window: Duration,
    /// When the attempt was counted: its success is given back in that same window.
    counted_at: u64,
}

impl Attempt {
    /// Records that the checked answer was right: this attempt no longer counts. One atomic
    /// increment per dimension, in the window the attempt was counted in, so two right
    /// answers at once are both given back.
    pub async fn succeeded(self, kv: &dyn KeyValue) -> Result<(), KvError> {
        for key in &self.successes {
            kv.hit(key, UNLIMITED, self.window, self.counted_at).await?;
        }
        Ok(())
    }
}

async fn read_count(kv: &dyn KeyValue, key: &str, now: u64) -> Result<u64, KvError> {
    Ok(kv
        .get(key, now)
        .await?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0))
}

/// A limit no counter reaches: [`KeyValue::hit`] then only counts.
const UNLIMITED: u64 = u32::MAX as u64;

impl Guard {
    /// Where versions before 2026-12-04 counted successes (a read, then a write). Such a
    /// count lives at most one window after an upgrade and is given back until it ends; it
    /// is read on every attempt over the limit (one more read then) until a later release
    /// drops it, when every instance has run this version for a window.
    fn legacy_successes(&self, action: &str, dim: &str, tag: &str) -> String {
        format!("{}:rl:{action}-ok:{dim}:{tag}", self.prefix)
    }

    fn limit_of(dim: &str, limits: PerDimension) -> u64 {
        match dim {
            "id" => limits.per_id,
            "phone" => limits.per_phone,
            "address" => limits.per_address,
            _ => 0,
        }
    }

    /// Counts one `action` against every dimension BEFORE its check (a password, an
    /// answer), in one atomic increment each, so parallel guesses can never get more
    /// checks than the limit: of N concurrent attempts over a limit L, at most L pass.
    /// Failures are what counts: a right answer is given back by [`Attempt::succeeded`].
    /// `Err(wait)`: over the limit (the dimension is locked until its window ends); the
    /// check must not be made.
    pub async fn attempt(
        &self,
        kv: &dyn KeyValue,
        action: &str,
        limits: PerDimension,
        window: Duration,
        now: u64,
    ) -> Result<Result<Attempt, Duration>, KvError> {
        let mut successes = Vec::new();
        let mut longest: Option<Duration> = None;
        for (dim, tag) in &self.dims {
            let limit = Self::limit_of(dim, limits);
            if limit == 0 {
                continue;
            }
            let attempts = format!("{}:rl:{action}:{dim}:{tag}", self.prefix);
            let given_back = format!("{}:rl:{action}-right:{dim}:{tag}", self.prefix);
            let hit = kv.hit(&attempts, UNLIMITED, window, now).await?;
            // Successes only lower the count: within the limit they need not be read.
            let over = hit.count > limit
                && hit.count.saturating_sub(
                    kv.hits(&given_back, window, now).await?.saturating_add(
                        read_count(kv, &self.legacy_successes(action, dim, tag), now).await?,
                    ),
                ) > limit;
            if over {
                let wait = hit.retry_after.max(Duration::from_secs(1));
                let until = now.saturating_add(ms(wait));
                kv.put(
                    &self.lock_key(dim, tag),
                    until.to_string().as_bytes(),
                    wait,
                    now,
                )
                .await?;
                longest = Some(longest.map_or(wait, |l| l.max(wait)));
            }
            successes.push(given_back);
        }
        Ok(match longest {
            Some(wait) => Err(wait),
            None => Ok(Attempt {
                successes,
                window,
                counted_at: now,
            }),
        })
    }
}

/// Whole minutes, rounded up (for "try again in N minutes").
pub fn minutes(d: Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;

    fn codes(attempts: u64, cooldown: u64) -> Codes {
        Codes::new(
            KeyedHash::new(b"k"),
            "t",
            CodePolicy {
                ttl: Duration::from_secs(300),
                max_attempts: attempts,
                resend_cooldown: Duration::from_secs(cooldown),
            },
        )
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let c = generate_code();
            assert_eq!(c.len(), CODE_DIGITS);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[tokio::test]
    async fn a_code_is_single_use_hashed_and_expires() {
        let kv = MemoryKv::default();
        let c = codes(3, 60);
        let code = c.issue(&kv, "f", 0).await.expect("issue");
        let stored = kv.get("t:otp:f", 0).await.expect("get").expect("stored");
        assert!(
            !String::from_utf8_lossy(&stored).contains(&code),
            "stored in clear"
        );
        assert_eq!(
            c.check(&kv, "f", &code, 1).await.ok(),
            Some(CodeCheck::Right)
        );
        assert_eq!(
            c.check(&kv, "f", &code, 2).await.ok(),
            Some(CodeCheck::Expired)
        );
        let code = c.issue(&kv, "g", 0).await.expect("issue");
        assert_eq!(
            c.check(&kv, "g", &code, 300_001).await.ok(),
            Some(CodeCheck::Expired)
        );
    }

    #[tokio::test]
    async fn attempts_are_limited_per_code() {
        let kv = MemoryKv::default();
        let c = codes(3, 60);
        let code = c.issue(&kv, "f", 0).await.expect("issue");
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert_eq!(
            c.check(&kv, "f", wrong, 1).await.ok(),
            Some(CodeCheck::Wrong { remaining: 2 })
        );
        assert_eq!(
            c.check(&kv, "f", wrong, 2).await.ok(),
            Some(CodeCheck::Wrong { remaining: 1 })
        );
        assert_eq!(
            c.check(&kv, "f", wrong, 3).await.ok(),
            Some(CodeCheck::Wrong { remaining: 0 })
        );
        // The right code no longer works once the attempts are used up.
        assert_eq!(
            c.check(&kv, "f", &code, 4).await.ok(),
            Some(CodeCheck::Expired)
        );
        // A new code has fresh attempts.
        let code = c.issue(&kv, "f", 5).await.expect("issue");
        assert_eq!(
            c.check(&kv, "f", &code, 6).await.ok(),
            Some(CodeCheck::Right)
        );
    }

    #[tokio::test]
    async fn resend_waits_for_the_cooldown() {
        let kv = MemoryKv::default();
        let c = codes(3, 60);
        assert_eq!(c.start_cooldown(&kv, "f", 0).await.ok(), Some(None));
        assert_eq!(
            c.start_cooldown(&kv, "f", 15_000).await.ok(),
            Some(Some(Duration::from_secs(45)))
        );
        assert_eq!(c.start_cooldown(&kv, "f", 60_000).await.ok(), Some(None));
    }

    fn id_only(per_id: u64) -> PerDimension {
        PerDimension {
            per_id,
            per_phone: 0,
            per_address: 0,
        }
    }

    #[tokio::test]
    async fn right_answers_are_given_back_and_only_failures_lock() {
        let kv = MemoryKv::default();
        let h = KeyedHash::new(b"k");
        let w = Duration::from_secs(60);
        let g = Guard::new(&h, "t", &[("id", "ID1")]);
        for t in 0..5 {
            let right = g
                .attempt(&kv, "failed", id_only(2), w, t)
                .await
                .expect("kv");
            right
                .expect("right answers never reach the limit")
                .succeeded(&kv)
                .await
                .expect("kv");
        }
        for t in 5..7 {
            let wrong = g
                .attempt(&kv, "failed", id_only(2), w, t)
                .await
                .expect("kv");
            assert!(wrong.is_ok(), "failure {} of 2 is allowed", t - 4);
        }
        let third = g
            .attempt(&kv, "failed", id_only(2), w, 7)
            .await
            .expect("kv");
        assert!(third.is_err(), "the third failure is over the limit");
        assert!(g.locked(&kv, 8).await.expect("kv").is_some(), "and locks");
    }

    #[tokio::test]
    async fn successes_counted_by_earlier_versions_are_given_back() {
        let kv = MemoryKv::default();
        let h = KeyedHash::new(b"k");
        let w = Duration::from_secs(60);
        let g = Guard::new(&h, "t", &[("id", "ID1")]);
        let legacy = format!("t:rl:failed-ok:id:{}", h.tag("id", "ID1"));
        kv.put(&legacy, b"3", w, 0).await.expect("put");
        // Five attempts of which three were right (counted the old way): two failures.
        for t in 0..5 {
            let a = g
                .attempt(&kv, "failed", id_only(2), w, t)
                .await
                .expect("kv");
            assert!(a.is_ok(), "attempt {t} is within the limit");
        }
        let a = g
            .attempt(&kv, "failed", id_only(2), w, 5)
            .await
            .expect("kv");
        assert!(a.is_err(), "the third failure is over the limit");
    }

    #[tokio::test]
    async fn switching_one_dimension_does_not_escape_a_limit() {
        let kv = MemoryKv::default();
        let h = KeyedHash::new(b"k");
        let limits = PerDimension {
            per_id: 3,
            per_phone: 3,
            per_address: 10,
        };
        let w = Duration::from_secs(3600);
        // The same ID number with a new phone each time, from new addresses.
        for i in 0..3 {
            let g = Guard::new(
                &h,
                "t",
                &[
                    ("id", "ID1"),
                    ("phone", &format!("P{i}")),
                    ("address", &format!("A{i}")),
                ],
            );
            assert_eq!(g.locked(&kv, 0).await.ok(), Some(None));
            assert_eq!(g.count(&kv, "verify", limits, w, 0).await.ok(), Some(None));
        }
        let g = Guard::new(
            &h,
            "t",
            &[("id", "ID1"), ("phone", "P9"), ("address", "A9")],
        );
        assert!(g
            .count(&kv, "verify", limits, w, 0)
            .await
            .ok()
            .flatten()
            .is_some());
        // Now the ID number is locked, whatever phone or address comes with it.
        let g = Guard::new(
            &h,
            "t",
            &[("id", "ID1"), ("phone", "P10"), ("address", "A10")],
        );
        assert_eq!(
            g.locked(&kv, 1000).await.ok(),
            Some(Some(Duration::from_millis(3_599_000)))
        );
        // Another ID number with fresh phone and address is not.
        let g = Guard::new(
            &h,
            "t",
            &[("id", "ID2"), ("phone", "P11"), ("address", "A11")],
        );
        assert_eq!(g.locked(&kv, 1000).await.ok(), Some(None));
        // After the window the lock is gone.
        let g = Guard::new(&h, "t", &[("id", "ID1")]);
        assert_eq!(g.locked(&kv, 3_600_000).await.ok(), Some(None));
    }
}
