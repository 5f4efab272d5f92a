//! Messages between center instances that share a database: PostgreSQL `NOTIFY` on a
//! channel, `LISTEN` on each instance. Delivery is at most once and only to instances
//! listening at the time: what is sent this way must be safe to lose (a change notice, never
//! a record). On SQLite there is one instance, and nothing to send.

use sqlx::postgres::PgListener;

use crate::{Result, Store, StoreError};

/// Largest payload PostgreSQL's `NOTIFY` takes is 8000 bytes; callers keep below this.
pub const MAX_NOTICE_BYTES: usize = 7900;

/// What an instance hears from the others.
pub struct Subscription(PgListener);

impl Subscription {
    /// The next payload. If the connection was lost it is made again (payloads sent
    /// meanwhile are lost).
    pub async fn next(&mut self) -> Result<String> {
        let n = self
            .0
            .recv()
            .await
            .map_err(|e| StoreError::Db(format!("listening for notices: {e}")))?;
        Ok(n.payload().to_owned())
    }
}

impl Store {
    /// Whether other instances can share this store (and hear its notices).
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Tell the instances listening on `channel` (a no-op on SQLite).
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<()> {
        if payload.len() > MAX_NOTICE_BYTES {
            return Err(StoreError::Conflict(format!(
                "a notice of {} bytes (at most {MAX_NOTICE_BYTES})",
                payload.len()
            )));
        }
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(pg) => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(payload)
                    .execute(pg.pool())
                    .await?;
                Ok(())
            }
        }
    }

    /// On SQLite, what wakes after each commit that added notification events (on
    /// PostgreSQL the outbox triggers `NOTIFY` instead).
    pub fn outbox_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        match self {
            Store::Sqlite(s) => Some(s.outbox_signal()),
            Store::Postgres(_) => None,
        }
    }

    /// Listen on `channel`; `None` on SQLite.
    pub async fn subscribe(&self, channel: &str) -> Result<Option<Subscription>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(pg) => {
                let mut l = PgListener::connect_with(pg.pool()).await?;
                l.listen(channel).await?;
                Ok(Some(Subscription(l)))
            }
        }
    }
}
