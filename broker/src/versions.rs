//! Versioned configuration at run time: seeding version 1 from the file, publishing a
//! checked version (compare-and-set), and every instance taking up the newest version
//! within a second of its publication, or refusing it (keeping the last good one) and
//! saying why, where the console shows it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use records::{AuditRow, ConfigVersion, InstanceReport, SharedRecords};
use tokio_util::sync::CancellationToken;

use crate::config::LiveConfig;
use crate::config::{versioned, Problem, Settings};
use store::{StoreError, StoreResult};

/// How often an instance asks for the newest version.
pub const POLL: Duration = Duration::from_secs(1);
/// How often an instance reports what it runs, when nothing changes.
const REPORT: Duration = Duration::from_secs(5);
/// An instance whose report is older than this is gone (the console leaves it out).
pub const GONE_AFTER_MS: u64 = 30_000;

/// This process's name among the instances, and what it refused last.
pub struct Instance {
    /// Host name, listen address and process id.
    pub name: String,
    /// The version refused, why, and when (it is tried again after [`RETRY_REFUSED`]: a
    /// key file may have been put in place since).
    refused: Mutex<Option<(u64, String, std::time::Instant)>>,
}

/// How long a refused version is left alone before this instance tries it again.
const RETRY_REFUSED: Duration = Duration::from_secs(30);

impl Instance {
    /// This process.
    pub fn new(listen: &str) -> Instance {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_else(|| "localhost".into());
        Instance {
            name: format!("{host} {listen} pid {}", std::process::id()),
            refused: Mutex::new(None),
        }
    }

    fn refused(&self) -> Option<(u64, String)> {
        self.refused
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|(v, why, _)| (*v, why.clone())))
    }

    /// Whether `version` was refused here less than [`RETRY_REFUSED`] ago.
    fn refused_lately(&self, version: u64) -> bool {
        self.refused.lock().ok().is_some_and(|r| {
            r.as_ref()
                .is_some_and(|(v, _, at)| *v == version && at.elapsed() < RETRY_REFUSED)
        })
    }

    fn set_refused(&self, r: Option<(u64, String)>) {
        if let Ok(mut slot) = self.refused.lock() {
            *slot = r.map(|(v, why)| (v, why, std::time::Instant::now()));
        }
    }
}

/// At start, with a console: seeds version 1 from the file when there is none yet, and
/// opens the newest version that opens here (the newer ones are reported as refused); when
/// none of the newest opens, the broker does not start.
pub async fn start(
    settings: Arc<Settings>,
    records: &SharedRecords,
    instance: &Instance,
    now: u64,
) -> Result<Arc<Settings>, String> {
    if settings.console.is_none() {
        return Ok(settings);
    }
    if records.config_head().await.map_err(|e| e.to_string())? == 0 {
        let text = std::fs::read_to_string(&settings.source).map_err(|e| e.to_string())?;
        let document = versioned::seed(&text)?;
        let row = AuditRow::new(
            now,
            "system",
            "config.seeded",
            "bootstrap",
            "config",
            serde_json::json!({ "version": 1 }),
        );
        // Two instances starting at once both try; one seeds, the other reads its seed.
        records
            .publish_config(
                0,
                &document,
                "bootstrap",
                "seeded from the configuration file",
                now,
                &[row],
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    // The newest version that opens here; never the file's own connectors and clients once
    // versions exist (they may hold a platform removed since).
    let history = records
        .config_history(START_CANDIDATES)
        .await
        .map_err(|e| e.to_string())?;
    let mut refused: Option<(u64, String)> = None;
    for version in history {
        let version = Arc::new(version);
        match versioned::open(&settings.source, settings.mode, &version) {
            Ok(mut s) => {
                // What the command line said (`--listen`) holds over the file.
                s.listen = settings.listen.clone();
                tracing::info!(version = version.version, "configuration version in force");
                if let Some((v, why)) = refused {
                    tracing::error!(version = v, problems = %why, running = version.version, "the newest configuration version does not open here; an earlier one runs");
                    instance.set_refused(Some((v, why)));
                }
                return Ok(Arc::new(s));
            }
            Err(problems) => {
                refused.get_or_insert((version.version, told(&problems)));
            }
        }
    }
    match refused {
        Some((v, why)) => Err(format!(
            "no configuration version of the records opens with this file (the newest, {v}: {why})"
        )),
        None => Ok(settings),
    }
}

/// How many of the newest versions start tries, newest first.
const START_CANDIDATES: usize = 20;

/// Problems in one line.
pub fn told(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Swaps in a configuration (requests in flight keep theirs) unless a newer configuration
/// version is in force already: the follower, a publication and a file reload may open
/// versions at the same time, and the last to finish must not undo a newer one. Keeps the
/// address this process listens on (the command line's `--listen` holds over the file).
/// Returns whether it swapped.
pub fn swap_unless_older(live: &LiveConfig, mut settings: Settings) -> bool {
    settings.listen = live.load().settings.listen.clone();
    let path = settings.source.clone();
    let version = settings.config_version();
    let new = Arc::new(crate::oidc::discovery::live(Arc::new(settings)));
    let before = live.rcu(|current| {
        if current.settings.config_version() > version {
            current.clone()
        } else {
            new.clone()
        }
    });
    let swapped = before.settings.config_version() <= version;
    if swapped {
        crate::observe::config_applied(&path, true);
    }
    swapped
}

/// Takes up the newest version if it is newer than the one in force; returns whether the
/// configuration changed.
pub async fn catch_up(
    live: &LiveConfig,
    records: &SharedRecords,
    instance: &Instance,
) -> StoreResult<bool> {
    let current = live.load().settings.clone();
    if current.console.is_none() {
        return Ok(false);
    }
    let head = records.config_head().await?;
    if head <= current.config_version() || instance.refused_lately(head) {
        return Ok(false);
    }
    let Some(version) = records.config_version(Some(head)).await? else {
        return Ok(false);
    };
    let version = Arc::new(version);
    match versioned::open(&current.source, current.mode, &version) {
        Ok(settings) => {
            if !swap_unless_older(live, settings) {
                return Ok(false);
            }
            instance.set_refused(None);
            tracing::info!(target: "audit", event = "config.applied", version = head, author = %version.author, "configuration version applied");
            Ok(true)
        }
        Err(problems) => {
            crate::observe::config_rejected();
            let why = told(&problems);
            tracing::error!(target: "audit", event = "config.refused", version = head, problems = %why, "configuration version refused on this instance; the last good one keeps running");
            instance.set_refused(Some((head, why)));
            Ok(false)
        }
    }
}

/// Says what this instance runs.
pub async fn report(
    live: &LiveConfig,
    records: &SharedRecords,
    instance: &Instance,
    now: u64,
) -> StoreResult<()> {
    let version = live.load().settings.config_version();
    let problem = instance
        .refused()
        .map(|(v, why)| format!("refused version {v}: {why}"))
        .unwrap_or_default();
    records
        .report_instance(&InstanceReport {
            instance: instance.name.clone(),
            version,
            problem,
            seen: now,
        })
        .await?;
    Ok(())
}

/// Follows the newest version every second and reports every five, until `shutdown`.
pub async fn follow(
    live: LiveConfig,
    records: SharedRecords,
    instance: Arc<Instance>,
    clock: crate::clock::SharedClock,
    shutdown: CancellationToken,
) {
    // Runs without a console too: one added by a reload is followed from then on (a
    // broker without one asks the records nothing).
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since_report = REPORT;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let changed = match catch_up(&live, &records, &instance).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "configuration versions cannot be read");
                false
            }
        };
        since_report += POLL;
        if live.load().settings.console.is_none() {
            continue;
        }
        if changed || since_report >= REPORT {
            since_report = Duration::ZERO;
            if let Err(e) = report(&live, &records, &instance, clock.now_millis()).await {
                tracing::warn!(error = %e, "instance report not written");
            }
        }
    }
}

/// What "Check" (the console's and `POST /admin/config/check`) finds in a draft.
#[derive(Debug)]
pub enum DraftCheck {
    /// Its problems by key: those `check-config` finds (the whole bootstrap with the draft's
    /// connectors and clients), or else the upstream providers it adds or changes whose
    /// discovery document cannot be read.
    Refused(Vec<Problem>),
    /// Its lines against the version it was edited from (see [`versioned::diff`]).
    Changes(Vec<(char, String)>),
}

/// Checks `document` as a draft edited from version `edited_from` (`None`: the newest).
pub async fn check_draft(
    settings: &Settings,
    records: &SharedRecords,
    document: &str,
    edited_from: Option<u64>,
) -> Result<DraftCheck, records::RecordsError> {
    let opened = match versioned::check(&settings.source, settings.mode, document, versioned::DRAFT)
    {
        Ok(opened) => opened,
        Err(problems) => return Ok(DraftCheck::Refused(problems)),
    };
    let before = records
        .config_version(edited_from)
        .await?
        .map(|v| v.document)
        .unwrap_or_default();
    let unreachable = probe_new_providers(&before, document, &opened).await;
    if !unreachable.is_empty() {
        return Ok(DraftCheck::Refused(unreachable));
    }
    Ok(DraftCheck::Changes(versioned::diff(&before, document)))
}

/// The upstream providers (`oidc`) that `document` adds or changes against `before`, each
/// asked for its discovery document (within its own timeout): one that cannot be read is a
/// problem of its `issuer`, so a mistyped provider is refused before it goes live.
pub async fn probe_new_providers(
    before: &str,
    document: &str,
    settings: &Settings,
) -> Vec<Problem> {
    let entries = |text: &str| -> Vec<toml::Value> {
        toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|mut t| t.remove("connectors"))
            .and_then(|c| match c {
                toml::Value::Array(a) => Some(a),
                _ => None,
            })
            .unwrap_or_default()
    };
    let old = entries(before);
    let mut problems = Vec::new();
    for entry in entries(document) {
        let id = entry.get("id").and_then(|v| v.as_str()).unwrap_or_default();
        let is_oidc =
            entry.get("type").and_then(|v| v.as_str()) == Some(connectors::catalogue::OIDC);
        if !is_oidc || old.contains(&entry) {
            continue;
        }
        let Some(opened) = settings.connector(id) else {
            continue;
        };
        if let connectors::Health::Down { reason } = opened.connector.health().await {
            problems.push(Problem {
                file: versioned::DRAFT.to_string(),
                line: None,
                key: format!("connectors[\"{id}\"].settings.issuer"),
                reason: format!("its discovery document cannot be read: {reason}"),
            });
        }
    }
    problems
}

/// The outcome of a publication.
pub enum Published {
    /// Published as this version and in force on this instance.
    Live(u64),
    /// The document has problems: nothing was published.
    Refused(Vec<Problem>),
    /// Another version was published since `expected`: nothing was published.
    Conflict {
        /// The newest version now.
        head: u64,
    },
}

/// Checks `document` like `check-config`, publishes it as `expected + 1` when the newest
/// version is still `expected`, with its audit row, and takes it up here at once.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    live: &LiveConfig,
    records: &SharedRecords,
    instance: &Instance,
    expected: u64,
    document: &str,
    author: &str,
    source: &str,
    note: &str,
    now: u64,
) -> StoreResult<Published> {
    let current = live.load().settings.clone();
    if current.console.is_none() {
        return Err(StoreError::Unavailable(
            "no console: the configuration is the file".into(),
        ));
    }
    // A version no store could take (the form's or the API's number is the caller's).
    let Some(next) = expected
        .checked_add(1)
        .filter(|n| i64::try_from(*n).is_ok())
    else {
        return Ok(Published::Conflict {
            head: records.config_head().await?,
        });
    };
    let draft = ConfigVersion {
        version: next,
        document: document.to_string(),
        author: author.to_string(),
        note: note.to_string(),
        at: now,
    };
    let settings = match versioned::open(&current.source, current.mode, &Arc::new(draft.clone())) {
        Ok(s) => s,
        Err(problems) => return Ok(Published::Refused(problems)),
    };
    let before = current
        .versioned
        .as_ref()
        .map(|v| v.document.as_str())
        .unwrap_or_default();
    let unreachable = probe_new_providers(before, document, &settings).await;
    if !unreachable.is_empty() {
        return Ok(Published::Refused(unreachable));
    }
    let row = AuditRow::new(
        now,
        author,
        "config.published",
        source,
        "config",
        serde_json::json!({ "version": next, "note": note }),
    );
    match records
        .publish_config(expected, document, author, note, now, &[row])
        .await?
    {
        Some(v) => {
            tracing::info!(target: "audit", event = "config.published", version = v, author = %author, "configuration version published");
            // Unless something newer came in between (another instance's publication).
            swap_unless_older(live, settings);
            instance.set_refused(None);
            Ok(Published::Live(v))
        }
        None => Ok(Published::Conflict {
            head: records.config_head().await?,
        }),
    }
}
