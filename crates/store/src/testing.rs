//! Helpers for tests that need a real store: a fresh SQLite directory, or a fresh PostgreSQL
//! database on the server named by `FLEETCARE_TEST_DATABASE_URL`.

use sqlx::Connection;

use crate::{Result, Store, StoreError};

/// The environment variable naming the PostgreSQL server tests use.
pub const DATABASE_URL_VAR: &str = "FLEETCARE_TEST_DATABASE_URL";

/// A database created for one test and dropped afterwards (best effort; names are unique).
#[derive(Debug)]
pub struct TempPostgres {
    admin_url: String,
    pub url: String,
    name: String,
}

/// The PostgreSQL test server's URL, or `None` after saying loudly that the test is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "SKIPPED {test}: {DATABASE_URL_VAR} is not set; this PostgreSQL test did not run \
                 (.ci/run sets it)"
            );
            None
        }
    }
}

/// Replace the database name in a `postgres://…/name?params` URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl TempPostgres {
    /// A fresh, empty database on the test server.
    pub async fn create(admin_url: &str) -> Result<TempPostgres> {
        let name = format!(
            "fleetcare_test_{:016x}",
            fleetcare_core::secret::random_u64()
        );
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(TempPostgres {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name),
            name,
        })
    }

    /// Drop the database (after the stores using it are closed).
    pub async fn drop_database(self) -> Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(())
    }
}

/// Open a store on a fresh database, for conformance tests: `(store, guard)`.
pub async fn fresh_postgres(admin_url: &str) -> Result<(Store, TempPostgres)> {
    let db = TempPostgres::create(admin_url).await?;
    let store = Store::open_postgres(&db.url).await?;
    Ok((store, db))
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
