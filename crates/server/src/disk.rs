//! A full disk (see ARCHITECTURE.md, "Data lifecycle: a full disk"): the center watches the
//! free space of its data directory's file system and the writes that fail for want of it,
//! refuses new writes while there is no room (the layer in `routes.rs`), and takes them again
//! by itself once space has returned and a probe write commits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::ctx::Ctx;

/// How often the free space is looked at.
pub const DISK_CHECK_EVERY: Duration = Duration::from_secs(2);

/// The data directory's disk, as last seen.
#[derive(Debug)]
pub struct DiskWatch {
    dir: PathBuf,
    /// New data is refused when less than this is free.
    reserve: u64,
    full: AtomicBool,
    free: AtomicU64,
}

impl DiskWatch {
    pub fn new(dir: PathBuf, reserve: u64) -> DiskWatch {
        DiskWatch {
            dir,
            reserve,
            full: AtomicBool::new(false),
            free: AtomicU64::new(u64::MAX),
        }
    }

    /// Whether writes are refused now.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Bytes free at the last look (`u64::MAX` before the first).
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// A write failed for want of space: refuse the next ones until there is room again.
    pub fn hit(&self) {
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::error!(
                dir = %self.dir.display(),
                "a write failed: the disk is full; refusing writes until there is room"
            );
        }
    }

    /// One look: the free space, and whether writes are refused from now on.
    pub async fn check(&self, ctx: &Ctx) {
        let dir = self.dir.clone();
        let free = tokio::task::spawn_blocking(move || fleetcare_fs::free_space(&dir))
            .await
            .ok()
            .and_then(Result::ok);
        let Some(free) = free else {
            // Unknown (the directory is gone?): judged by failing writes alone.
            return self.recover_if_writable(ctx, true).await;
        };
        self.free.store(free, Ordering::Relaxed);
        if free < self.reserve {
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    dir = %self.dir.display(), free, reserve = self.reserve,
                    "the disk is nearly full: refusing new writes until there is room"
                );
            }
            return;
        }
        // Half the reserve again before writes come back, so that it does not flap.
        self.recover_if_writable(ctx, free >= self.reserve.saturating_add(self.reserve / 2))
            .await;
    }

    async fn recover_if_writable(&self, ctx: &Ctx, room: bool) {
        if !self.is_full() || !room {
            return;
        }
        match ctx.store.probe_write().await {
            Ok(()) => {
                self.full.store(false, Ordering::Relaxed);
                tracing::info!(
                    dir = %self.dir.display(),
                    "there is room on the disk again: taking writes"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "the disk has room but the store cannot write yet")
            }
        }
    }

    /// Look every [`DISK_CHECK_EVERY`] until the center shuts down.
    pub async fn run(self: std::sync::Arc<Self>, ctx: Ctx) {
        let mut shutdown = ctx.shutdown.clone();
        loop {
            self.check(&ctx).await;
            tokio::select! {
                _ = tokio::time::sleep(DISK_CHECK_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Whether a request may go on while the disk is full: reads, and the few writes that make
/// room or let an operator in to make it.
pub fn allowed_when_full(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    ) || matches!(
        path,
        "/api/v1/retention" | "/api/v1/login" | "/api/v1/logout" | "/ui/login" | "/ui/logout"
    )
}
