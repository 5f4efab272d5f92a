//! Upgrades on both stores: a database written by a newer release is refused with a clear
//! message and left alone, and a migration that fails leaves the database as it was before
//! any pending migration ran. (Opening a previous release's database: `crates/fleetcare/tests/
//! upgrade.rs`.)

use fleetcare_store::Store;
use fleetcare_store::testing::{TempPostgres, postgres_url};
use sqlx::Connection;

#[tokio::test]
async fn sqlite_refuses_a_newer_database_and_a_failed_migration_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("open");
    store.close().await.expect("close");
    let db = dir.path().join("fleetcare.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute(
        "INSERT INTO fleetcare_migrations (version, applied_at) VALUES (999, 0)",
        [],
    )
    .expect("a newer release's mark");
    drop(conn);
    let Err(err) = Store::open_sqlite(dir.path()).await else {
        panic!("refused");
    };
    assert!(err.to_string().contains("newer release"), "{err}");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM fleetcare_migrations", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert!(n > 1, "left alone");
    drop(conn);

    // A database in the way of a migration (a table of the same name): nothing is applied.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fleetcare.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch(
        "CREATE TABLE retention_settings (x TEXT); INSERT INTO retention_settings VALUES ('mine');",
    )
    .expect("a table in the way");
    drop(conn);
    let Err(err) = Store::open_sqlite(dir.path()).await else {
        panic!("refused");
    };
    assert!(err.to_string().contains("schema migration"), "{err}");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(tables, vec!["retention_settings".to_owned()], "as it was");
}

#[tokio::test]
async fn postgres_refuses_a_newer_database_and_a_failed_migration_changes_nothing() {
    let Some(url) = postgres_url("postgres upgrades") else {
        return;
    };
    let db = TempPostgres::create(&url).await.expect("database");
    let store = Store::open_postgres(&db.url).await.expect("open");
    store.close().await.expect("close");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("INSERT INTO fleetcare_migrations (version, applied_at) VALUES (999, 0)")
        .execute(&mut conn)
        .await
        .expect("a newer release's mark");
    conn.close().await.expect("close");
    let Err(err) = Store::open_postgres(&db.url).await else {
        panic!("refused");
    };
    assert!(err.to_string().contains("newer release"), "{err}");
    db.drop_database().await.expect("drop");

    let db = TempPostgres::create(&url).await.expect("database");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("CREATE TABLE retention_settings (x TEXT)")
        .execute(&mut conn)
        .await
        .expect("a table in the way");
    let Err(err) = Store::open_postgres(&db.url).await else {
        panic!("refused");
    };
    assert!(err.to_string().contains("schema migration"), "{err}");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
         ORDER BY table_name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    assert_eq!(tables, vec!["retention_settings".to_owned()], "as it was");
    conn.close().await.expect("close");
    db.drop_database().await.expect("drop");
}
