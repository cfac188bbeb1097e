//! From a connector `type` in the configuration to an opened connector (Dex's
//! `ConnectorsConfig` + `Open`). Opening validates the settings, which is also what
//! `check-config` does, so a connector that opens here will start.

use std::path::Path;
use std::sync::Arc;

use connectors::{oidc, test_citizens, Connector};

/// The type of the test-citizens connector.
pub const TEST_CITIZENS: &str = "test-citizens";

/// The type of an upstream OpenID Provider (a national identity app such as VNeID).
pub const OIDC: &str = "oidc";

/// Every known connector type.
pub const TYPES: &[&str] = &[TEST_CITIZENS, OIDC];

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
            Ok(Arc::new(c))
        }
        OIDC => {
            let config: oidc::Config = parse(settings)?;
            let c = oidc::OidcConnector::open(config, base_dir).map_err(OpenError::Settings)?;
            Ok(Arc::new(c))
        }
        _ => Err(OpenError::UnknownType),
    }
}

fn parse<T: serde::de::DeserializeOwned>(settings: &toml::Table) -> Result<T, OpenError> {
    serde_path_to_error::deserialize(toml::Value::Table(settings.clone())).map_err(|e| {
        let path = e.path().to_string();
        OpenError::Settings(vec![(path, e.into_inner().to_string())])
    })
}
