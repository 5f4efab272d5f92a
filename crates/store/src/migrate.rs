//! Embedded schema migrations, applied at start, in order, each once.

/// `(version, SQL)` for SQLite.
pub(crate) const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite_0001.sql")),
    (2, include_str!("migrations/sqlite_0002.sql")),
    (3, include_str!("migrations/sqlite_0003.sql")),
    (4, include_str!("migrations/sqlite_0004.sql")),
    (5, include_str!("migrations/sqlite_0005.sql")),
    (6, include_str!("migrations/sqlite_0006.sql")),
    (7, include_str!("migrations/sqlite_0007.sql")),
    (8, include_str!("migrations/sqlite_0008.sql")),
    (9, include_str!("migrations/sqlite_0009.sql")),
    (10, include_str!("migrations/sqlite_0010.sql")),
    (11, include_str!("migrations/sqlite_0011.sql")),
    (12, include_str!("migrations/sqlite_0012.sql")),
    (13, include_str!("migrations/sqlite_0013.sql")),
    (14, include_str!("migrations/sqlite_0014.sql")),
    (15, include_str!("migrations/sqlite_0015.sql")),
    (16, include_str!("migrations/sqlite_0016.sql")),
    (17, include_str!("migrations/sqlite_0017.sql")),
    (18, include_str!("migrations/sqlite_0018.sql")),
    (19, include_str!("migrations/sqlite_0019.sql")),
    (20, include_str!("migrations/sqlite_0020.sql")),
    (21, include_str!("migrations/sqlite_0021.sql")),
    (22, include_str!("migrations/sqlite_0022.sql")),
    (23, include_str!("migrations/sqlite_0023.sql")),
];
/// `(version, SQL)` for PostgreSQL; same versions, same meaning.
pub(crate) const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("migrations/postgres_0001.sql")),
    (2, include_str!("migrations/postgres_0002.sql")),
    (3, include_str!("migrations/postgres_0003.sql")),
    (4, include_str!("migrations/postgres_0004.sql")),
    (5, include_str!("migrations/postgres_0005.sql")),
    (6, include_str!("migrations/postgres_0006.sql")),
    (7, include_str!("migrations/postgres_0007.sql")),
    (8, include_str!("migrations/postgres_0008.sql")),
    (9, include_str!("migrations/postgres_0009.sql")),
    (10, include_str!("migrations/postgres_0010.sql")),
    (11, include_str!("migrations/postgres_0011.sql")),
    (12, include_str!("migrations/postgres_0012.sql")),
    (13, include_str!("migrations/postgres_0013.sql")),
    (14, include_str!("migrations/postgres_0014.sql")),
    (15, include_str!("migrations/postgres_0015.sql")),
    (16, include_str!("migrations/postgres_0016.sql")),
    (17, include_str!("migrations/postgres_0017.sql")),
    (18, include_str!("migrations/postgres_0018.sql")),
    (19, include_str!("migrations/postgres_0019.sql")),
    (20, include_str!("migrations/postgres_0020.sql")),
    (21, include_str!("migrations/postgres_0021.sql")),
    (22, include_str!("migrations/postgres_0022.sql")),
    (23, include_str!("migrations/postgres_0023.sql")),
];

/// Refuse a database written by a newer release: its schema has versions this one does not
/// know, and running on it could misread or damage what the newer release wrote.
pub(crate) fn check_not_newer(newest: i64, known: i64) -> crate::Result<()> {
    if newest > known {
        return Err(crate::StoreError::Migrate(format!(
            "the database was written by a newer release of Fleetcare (schema version \
             {newest}; this release knows up to {known}): run the newer release, or restore a \
             backup made by this one"
        )));
    }
    Ok(())
}

pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS fleetcare_migrations \
    (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
