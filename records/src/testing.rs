//! A database of its own for a test run on the PostgreSQL at 127.0.0.1:5432 (trust
//! authentication, user `postgres`): created with a unique name, dropped when the [`TestDb`]
//! is (also when the test panics).
//! PostgreSQL not reachable is a test failure with a clear message, never a skip.

use std::sync::Arc;

use crate::postgres::{PgOptions, PgRecords};
use crate::SharedRecords;

/// Where the tests' PostgreSQL listens.
pub const ADDRESS: &str = "127.0.0.1:5432";

/// A database created for one test run.
pub struct TestDb {
    name: String,
    address: String,
}

async fn admin(address: &str) -> tokio_postgres::Client {
    let url = format!("postgres://postgres@{address}/postgres");
    let (client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {address} as user `postgres` ({e}); the records tests need it (see README, Tests)"
        ),
    };
    tokio::spawn(connection);
    client
}

impl TestDb {
    /// A new, empty database with the records schema.
    pub async fn create() -> TestDb {
        let db = Self::create_bare().await;
        let r = PgRecords::connect_unchecked(&db.options()).expect("pool");
        r.migrate().await.expect("migrate the test database");
        db
    }

    /// A new, empty database without any schema.
    pub async fn create_bare() -> TestDb {
        Self::create_bare_at(ADDRESS).await
    }

    /// A new database on another server (such as a private one a fault test started).
    pub async fn create_bare_at(address: &str) -> TestDb {
        let name = format!(
            "records_test_{}",
            crate::new_id().to_lowercase().replace('-', "_")
        );
        admin(address)
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create the test database");
        TestDb {
            name,
            address: address.to_string(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL, without credentials.
    pub fn url(&self) -> String {
        format!("postgres://{}/{}", self.address, self.name)
    }

    /// Options to reach it.
    pub fn options(&self) -> PgOptions {
        let mut options = PgOptions::new(&self.url());
        options.user = Some("postgres".into());
        options
    }

    /// Records in it (schema checked).
    pub async fn records(&self) -> SharedRecords {
        Arc::new(
            PgRecords::connect(&self.options())
                .await
                .expect("connect to the test database"),
        )
    }
}

impl Drop for TestDb {
    /// Drops the database (disconnecting whoever is still connected), on a thread of its own
    /// so it works inside and outside a runtime.
    fn drop(&mut self) {
        let (address, name) = (self.address.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                admin(&address)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("test database {} not dropped: {e}", self.name);
        }
    }
}
