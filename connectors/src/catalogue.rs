//! The catalogue of connector types: from a `type` in the configuration to an opened
//! connector (Dex's `ConnectorsConfig` + `Open`), and which settings are for demos only.
//! Opening validates the settings, which is also what `check-config` does, so a connector
//! that opens here will start. A new identity source is one file in this crate plus one
//! line here.

use std::path::Path;
use std::sync::Arc;

use crate::{bank_card, ctid, legacy, oidc, test_citizens, Connector, Typed};

/// The type of the test-citizens connector.
pub const TEST_CITIZENS: &str = "test-citizens";

/// The type of an upstream OpenID Provider (a national identity app such as VNeID).
pub const OIDC: &str = "oidc";

/// The type of bank-card real-name verification with an SMS code.
pub const BANK_CARD: &str = "bank-card";

/// The type of an old portal's accounts during a transition period.
pub const LEGACY_ACCOUNTS: &str = "legacy-accounts";

/// The type of CTID (network identity credential with face verification).
pub const CTID: &str = "ctid";

/// Every known connector type.
pub const TYPES: &[&str] = &[TEST_CITIZENS, OIDC, BANK_CARD, LEGACY_ACCOUNTS, CTID];

/// Why a connector did not open.
pub enum OpenError {
    /// No connector has this type.
    UnknownType,
    /// Settings problems as (key path below `settings`, reason).
    Settings(Vec<(String, String)>),
}

/// Opens a connector of `kind` with its `settings` table; relative paths in the settings
/// (secret files) are relative to `base_dir`, the configuration file's folder.
pub fn open(
    kind: &str,
    settings: &toml::Table,
    base_dir: &Path,
) -> Result<Arc<dyn Connector>, OpenError> {
    match kind {
        TEST_CITIZENS => {
            let config: test_citizens::Config = parse(settings)?;
            let c = test_citizens::TestCitizens::open(config).map_err(OpenError::Settings)?;
            Ok(Arc::new(Typed(c)))
        }
        OIDC => {
            let config: oidc::Config = parse(settings)?;
            let c = oidc::OidcConnector::open(config, base_dir).map_err(OpenError::Settings)?;
            Ok(Arc::new(c))
        }
        BANK_CARD => {
            let config: bank_card::Config = parse(settings)?;
            let c = bank_card::BankCard::open(config, base_dir).map_err(OpenError::Settings)?;
            Ok(Arc::new(Typed(c)))
        }
        LEGACY_ACCOUNTS => {
            let config: legacy::Config = parse(settings)?;
            let c = legacy::LegacyAccounts::open(config, base_dir).map_err(OpenError::Settings)?;
            Ok(Arc::new(Typed(c)))
        }
        CTID => {
            let config: ctid::Config = parse(settings)?;
            let c = ctid::Ctid::open(config, base_dir).map_err(OpenError::Settings)?;
            Ok(Arc::new(c))
        }
        _ => Err(OpenError::UnknownType),
    }
}

/// Whether a connector type is for demos and tests only: `serve` refuses it unless
/// `allow_test_citizens` is set.
pub fn demo_only_type(kind: &str) -> bool {
    kind == TEST_CITIZENS
}

/// A setting that is for demos and tests only, as (key below `settings`, reason): `serve`
/// refuses it unless `allow_test_citizens` is set.
pub fn demo_only(kind: &str, settings: &toml::Table) -> Option<(&'static str, &'static str)> {
    let console_sms = settings
        .get("sms")
        .and_then(|s| s.get("kind"))
        .and_then(toml::Value::as_str)
        == Some("log");
    (kind == BANK_CARD && console_sms).then_some((
        "sms.kind",
        "the `log` sender prints one-time codes to the console: demos and tests only (set `allow_test_citizens = true`)",
    ))
}

fn parse<T: serde::de::DeserializeOwned>(settings: &toml::Table) -> Result<T, OpenError> {
    serde_path_to_error::deserialize(toml::Value::Table(settings.clone())).map_err(|e| {
        let path = e.path().to_string();
        OpenError::Settings(vec![(path, e.into_inner().to_string())])
    })
}
