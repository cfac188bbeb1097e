//! The citizen's recent activity: each sign-in to a platform, with the way in and the time,
//! kept for `records.activity_retention_days` (a job deletes older ones).

use records::{new_id, Activity, Records};

/// How many sign-ins the account page shows.
pub const SHOWN: usize = 10;

/// Records a sign-in; a failure is logged and does not stop the login it belongs to.
pub async fn record(records: &dyn Records, person: &str, client: &str, connector: &str, now: u64) {
    let activity = Activity {
        id: new_id(),
        person: person.to_string(),
        client: client.to_string(),
        connector: connector.to_string(),
        at: now,
    };
    if let Err(e) = records.record_activity(&activity).await {
        tracing::warn!(error = %e, "a sign-in could not be added to the recent activity");
    }
}

/// The most recent sign-ins as the account page lists them: platform, way in and time (UTC),
/// in the citizen's language.
pub async fn shown(
    settings: &crate::config::Settings,
    t: &crate::i18n::Tr,
    records: &dyn Records,
    person: &str,
) -> store::StoreResult<Vec<String>> {
    let recent = records.activity(person, SHOWN).await?;
    Ok(recent
        .iter()
        .map(|a| {
            let platform = settings
                .clients
                .get(&a.client)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| a.client.clone());
            let way = settings
                .connector(&a.connector)
                .map(|c| t.pick(&c.name).to_string())
                .unwrap_or_else(|| a.connector.clone());
            let args = std::collections::BTreeMap::from([
                ("platform".to_string(), platform),
                ("way".to_string(), way),
                ("when".to_string(), utc_minute(a.at)),
            ]);
            t.with("account-activity-item", &args)
        })
        .collect())
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time in milliseconds.
pub fn utc_minute(millis: u64) -> String {
    let secs = millis / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02} UTC")
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_written_as_utc_minutes() {
        assert_eq!(super::utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc_minute(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc_minute(1_796_162_537_687), "2026-12-01 22:02 UTC");
    }
}
