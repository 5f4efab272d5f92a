//! LAN-proxy mode: the agent beside printers that cannot run it. Each printer in `printers`
//! becomes its own device at the center, with its own data dir, credential and error journal;
//! a poller per printer reads it (IPP Get-Printer-Attributes, and SNMP where configured) every
//! `printer_poll_s`, keeps the snapshot the printer's agent reports, writes the state reasons
//! and alerts that appeared into its journal, and tells the agent to look.

pub mod addr;
pub mod facts;
pub mod ipp;
pub mod profile;
pub mod snmp;
pub mod supplies;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest;
use tokio::sync::watch;

use crate::agent::{Agent, AgentError, AgentHandle};
use crate::config::AgentConfig;
use crate::journal::Journal;
use crate::source::{Snapshot, SourceError, StructureSource};
pub use addr::PrinterAddr;
use facts::{Naming, PrinterFacts, Seen};

/// The data dir of one printer: `data_dir/printers/<first 16 hex of SHA-256(entry)>`.
pub fn printer_dir(data_dir: &Path, entry: &str) -> PathBuf {
    let h = sha2::Sha256::digest(entry.as_bytes());
    let hex: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
    data_dir.join("printers").join(hex)
}

/// The structure source of a proxied printer: what its poller saw last.
#[derive(Debug, Clone)]
pub struct PrinterSource {
    label: String,
    last: Arc<Mutex<Result<Snapshot, String>>>,
}

impl StructureSource for PrinterSource {
    fn read(&self) -> Result<Snapshot, SourceError> {
        self.last
            .lock()
            .expect("printer snapshot")
            .clone()
            .map_err(|message| SourceError::Parse {
                path: PathBuf::from(&self.label),
                message,
            })
    }

    fn cheap(&self) -> bool {
        true
    }
}

/// Read a printer once, by IPP and/or SNMP.
pub async fn poll(
    http: &reqwest::Client,
    addr: &PrinterAddr,
    timeout: Duration,
    profiles: &Arc<Vec<profile::Profile>>,
) -> Result<PrinterFacts, String> {
    match addr {
        PrinterAddr::Ipp { uri, snmp } => {
            let mut f = ipp::query(http, uri, timeout)
                .await
                .map_err(|e| e.to_string())?;
            if let Some((target, community)) = snmp.clone() {
                let (profiles, name) = (profiles.clone(), f.make_and_model.clone());
                let got = tokio::task::spawn_blocking(move || {
                    snmp::query(&target, &community, timeout, &profiles, name.as_deref())
                })
                .await
                .map_err(|e| e.to_string())?;
                match got {
                    Ok(s) => {
                        f.serial = f.serial.or(s.serial);
                        f.hr_devices = s.hr_devices;
                        if f.firmware.is_empty() {
                            f.firmware = s.firmware;
                            f.firmware_kinds = s.firmware_kinds;
                        }
                        f.supply_rows = s.supply_rows;
                        f.alerts.extend(s.alerts);
                        for (k, v) in s.counters {
                            f.counters.entry(k).or_insert(v);
                        }
                    }
                    // IPP answered: the printer is there; SNMP adds detail when it can.
                    Err(e) => tracing::warn!(error = %e, "SNMP of the printer"),
                }
            }
            Ok(f)
        }
        PrinterAddr::Snmp { target, community } => {
            let (t, c, profiles) = (target.clone(), community.clone(), profiles.clone());
            tokio::task::spawn_blocking(move || snmp::query(&t, &c, timeout, &profiles, None))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }
    }
}

fn load_seen(path: &Path) -> Seen {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Poll one printer until shutdown: keep its snapshot, journal what appeared, nudge its agent.
#[allow(clippy::too_many_arguments)]
async fn poller(
    addr: PrinterAddr,
    dir: PathBuf,
    interval: Duration,
    timeout: Duration,
    naming: Naming,
    profiles: Arc<Vec<profile::Profile>>,
    last: Arc<Mutex<Result<Snapshot, String>>>,
    journal: Arc<Journal>,
    handle: AgentHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let http = reqwest::Client::builder()
        .connect_timeout(timeout)
        .user_agent(concat!("fleetcare-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with a plain configuration builds");
    let seen_path = dir.join("seen.json");
    let mut seen = load_seen(&seen_path);
    // What went wrong at the last poll: a problem is logged when it starts or changes, not at
    // every poll.
    let mut trouble: Option<String> = None;
    let mut report = |now: Option<String>| {
        match (&trouble, &now) {
            (Some(was), Some(is)) if was == is => {}
            (_, Some(is)) => {
                tracing::warn!(printer = %addr.label(), problem = %is, "the printer cannot be read or named (said again only when this changes)");
            }
            (Some(_), None) => {
                tracing::info!(printer = %addr.label(), "the printer is read and named again");
            }
            (None, None) => {}
        }
        trouble = now;
    };
    loop {
        match poll(&http, &addr, timeout, &profiles).await {
            Ok(f) => match facts::snapshot(&f, &naming) {
                Ok(snap) => {
                    let (events, now) = facts::events(&f, &snap, &seen);
                    let ok = if events.is_empty() {
                        true
                    } else {
                        let j = journal.clone();
                        let at = fleetcare_core::clock::Clock::now_ms(
                            &fleetcare_core::clock::SystemClock,
                        );
                        match tokio::task::spawn_blocking(move || j.append_batch(&events, at)).await
                        {
                            Ok(Ok(_)) => {
                                handle.errors_logged();
                                true
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(printer = %addr.label(), error = %e, "journaling the printer's events");
                                false
                            }
                            Err(e) => {
                                tracing::warn!(printer = %addr.label(), error = %e, "journaling the printer's events");
                                false
                            }
                        }
                    };
                    if ok && now != seen {
                        // Journaled first, then remembered: a crash between the two repeats an
                        // event rather than losing one.
                        let bytes = serde_json::to_vec(&now).expect("seen serializes");
                        if let Err(e) = fleetcare_fs::write_atomic(
                            &seen_path,
                            &bytes,
                            fleetcare_fs::Mode::Private,
                        ) {
                            tracing::warn!(error = %e, "remembering the printer's state");
                        }
                        seen = now;
                    }
                    *last.lock().expect("printer snapshot") = Ok(snap);
                    handle.structure_changed();
                    report(None);
                }
                Err(e) => report(Some(format!("its answer names no device: {e}"))),
            },
            Err(e) => report(Some(format!("polling it: {e}"))),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Run one agent per printer of the config until shutdown.
pub async fn run(cfg: AgentConfig, shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
    let mut tasks = Vec::new();
    let profiles = Arc::new(cfg.printer_profiles.clone());
    for entry in &cfg.printers {
        let addr = PrinterAddr::parse(
            entry,
            cfg.printer_snmp_community.as_deref(),
            cfg.printer_snmp_port,
        )
        .map_err(AgentError::Journal)?;
        let dir = printer_dir(&cfg.data_dir, entry);
        fleetcare_fs::create_private_dir(&dir)
            .map_err(|e| AgentError::Journal(format!("{}: {e}", dir.display())))?;
        let journal = {
            let (d, limits) = (dir.clone(), cfg.journal);
            Arc::new(
                tokio::task::spawn_blocking(move || Journal::open(&d, limits, true))
                    .await
                    .map_err(|e| AgentError::Journal(e.to_string()))?
                    .map_err(|e| AgentError::Journal(e.to_string()))?,
            )
        };
        let last = Arc::new(Mutex::new(Err("not polled yet".to_owned())));
        let mut pcfg = cfg.clone();
        pcfg.data_dir = dir.clone();
        pcfg.printers = Vec::new();
        pcfg.local_socket = None;
        pcfg.inventory = None;
        let source = PrinterSource {
            label: addr.label(),
            last: last.clone(),
        };
        let agent = Agent::new(pcfg, source)
            .with_journal(journal.clone())
            .cannot_install(
                "a printer behind the LAN proxy: its firmware is installed with its maker's tools, not through Fleetcare",
            );
        let handle = agent.handle();
        tasks.push(tokio::spawn(poller(
            addr,
            dir,
            cfg.printer_poll,
            cfg.printer_timeout,
            Naming {
                kinds: cfg.printer_unit_kinds.clone(),
                device_id: cfg
                    .printer_names
                    .get(entry)
                    .and_then(|n| n.device_id.clone()),
                model: cfg.printer_names.get(entry).and_then(|n| n.model.clone()),
            },
            profiles.clone(),
            last,
            journal,
            handle,
            shutdown.clone(),
        )));
        let label = entry.clone();
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = agent.run(sd).await {
                tracing::error!(printer = %label, error = %e, "the printer's agent stopped");
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_entries_parse() {
        assert_eq!(
            PrinterAddr::parse("snmp://private@10.0.0.5:1161", None, 161).expect("ok"),
            PrinterAddr::Snmp {
                target: "10.0.0.5:1161".into(),
                community: "private".into()
            }
        );
        assert_eq!(
            PrinterAddr::parse("snmp://10.0.0.5", None, 161).expect("ok"),
            PrinterAddr::Snmp {
                target: "10.0.0.5:161".into(),
                community: "public".into()
            }
        );
        assert_eq!(
            PrinterAddr::parse("ipp://10.0.0.6/ipp/print", Some("public"), 16161).expect("ok"),
            PrinterAddr::Ipp {
                uri: "ipp://10.0.0.6/ipp/print".into(),
                snmp: Some(("10.0.0.6:16161".into(), "public".into()))
            }
        );
        assert!(PrinterAddr::parse("ftp://x", None, 161).is_err());
        let d = tempfile::tempdir().expect("tempdir");
        assert_ne!(
            printer_dir(d.path(), "ipp://a/ipp/print"),
            printer_dir(d.path(), "ipp://b/ipp/print")
        );
    }
}
