//! Sending the error log: when, and exactly once.
//!
//! Triggers, each configurable: the agent's own schedule (`errors_interval_s`); the center's
//! request (`RequestErrors` on the push channel); an event at or above
//! `errors_immediate_severity` (goes at once); and accumulation — pending events, bytes or
//! weighted severities reaching `errors_batch_events`, `errors_batch_bytes` or
//! `errors_batch_weight`. Each upload says its trigger, and the center stores it with the
//! events. Batches go oldest epoch first, in sequence order; the agent deletes exactly what the
//! center acknowledged, so a lost answer means a retry that the center stores nothing twice
//! from.

use std::sync::Arc;

use fleetcare_wire::errors::{ErrorBatch, ErrorTrigger};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::client::CenterClient;
use crate::config::Triggers;
use crate::embed::Observer;
use crate::journal::{Journal, JournalStats};

/// Events per upload.
pub const BATCH: usize = 500;

/// The trigger the journal's state calls for now, if any.
pub fn due(t: &Triggers, s: &JournalStats) -> Option<ErrorTrigger> {
    if s.pending == 0 {
        return None;
    }
    if t.immediate
        .is_some_and(|min| s.max_severity.is_some_and(|m| m >= min))
    {
        return Some(ErrorTrigger::Immediate);
    }
    if s.pending >= t.batch_events || s.bytes >= t.batch_bytes || s.weight >= t.batch_weight {
        return Some(ErrorTrigger::Accumulation);
    }
    None
}

async fn blocking<T: Send + 'static>(
    j: &Arc<Journal>,
    f: impl FnOnce(&Journal) -> T + Send + 'static,
) -> Option<T> {
    let j = j.clone();
    tokio::task::spawn_blocking(move || f(&j)).await.ok()
}

/// Send everything pending (oldest epoch first); `Err` if the center could not take it.
async fn send_all(
    journal: &Arc<Journal>,
    client: &CenterClient,
    token: &str,
    device_id: &str,
    trigger: ErrorTrigger,
    observer: &dyn Observer,
) -> Result<u64, String> {
    let mut sent = 0;
    loop {
        let Some(Ok(Some((epoch, events)))) = blocking(journal, |j| j.pending(BATCH)).await else {
            return Ok(sent);
        };
        if events.is_empty() {
            return Ok(sent);
        }
        let last = events.last().map_or(0, |e| e.seq);
        let n = events.len() as u64;
        let sent_at = std::time::Instant::now();
        let ack = client
            .errors(
                token,
                &ErrorBatch {
                    device_id: device_id.to_owned(),
                    boot_epoch: epoch,
                    trigger,
                    events,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        observer.errors_acked(events_len(n), sent_at.elapsed());
        crate::update::crash::point("errors.acked");
        let acked = ack.acked_seq;
        blocking(journal, move |j| j.ack(epoch, acked))
            .await
            .transpose()
            .map_err(|e| e.to_string())?;
        sent += n;
        if acked < last {
            // The center is missing something earlier in this epoch (it never had it): the
            // next batch starts from there again.
            return Err(format!(
                "the center holds epoch {epoch} only up to {acked} of {last}; sending again"
            ));
        }
    }
}

fn events_len(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// What a `send now` on the device asks (`fleetcare-agent send-errors`, the local API): the
/// events the center acknowledged, or why not.
pub type SendNow = tokio::sync::oneshot::Sender<Result<u64, String>>;

/// Run until shutdown.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    journal: Arc<Journal>,
    client: CenterClient,
    device_id: String,
    triggers: Triggers,
    mut token: watch::Receiver<Option<String>>,
    mut requested: watch::Receiver<Option<ErrorTrigger>>,
    mut send_now: tokio::sync::mpsc::Receiver<SendNow>,
    logged: Arc<tokio::sync::Notify>,
    mut backoff: Backoff,
    observer: Arc<dyn Observer>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next_periodic = Instant::now() + triggers.interval;
    let mut check = tokio::time::interval(triggers.check);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry_at: Option<Instant> = None;
    let mut pending_trigger: Option<ErrorTrigger> = None;
    loop {
        let trigger = tokio::select! {
            () = tokio::time::sleep_until(next_periodic) => {
                next_periodic = Instant::now() + triggers.interval;
                Some(ErrorTrigger::Periodic)
            }
            Ok(()) = requested.changed() => *requested.borrow_and_update(),
            _ = async {
                tokio::select! {
                    _ = check.tick() => {}
                    () = logged.notified() => {}
                }
            } => {
                if retry_at.is_some_and(|at| Instant::now() < at) {
                    None
                } else if let Some(t) = pending_trigger {
                    Some(t)
                } else {
                    // An unchanged journal is not looked at again.
                    match blocking(&journal, |j| j.changed_stats()).await {
                        Some(Ok(Some(s))) => due(&triggers, &s),
                        _ => None,
                    }
                }
            }
            Some(reply) = send_now.recv() => {
                // At once, whatever the backoff says: someone at the device is waiting.
                let tok = token.borrow().clone();
                let result = match tok {
                    None => Err("not enrolled with the center yet".to_owned()),
                    Some(tok) => {
                        send_all(&journal, &client, &tok, &device_id, ErrorTrigger::Manual, &*observer)
                            .await
                    }
                };
                match &result {
                    Ok(n) => {
                        tracing::info!(events = n, trigger = "manual", "error log sent");
                        backoff.reset();
                        retry_at = None;
                        pending_trigger = None;
                    }
                    Err(e) => tracing::warn!(error = %e, "sending the error log now failed"),
                }
                let _ = reply.send(result);
                None
            }
            _ = token.changed() => None,
            () = stopped(&mut shutdown) => return,
        };
        let Some(trigger) = trigger else { continue };
        let Some(tok) = token.borrow().clone() else {
            pending_trigger = Some(trigger);
            continue;
        };
        match send_all(&journal, &client, &tok, &device_id, trigger, &*observer).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(events = n, trigger = trigger.as_str(), "error log sent");
                }
                backoff.reset();
                retry_at = None;
                pending_trigger = None;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, ?delay, "sending the error log; will retry");
                retry_at = Some(Instant::now() + delay);
                pending_trigger = Some(trigger);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn triggers() -> Triggers {
        Triggers {
            interval: Duration::from_secs(3600),
            immediate: crate::journal::severity_rank("error"),
            batch_events: 200,
            batch_bytes: 64 * 1024,
            batch_weight: 100,
            check: Duration::from_millis(500),
        }
    }

    fn pending(n: u64, bytes: u64, weight: u64, worst: &str) -> JournalStats {
        JournalStats {
            pending: n,
            bytes,
            weight,
            max_severity: crate::journal::severity_rank(worst),
            ..JournalStats::default()
        }
    }

    #[test]
    fn each_accumulation_threshold_fires_at_its_value_and_not_before() {
        let t = triggers();
        assert_eq!(due(&t, &JournalStats::default()), None, "nothing pending");
        // Count.
        assert_eq!(due(&t, &pending(199, 100, 10, "info")), None);
        assert_eq!(
            due(&t, &pending(200, 100, 10, "info")),
            Some(ErrorTrigger::Accumulation)
        );
        // Bytes, with few events.
        assert_eq!(due(&t, &pending(3, 64 * 1024 - 1, 3, "info")), None);
        assert_eq!(
            due(&t, &pending(3, 64 * 1024, 3, "info")),
            Some(ErrorTrigger::Accumulation)
        );
        // Weighted severities: 33 warnings weigh 99, 34 weigh 102.
        let w =
            crate::journal::severity_weight(crate::journal::severity_rank("warning").unwrap_or(0));
        assert_eq!(w, 3);
        assert_eq!(due(&t, &pending(33, 33 * 50, 33 * w, "warning")), None);
        assert_eq!(
            due(&t, &pending(34, 34 * 50, 34 * w, "warning")),
            Some(ErrorTrigger::Accumulation)
        );
        // Severity at once comes before any accumulation.
        assert_eq!(
            due(&t, &pending(1, 50, 10, "error")),
            Some(ErrorTrigger::Immediate)
        );
        let never = Triggers {
            immediate: None,
            ..t
        };
        assert_eq!(due(&never, &pending(1, 50, 30, "critical")), None);
    }
}
