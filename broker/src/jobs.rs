//! Background jobs of one broker process: store sweeping and configuration reload.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::web;

use crate::config;
use crate::state::{AppState, Live};
use crate::store::embedded::EmbeddedStore;
use crate::util;

/// Deletes expired records of the embedded store once a minute.
pub async fn sweep(db: Arc<EmbeddedStore>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        match db.sweep_async(util::now_millis()).await {
            Ok(n) if n > 0 => tracing::debug!(removed = n, "store swept"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "store sweep failed"),
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
/// running.
pub async fn reload(state: web::Data<AppState>, mut hangup: Option<Hangup>) {
    let path = state.settings().source.clone();
    crate::observe::config_applied(&path, false);
    let mut last = modified(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        #[cfg(unix)]
        let why = tokio::select! {
            _ = tick.tick() => "file change",
            Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
        };
        #[cfg(not(unix))]
        let why = {
            let _ = &mut hangup;
            tick.tick().await;
            "file change"
        };
        let now = modified(&path);
        if why == "file change" && now == last {
            continue;
        }
        last = now;
        apply(&state, why);
    }
}

/// Loads, validates and swaps in the configuration file; returns whether it was accepted.
pub fn apply(state: &AppState, why: &str) -> bool {
    let current = state.settings();
    match config::load(&current.source, current.mode) {
        Ok(new) => {
            if new.listen != current.listen {
                tracing::warn!("`listen` changed: it takes effect at the next restart");
            }
            if std::mem::discriminant(&new.store) != std::mem::discriminant(&current.store)
                || new.redis_url != current.redis_url
            {
                tracing::warn!("`store` changed: it takes effect at the next restart");
            }
            state.live.store(Arc::new(Live::new(Arc::new(new))));
            crate::observe::config_applied(&current.source, true);
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
