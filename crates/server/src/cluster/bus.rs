//! Change notices between center instances that share PostgreSQL (`NOTIFY`/`LISTEN` on one
//! channel), so a dashboard page served by one instance hears of a report another instance
//! took. Each instance gathers its notices for [`GATHER`] and sends them as a few payloads;
//! what it hears from the others goes to its own pages. Notices are safe to lose (a page
//! only refreshes later), so a full queue or a lost connection drops them.

use std::collections::BTreeSet;
use std::time::Duration;

use fleetcare_store::notices::MAX_NOTICE_BYTES;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::cluster::events::{Notice, Topic};
use crate::ctx::Ctx;

/// The channel every instance listens on.
pub const CHANNEL: &str = "fleetcare_notices";
/// Notices are gathered this long before they are sent.
pub const GATHER: Duration = Duration::from_millis(200);
/// Notices waiting to be sent; past it they are dropped.
const QUEUE: usize = 65_536;

/// One payload: who sent it, and `[tenant, topic]` pairs (`d:ID`, `t`, `r`).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Payload {
    from: u64,
    n: Vec<(i64, String)>,
}

fn topic_text(t: &Topic) -> String {
    match t {
        Topic::Device(id) => format!("d:{id}"),
        Topic::Troubles => "t".into(),
        Topic::Rollouts => "r".into(),
    }
}

fn topic_of(s: &str) -> Option<Topic> {
    match s {
        "t" => Some(Topic::Troubles),
        "r" => Some(Topic::Rollouts),
        s => s.strip_prefix("d:").map(|id| Topic::Device(id.into())),
    }
}

/// The payloads for a set of notices, each below the size `NOTIFY` takes.
fn payloads(from: u64, notices: &BTreeSet<(i64, String)>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = Payload {
        from,
        n: Vec::new(),
    };
    let mut size = 64;
    for (tenant, topic) in notices {
        let more = topic.len() + 32;
        if size + more > MAX_NOTICE_BYTES && !cur.n.is_empty() {
            out.push(serde_json::to_string(&cur).expect("a payload serializes"));
            cur.n.clear();
            size = 64;
        }
        cur.n.push((*tenant, topic.clone()));
        size += more;
    }
    if !cur.n.is_empty() {
        out.push(serde_json::to_string(&cur).expect("a payload serializes"));
    }
    out
}

/// On a shared store: send this instance's notices to the others, and hear theirs.
pub async fn start(st: &Ctx) {
    if !st.store.is_shared() {
        return;
    }
    let me = fleetcare_core::secret::random_u64();
    let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
    st.events.send_out(tx);
    let out = st.clone();
    tokio::spawn(async move {
        let mut shutdown = out.shutdown.clone();
        loop {
            let first = tokio::select! {
                n = rx.recv() => n,
                () = crate::stopped(&mut shutdown) => None,
            };
            let Some(first) = first else { return };
            tokio::time::sleep(GATHER).await;
            let mut set = BTreeSet::new();
            set.insert((first.tenant, topic_text(&first.topic)));
            while let Ok(n) = rx.try_recv() {
                set.insert((n.tenant, topic_text(&n.topic)));
            }
            for p in payloads(me, &set) {
                if let Err(e) = out.store.publish(CHANNEL, &p).await {
                    tracing::warn!(error = %e, "sending change notices to the other instances failed");
                    break;
                }
            }
        }
    });
    let inb = st.clone();
    tokio::spawn(async move {
        crate::cluster::each_message(&inb.store, inb.shutdown.clone(), CHANNEL, |text| {
            let Ok(p) = serde_json::from_str::<Payload>(&text) else {
                tracing::warn!("a change notice that does not read");
                return std::future::ready(());
            };
            if p.from != me {
                for (tenant, t) in p.n {
                    if let Some(topic) = topic_of(&t) {
                        inb.events.deliver(Notice { tenant, topic });
                    }
                }
            }
            std::future::ready(())
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_travel_in_payloads_notify_takes() {
        let set: BTreeSet<(i64, String)> = (0..2000)
            .map(|i| {
                (
                    1,
                    topic_text(&Topic::Device(format!("DEVICE-{i:06}").into())),
                )
            })
            .chain([(2, "t".to_owned()), (2, "r".to_owned())])
            .collect();
        let ps = payloads(7, &set);
        assert!(ps.len() > 1, "split");
        let mut back = BTreeSet::new();
        for p in &ps {
            assert!(p.len() <= MAX_NOTICE_BYTES, "{}", p.len());
            let p: Payload = serde_json::from_str(p).expect("reads");
            assert_eq!(p.from, 7);
            back.extend(p.n);
        }
        assert_eq!(back, set);
        assert_eq!(topic_of("d:X-1"), Some(Topic::Device("X-1".into())));
        assert_eq!(topic_of("t"), Some(Topic::Troubles));
        assert_eq!(topic_of("zz"), None);
    }
}
