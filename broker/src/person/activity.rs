//! The citizen's recent activity: each sign-in to a platform, with the way in and the time,
//! kept for `records.activity_retention_days` (a job deletes older ones).

use records::{new_id, Activity, Records};

use crate::util::now_millis;

/// How many sign-ins the account page shows.
pub const SHOWN: usize = 10;

/// Records a sign-in; a failure is logged and does not stop the login it belongs to.
pub async fn record(records: &dyn Records, person: &str, client: &str, connector: &str) {
    let activity = Activity {
        id: new_id(),
        person: person.to_string(),
        client: client.to_string(),
        connector: connector.to_string(),
        at: now_millis(),
    };
    if let Err(e) = records.record_activity(&activity).await {
        tracing::warn!(error = %e, "a sign-in could not be added to the recent activity");
    }
}
