//! The `retention` command: how long the tenant keeps each kind of data.

use fleetcare_agent::out;
use fleetcare_wire::retention::{Retention, SetRetention};

use crate::table;
use crate::{Remote, print_json};

#[derive(clap::Subcommand)]
pub enum RetentionCmd {
    /// Days each kind of data is kept (0: forever).
    Show,
    /// Keep a kind of data (`reports`, `error_events`) for so many days; 0 keeps it forever.
    Set { kind: String, days: u64 },
}

fn print(r: &Retention) {
    let rows: Vec<Vec<String>> = r
        .kinds
        .iter()
        .map(|k| {
            let days = |d: u64| {
                if d == 0 {
                    "forever".to_owned()
                } else {
                    format!("{d} days")
                }
            };
            vec![k.kind.clone(), days(k.days), days(k.default_days)]
        })
        .collect();
    out!("{}", table::render(&["KIND", "KEPT", "DEFAULT"], &rows));
}

/// Run a `retention` subcommand.
pub async fn retention(c: RetentionCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    let r: Retention = match c {
        RetentionCmd::Show => api.get("/api/v1/retention").await?,
        RetentionCmd::Set { kind, days } => {
            api.put("/api/v1/retention", &SetRetention { kind, days })
                .await?
        }
    };
    if remote.json {
        return print_json(&r);
    }
    print(&r);
    Ok(())
}
