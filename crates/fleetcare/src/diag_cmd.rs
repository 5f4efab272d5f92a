//! The `rules` and `troubles` commands, and `devices about`.

use anyhow::Context;
use clap::Subcommand;
use fleetcare_agent::{out, outln};
use fleetcare_wire::troubles::{DeviceAbout, RulesLoaded, RulesView, Trouble, TroubleList};

use crate::client::segment;
use crate::table;
use crate::{Remote, print_json};

#[derive(Subcommand)]
pub enum RulesCmd {
    /// Load diagnosis rules (TOML, see examples/rules.toml): a new revision.
    Load { file: std::path::PathBuf },
    /// The current rules, in words.
    Show,
}

#[derive(Subcommand)]
pub enum TroublesCmd {
    /// Troubles, newest first (live ones unless --state says otherwise).
    List {
        /// live, open, acknowledged, resolved or all.
        #[arg(long, default_value = "live")]
        state: String,
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One trouble with its evidence and what the center did about it.
    Show { id: u64 },
    /// Acknowledge an open trouble (someone is on it).
    Ack { id: u64 },
    /// Resolve a trouble.
    Resolve { id: u64 },
}

pub async fn rules(cmd: RulesCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match cmd {
        RulesCmd::Load { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let loaded: RulesLoaded = api
                .put_text("/api/v1/rules", "application/toml", text)
                .await?;
            if remote.json {
                return print_json(&loaded);
            }
            outln!(
                "rules revision {} loaded: {} trouble rule(s), {} abnormal-unit rule(s)",
                loaded.revision,
                loaded.rules,
                loaded.abnormal
            );
        }
        RulesCmd::Show => {
            let v: RulesView = api.get("/api/v1/rules").await?;
            if remote.json {
                return print_json(&v);
            }
            match v.revision {
                None => outln!("no rules loaded"),
                Some(r) => outln!(
                    "rules revision {r}, loaded {} by {}",
                    v.loaded_at.unwrap_or_default(),
                    v.loaded_by.unwrap_or_default()
                ),
            }
            let rows: Vec<Vec<String>> = v
                .rules
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.severity.clone(),
                        r.condition.clone(),
                        r.fix.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(&["RULE", "SEVERITY", "WHEN", "FIX"], &rows)
            );
            for a in &v.abnormal {
                outln!("abnormal: {} ({}, {})", a.id, a.unit_kind, a.title);
            }
        }
    }
    Ok(())
}

fn print_trouble(t: &Trouble) {
    outln!(
        "trouble #{} {} [{}, {}]",
        t.id,
        t.title,
        t.severity,
        t.state
    );
    outln!("  device      {}", t.device_id);
    outln!("  rule        {}", t.rule_id);
    outln!("  action      {}", t.action);
    if let Some(n) = &t.note {
        outln!("  note        {n}");
    }
    outln!(
        "  opened      {} ({} event(s), last {})",
        t.opened_at,
        t.occurrences,
        t.last_event_at
    );
    let ev: Vec<String> = t
        .evidence
        .iter()
        .map(|e| format!("{}/{}", e.boot_epoch, e.seq))
        .collect();
    outln!("  evidence    events {} (boot/seq)", ev.join(", "));
    if let (Some(by), Some(at)) = (&t.acknowledged_by, &t.acknowledged_at) {
        outln!("  acknowledged by {by} at {at}");
    }
    match (&t.resolved_by, &t.resolved_at) {
        (Some(by), Some(at)) => outln!("  resolved    by {by} at {at}"),
        _ => match &t.resolves_at {
            Some(at) => outln!("  resolves    at {at} unless it recurs"),
            None => outln!("  resolves    when the device's reports show it is over"),
        },
    }
    if let Some(f) = &t.fix {
        outln!("  known fix   {f}");
    }
    if let Some(o) = &t.fix_outcome {
        outln!("  fix         {o}");
    }
    if let Some(j) = &t.fix_job {
        outln!(
            "  fix job     #{} is {} now",
            j.id,
            j.state.replace('_', " ")
        );
    }
    if let Some(at) = &t.fixed_at {
        outln!(
            "  fixed       at {at}; watching for a recurrence until {}",
            t.resolves_at
                .as_deref()
                .unwrap_or("the device's reports show it is over")
        );
    }
}

pub async fn troubles(cmd: TroublesCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    let one = match cmd {
        TroublesCmd::List {
            state,
            device,
            rule,
            limit,
        } => {
            let mut path = format!("/api/v1/troubles?state={}&limit={limit}", segment(&state)?);
            if let Some(d) = &device {
                path.push_str(&format!("&device={}", segment(d)?));
            }
            if let Some(r) = &rule {
                path.push_str(&format!("&rule={}", segment(r)?));
            }
            let list: TroubleList = api.get(&path).await?;
            if remote.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .troubles
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.device_id.clone(),
                        t.severity.clone(),
                        t.state.clone(),
                        t.occurrences.to_string(),
                        t.opened_at.clone(),
                        t.title.clone(),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &[
                        "ID", "DEVICE", "SEVERITY", "STATE", "EVENTS", "OPENED", "TITLE"
                    ],
                    &rows
                )
            );
            return Ok(());
        }
        TroublesCmd::Show { id } => {
            api.get::<Trouble>(&format!("/api/v1/troubles/{id}"))
                .await?
        }
        TroublesCmd::Ack { id } => {
            api.post::<(), Trouble>(&format!("/api/v1/troubles/{id}/ack"), None)
                .await?
        }
        TroublesCmd::Resolve { id } => {
            api.post::<(), Trouble>(&format!("/api/v1/troubles/{id}/resolve"), None)
                .await?
        }
    };
    if remote.json {
        return print_json(&one);
    }
    print_trouble(&one);
    Ok(())
}

/// `devices about ID`: what the center knows about a device.
pub async fn about(id: &str, remote: &Remote) -> anyhow::Result<()> {
    let a: DeviceAbout = remote
        .api()?
        .get(&format!("/api/v1/devices/{}/about", segment(id)?))
        .await?;
    if remote.json {
        return print_json(&a);
    }
    outln!(
        "{} ({}): compatibility {}, {}",
        a.device_id,
        a.model,
        a.compat.state,
        if a.rollout_eligible {
            "eligible for rollouts".to_owned()
        } else {
            format!(
                "not eligible for rollouts ({})",
                a.rollout_ineligible.as_deref().unwrap_or("see the center")
            )
        }
    );
    for t in &a.troubles {
        outln!(
            "trouble  #{} {} [{}, {}]",
            t.id,
            t.title,
            t.severity,
            t.state
        );
    }
    for (i, r) in a.recommended_actions.iter().enumerate() {
        outln!("{}. {r}", i + 1);
    }
    for u in &a.abnormal_units {
        outln!("abnormal {}: {}", u.slot, u.reason);
    }
    for s in &a.settings {
        outln!("setting  {} = {} (by {})", s.name, s.value, s.set_by);
    }
    for j in &a.recent_jobs {
        outln!("job      #{} {} (by {})", j.id, j.state, j.created_by);
    }
    let r = &a.error_rate;
    outln!(
        "errors   {:.1}/day over {} days; the model's {} device(s) average {:.1}",
        r.device_per_day,
        r.days,
        r.model_devices,
        r.model_per_device_per_day
    );
    Ok(())
}
