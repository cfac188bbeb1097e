//! Background jobs of one broker process: store sweeping, configuration reload and the
//! delivery of back-channel logouts. Each
//! takes a shutdown token and returns once it is cancelled, which the server does when the
//! HTTP server stops.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config;
use crate::util;
use store::embedded::EmbeddedStore;
use store::SharedStore;

pub use crate::config::LiveConfig;

/// Deletes expired records of the embedded store once a minute, until `shutdown`.
pub async fn sweep(db: Arc<EmbeddedStore>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match db.sweep_async(util::now_millis()).await {
            Ok(n) if n > 0 => tracing::debug!(removed = n, "store swept"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "store sweep failed"),
        }
    }
}

/// Delivers the back-channel logouts that are due, twice a second, until `shutdown`. Every
/// instance runs it; the store's claims keep them from delivering one twice at a time.
pub async fn backchannel_logout(
    live: LiveConfig,
    store: SharedStore,
    http: reqwest::Client,
    clock: SharedClock,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let settings = live.load().settings.clone();
        // A delivery in flight finishes before shutdown is seen: a post takes at most the
        // outgoing client's timeout, and one cut off is retried after its lease anyway.
        if let Err(e) = crate::oidc::backchannel::deliver_due(
            &settings,
            store.as_ref(),
            &http,
            clock.now_millis(),
        )
        .await
        {
            tracing::warn!(error = %e, "back-channel logouts not claimed");
        }
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The SIGHUP stream.
#[cfg(unix)]
pub type Hangup = tokio::signal::unix::Signal;
/// The SIGHUP stream (none off Unix).
#[cfg(not(unix))]
pub type Hangup = ();

/// Installs the SIGHUP handler. Call it before the port is announced: until a handler is
/// installed, SIGHUP's default action ends the process.
pub fn hangup_handler() -> Option<Hangup> {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; reload on file change only");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// Reloads the configuration on SIGHUP or when its file changes. A new configuration is
/// validated first and swapped in whole; requests in flight finish with the one they
/// started with. An invalid one is logged problem by problem and the last good one keeps
/// running. Stops at `shutdown`.
pub async fn reload(live: LiveConfig, mut hangup: Option<Hangup>, shutdown: CancellationToken) {
    let path = live.load().settings.source.clone();
    crate::observe::config_applied(&path, false);
    let mut last = modified(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        #[cfg(unix)]
        let why = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => "file change",
            Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
        };
        #[cfg(not(unix))]
        let why = {
            let _ = &mut hangup;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => "file change",
            }
        };
        let now = modified(&path);
        if why == "file change" && now == last {
            continue;
        }
        last = now;
        apply(&live, why);
    }
}

/// Loads, validates and swaps in the configuration file; returns whether it was accepted.
pub fn apply(live: &LiveConfig, why: &str) -> bool {
    let current = live.load().settings.clone();
    // With a console, the file is the bootstrap of the version in force.
    let loaded = match &current.versioned {
        Some(v) => config::versioned::open(&current.source, current.mode, v),
        None => config::load(&current.source, current.mode),
    };
    match loaded {
        Ok(new) => {
            if new.file_listen != current.file_listen {
                tracing::warn!("`listen` changed: it takes effect at the next restart");
            }
            if std::mem::discriminant(&new.store) != std::mem::discriminant(&current.store)
                || new.redis_url != current.redis_url
            {
                tracing::warn!("`store` changed: it takes effect at the next restart");
            }
            // Not over a newer configuration version taken up meanwhile (it was opened
            // with this file too).
            crate::versions::swap_unless_older(live, new);
            tracing::info!(target: "audit", event = "config.reloaded", trigger = why, "configuration reloaded");
            true
        }
        Err(problems) => {
            crate::observe::config_rejected();
            for p in &problems {
                tracing::error!(problem = %p, "configuration rejected");
            }
            tracing::error!(
                target: "audit",
                event = "config.rejected",
                trigger = why,
                problems = problems.len(),
                "configuration rejected; the last good configuration keeps running"
            );
            false
        }
    }
}

/// The background jobs of a process and the token that stops them.
#[derive(Default)]
pub struct Jobs {
    shutdown: CancellationToken,
    running: Vec<tokio::task::JoinHandle<()>>,
}

impl Jobs {
    /// The token a job must watch.
    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Starts a job (made with [`Jobs::token`]).
    pub fn spawn(&mut self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        self.running.push(tokio::spawn(job));
    }

    /// Cancels every job and waits until each has returned.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let count = self.running.len();
        for job in self.running {
            if let Err(e) = job.await {
                tracing::warn!(error = %e, "a background job ended abnormally");
            }
        }
        tracing::info!(jobs = count, "background jobs stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_return_when_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let mut jobs = Jobs::default();
        let token = jobs.token();
        jobs.spawn(sweep(db.clone(), token.clone()));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        jobs.spawn(async move {
            token.cancelled().await;
            let _ = done_tx.send(());
        });
        // `stop` returns only once every job has returned: a sweep that ignored its token
        // would keep this test waiting.
        jobs.stop().await;
        assert!(done_rx.await.is_ok());
        // The job let go of its store handle.
        assert_eq!(Arc::strong_count(&db), 1);
    }
}
