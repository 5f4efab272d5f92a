//! `fleetcare catalog …`, `fleetcare compat …`, `fleetcare jobs …`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use fleetcare_agent::{out, outln};
use fleetcare_wire::compat::{
    CatalogInfo, CatalogLoaded, CompatPolicy, CompatReport, DisableUnit, FleetCompat, Job, JobList,
    Recommendation, SoftwareStep, UnitService, UnitServiceChanged,
};

use crate::client::segment;
use crate::table;
use crate::{Remote, print_json};

#[derive(Subcommand)]
pub enum CatalogCmd {
    /// Load a catalog file: a new revision, and the whole fleet is judged again.
    Load { file: PathBuf },
    /// The current catalog revision (or another), optionally with its source.
    Show {
        #[arg(long)]
        revision: Option<u64>,
        /// Print the catalog's TOML source.
        #[arg(long)]
        source: bool,
    },
    /// Every revision loaded, newest first.
    Revisions,
}

#[derive(Subcommand)]
pub enum CompatCmd {
    /// A device's findings with explanations, and its software plan or hardware advice.
    Check { id: String },
    /// Devices by compatibility state and finding kind, overall and per model.
    Fleet,
    /// Show or set the tenant's policy: how plans prefer versions, whether version changes run
    /// automatically or wait for approval, whether optional units may be taken out of service.
    Policy {
        /// `minimal` or `latest`.
        #[arg(long)]
        plan: Option<String>,
        /// `automatic`, `approval` or `off`.
        #[arg(long)]
        fix: Option<String>,
        /// `on` or `off`.
        #[arg(long, value_parser = ["on", "off"])]
        out_of_service: Option<String>,
        /// Jobs for offline devices expire after this many hours.
        #[arg(long)]
        job_ttl_hours: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum UnitsCmd {
    /// A device's units out of service: why, by whom, and which unit took over.
    List { device: String },
    /// Take a unit out of service: the device keeps working without it (another unit of its
    /// kind takes over, if it has one) until it is put back or replaced.
    Disable {
        device: String,
        slot: String,
        /// Why, for the people at the device.
        #[arg(long)]
        reason: String,
    },
    /// Put a unit back in service.
    Enable { device: String, slot: String },
}

#[derive(Subcommand)]
pub enum JobsCmd {
    /// Install or switch software on one or more units of a device: all or none.
    Create {
        #[arg(long)]
        device: String,
        /// `SLOT:PRODUCT=VERSION`: download and install a published release.
        #[arg(long)]
        install: Vec<String>,
        /// `SLOT:PRODUCT=VERSION`: activate the copy in the unit's inactive slot.
        #[arg(long)]
        switch: Vec<String>,
        /// Seconds until the job expires if the device does not take it.
        #[arg(long)]
        ttl_s: Option<u64>,
    },
    /// Jobs, newest first.
    List {
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One job.
    Show { id: u64 },
    /// Approve a job awaiting approval.
    Approve { id: u64 },
    /// Cancel a job that has not started.
    Cancel { id: u64 },
}

fn steps_text(steps: &[SoftwareStep]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match (&s.from, s.action.as_str()) {
            (Some(from), "switch") => format!(
                "switch {} on the {} from {from} to {} (inactive copy, no download)",
                s.product, s.slot, s.to
            ),
            (Some(from), _) => format!(
                "install {} {} on the {} (from {from})",
                s.product, s.to, s.slot
            ),
            (None, _) => format!("install {} {} on the {}", s.product, s.to, s.slot),
        })
        .collect()
}

fn advice_text(recs: &[Recommendation]) -> Vec<String> {
    recs.iter()
        .map(|r| format!("{}. {}", r.rank, r.summary))
        .collect()
}

pub async fn catalog(cmd: CatalogCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match cmd {
        CatalogCmd::Load { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let loaded: CatalogLoaded = api
                .post_text("/api/v1/catalog", "application/toml", text)
                .await?;
            if remote.json {
                return print_json(&loaded);
            }
            let s = loaded.stats;
            outln!(
                "catalog revision {} loaded: {} device models, {} unit models, {} products, {} releases, {} rules",
                loaded.revision,
                s.device_models,
                s.unit_models,
                s.products,
                s.releases,
                s.rules
            );
            outln!(
                "the fleet ({} devices) is being judged against it",
                loaded.devices
            );
            Ok(())
        }
        CatalogCmd::Show { revision, source } => {
            let mut path = format!("/api/v1/catalog?source={source}");
            if let Some(r) = revision {
                path.push_str(&format!("&revision={r}"));
            }
            let info: CatalogInfo = api.get(&path).await?;
            if remote.json {
                return print_json(&info);
            }
            if let Some(src) = &info.source {
                out!("{src}");
                return Ok(());
            }
            let s = info.stats;
            outln!("revision      {}", info.revision);
            outln!("loaded        {} by {}", info.loaded_at, info.loaded_by);
            outln!("digest        {}", info.digest);
            outln!("device models {}", s.device_models);
            outln!("unit models   {}", s.unit_models);
            outln!("products      {}", s.products);
            outln!("releases      {}", s.releases);
            outln!("rules         {}", s.rules);
            Ok(())
        }
        CatalogCmd::Revisions => {
            let revs: Vec<CatalogInfo> = api.get("/api/v1/catalog/revisions").await?;
            if remote.json {
                return print_json(&revs);
            }
            let rows: Vec<Vec<String>> = revs
                .iter()
                .map(|r| {
                    vec![
                        r.revision.to_string(),
                        r.loaded_at.clone(),
                        r.loaded_by.clone(),
                        r.stats.releases.to_string(),
                        r.stats.rules.to_string(),
                        r.digest[..12.min(r.digest.len())].to_owned(),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &["REVISION", "LOADED", "BY", "RELEASES", "RULES", "DIGEST"],
                    &rows
                )
            );
            Ok(())
        }
    }
}

pub async fn compat(cmd: CompatCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match cmd {
        CompatCmd::Check { id } => {
            let r: CompatReport = api
                .get(&format!("/api/v1/devices/{}/compat", segment(&id)?))
                .await?;
            if remote.json {
                return print_json(&r);
            }
            outln!(
                "{}  {}  {}{}",
                r.device_id,
                r.model,
                r.state,
                r.catalog_revision
                    .map_or(String::new(), |c| format!("  (catalog revision {c})"))
            );
            if r.findings.is_empty() {
                outln!("no findings");
            }
            for f in &r.findings {
                outln!(
                    "\n{} ({}): {}",
                    fleetcare_wire::compat::finding_words(&f.kind),
                    f.kind,
                    f.explanation
                );
                outln!("  rule: {}", f.rule);
                outln!("  since {} (revision {})", f.opened_at, f.catalog_revision);
            }
            if let Some(p) = &r.plan {
                if p.steps.is_empty() {
                    outln!("\nplan ({}): nothing to change", p.policy);
                } else {
                    outln!("\nplan ({}):", p.policy);
                    for s in steps_text(&p.steps) {
                        outln!("  - {s}");
                    }
                }
                if let Some(why) = &p.blocked {
                    outln!("  no job is made: {why}");
                }
            }
            if let Some(why) = &r.no_plan {
                match &r.no_plan_summary {
                    Some(one) => outln!("\nno software plan: {one}\n  the solver's reasoning:"),
                    None => outln!("\nno software plan:"),
                }
                for l in why.lines().filter(|l| !l.trim().is_empty()) {
                    outln!("  {l}");
                }
            }
            if !r.advice.is_empty() {
                outln!("\nrecommended configurations:");
                for a in advice_text(&r.advice) {
                    outln!("  {a}");
                }
            }
            if !r.jobs.is_empty() {
                outln!("\njobs:");
                for j in &r.jobs {
                    outln!(
                        "  #{} {} ({}): {}",
                        j.id,
                        j.state,
                        j.origin,
                        steps_text(&j.steps).join("; ")
                    );
                    if let Some(w) = &j.waiting {
                        outln!("      {w}");
                    }
                }
            }
            if !r.notifications.is_empty() {
                outln!("\nnotifications:");
                for n in &r.notifications {
                    outln!(
                        "  #{} {}{}",
                        n.id,
                        n.title,
                        if n.delivered_at.is_some() {
                            " (delivered)"
                        } else {
                            ""
                        }
                    );
                }
            }
            Ok(())
        }
        CompatCmd::Fleet => {
            let f: FleetCompat = api.get("/api/v1/compat/fleet").await?;
            if remote.json {
                return print_json(&f);
            }
            outln!(
                "{} devices{}",
                f.devices,
                f.catalog_revision
                    .map_or(" (no catalog loaded)".to_owned(), |r| format!(
                        ", catalog revision {r}"
                    ))
            );
            let states: Vec<String> = f.by_state.iter().map(|(k, v)| format!("{k} {v}")).collect();
            outln!("by state: {}", states.join(", "));
            let kinds: Vec<String> = f.by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect();
            outln!(
                "devices with findings, by kind: {}",
                if kinds.is_empty() {
                    "none".into()
                } else {
                    kinds.join(", ")
                }
            );
            outln!();
            let kind_names = fleetcare_wire::compat::FINDING_KINDS;
            let rows: Vec<Vec<String>> = f
                .by_model
                .iter()
                .map(|m| {
                    let mut row = vec![
                        m.model.clone(),
                        m.devices.to_string(),
                        m.by_state
                            .get("compatible")
                            .copied()
                            .unwrap_or(0)
                            .to_string(),
                    ];
                    row.extend(
                        kind_names
                            .iter()
                            .map(|k| m.by_kind.get(*k).copied().unwrap_or(0).to_string()),
                    );
                    row
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &[
                        "MODEL",
                        "DEVICES",
                        "COMPATIBLE",
                        "DEV-UNIT",
                        "UNIT-UNIT",
                        "UNIT-SW",
                        "SW-SW",
                        "UNK-DEVICE",
                        "UNK-UNIT",
                        "UNK-SW"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        CompatCmd::Policy {
            plan,
            fix,
            out_of_service,
            job_ttl_hours,
        } => {
            let mut p: CompatPolicy = api.get("/api/v1/compat/policy").await?;
            let change = plan.is_some()
                || fix.is_some()
                || out_of_service.is_some()
                || job_ttl_hours.is_some();
            if change {
                if let Some(v) = plan {
                    p.plan = v;
                }
                if let Some(v) = fix {
                    p.fix = v;
                }
                if let Some(v) = out_of_service {
                    p.out_of_service = v == "on";
                }
                if let Some(h) = job_ttl_hours {
                    p.job_ttl_s = h.saturating_mul(3600);
                }
                p = api.put("/api/v1/compat/policy", &p).await?;
            }
            if remote.json {
                return print_json(&p);
            }
            outln!("plan            {}", p.plan);
            outln!("fix             {}", p.fix);
            outln!(
                "out of service  {}",
                if p.out_of_service { "on" } else { "off" }
            );
            outln!("job ttl         {} h", p.job_ttl_s / 3600);
            Ok(())
        }
    }
}

fn job_row(j: &Job) -> Vec<String> {
    vec![
        format!("#{}", j.id),
        j.device_id.clone(),
        match &j.waiting {
            Some(w) => format!("{} — {w}", j.state),
            None => j.state.clone(),
        },
        j.origin.clone(),
        j.updated_at.clone(),
        steps_text(&j.steps).join("; "),
    ]
}

pub async fn jobs(cmd: JobsCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match cmd {
        JobsCmd::List {
            device,
            state,
            limit,
        } => {
            let mut path = format!("/api/v1/jobs?limit={limit}");
            if let Some(d) = &device {
                path.push_str(&format!("&device={}", segment(d)?));
            }
            if let Some(s) = &state {
                anyhow::ensure!(
                    s.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{s:?} is not a job state"
                );
                path.push_str(&format!("&state={s}"));
            }
            let list: JobList = api.get(&path).await?;
            if remote.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list.jobs.iter().map(job_row).collect();
            out!(
                "{}",
                table::render(
                    &["JOB", "DEVICE", "STATE", "ORIGIN", "UPDATED", "STEPS"],
                    &rows
                )
            );
            Ok(())
        }
        JobsCmd::Create {
            device,
            install,
            switch,
            ttl_s,
        } => crate::delivery_cmd::create_job(device, install, switch, ttl_s, remote).await,
        JobsCmd::Show { id } => {
            let j: Job = api.get(&format!("/api/v1/jobs/{id}")).await?;
            if remote.json {
                return print_json(&j);
            }
            outln!("job       #{}", j.id);
            outln!("device    {}", j.device_id);
            outln!("state     {}", j.state);
            if let Some(w) = &j.waiting {
                outln!("waiting   {w}");
            }
            if let Some(r) = &j.reason {
                outln!("reason    {r}");
            }
            if let Some(d) = &j.detail {
                outln!("detail    {d}");
            }
            outln!("origin    {} (by {})", j.origin, j.created_by);
            outln!("created   {}", j.created_at);
            outln!("updated   {}", j.updated_at);
            outln!("expires   {}", j.expires_at);
            if let (Some(by), Some(at)) = (&j.approved_by, &j.approved_at) {
                outln!("approved  by {by} at {at}");
            }
            if let (Some(done), Some(total)) = (j.bytes_done, j.bytes_total) {
                outln!("progress  {done} of {total} bytes");
            }
            for s in steps_text(&j.steps) {
                outln!("  - {s}");
            }
            if !j.events.is_empty() {
                outln!("history");
                outln!("  {}  created ({})", j.created_at, j.created_by);
                for e in &j.events {
                    let why = match (&e.reason, &e.detail) {
                        (Some(r), Some(d)) => format!(" ({r}: {d})"),
                        (Some(r), None) => format!(" ({r})"),
                        (None, Some(d)) => format!(" ({d})"),
                        (None, None) => String::new(),
                    };
                    outln!("  {}  {}{why}", e.at, e.state);
                }
            }
            Ok(())
        }
        JobsCmd::Approve { id } => {
            let j: Job = api
                .post::<(), _>(&format!("/api/v1/jobs/{id}/approve"), None)
                .await?;
            if remote.json {
                return print_json(&j);
            }
            outln!("job #{} approved: {}", j.id, j.state);
            Ok(())
        }
        JobsCmd::Cancel { id } => {
            let j: Job = api
                .post::<(), _>(&format!("/api/v1/jobs/{id}/cancel"), None)
                .await?;
            if remote.json {
                return print_json(&j);
            }
            outln!("job #{} {}", j.id, j.state);
            Ok(())
        }
    }
}

fn unit_rows(units: &[UnitService]) -> Vec<Vec<String>> {
    units
        .iter()
        .map(|u| {
            vec![
                u.slot.clone(),
                format!("#{}", u.serial),
                u.origin.clone(),
                u.taken_by.clone(),
                u.switched_to.clone().unwrap_or_else(|| "-".into()),
                u.taken_at.clone(),
                u.reason.clone(),
            ]
        })
        .collect()
}

const UNIT_HEADER: &[&str] = &[
    "SLOT",
    "SERIAL",
    "ORIGIN",
    "BY",
    "TAKEN OVER BY",
    "SINCE",
    "REASON",
];

pub async fn units(cmd: UnitsCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    let changed = match cmd {
        UnitsCmd::List { device } => {
            let list: Vec<UnitService> = api
                .get(&format!("/api/v1/devices/{}/units", segment(&device)?))
                .await?;
            if remote.json {
                return print_json(&list);
            }
            if list.is_empty() {
                outln!("every unit of {device} is in service");
            } else {
                out!("{}", table::render(UNIT_HEADER, &unit_rows(&list)));
            }
            return Ok(());
        }
        UnitsCmd::Disable {
            device,
            slot,
            reason,
        } => {
            let path = format!(
                "/api/v1/devices/{}/units/{}/disable",
                segment(&device)?,
                segment(&slot)?
            );
            api.post::<_, UnitServiceChanged>(&path, Some(&DisableUnit { reason }))
                .await?
        }
        UnitsCmd::Enable { device, slot } => {
            let path = format!(
                "/api/v1/devices/{}/units/{}/enable",
                segment(&device)?,
                segment(&slot)?
            );
            api.post::<(), UnitServiceChanged>(&path, None).await?
        }
    };
    if remote.json {
        return print_json(&changed);
    }
    let what = if changed.in_service {
        "back in service"
    } else {
        "out of service"
    };
    outln!(
        "the {} of {} (#{}) is {what}{}",
        changed.slot,
        changed.device_id,
        changed.serial,
        changed
            .switched_to
            .as_ref()
            .map_or(String::new(), |to| format!(
                "; the {to} takes over its work"
            ))
    );
    match &changed.told_via {
        Some(via) => outln!("the device was told now ({via})"),
        None => outln!("the device is offline: it is told when it connects"),
    }
    Ok(())
}
