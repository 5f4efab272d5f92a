//! The `ddi` command: devices with hawkBit clients (SWUpdate, RAUC's updater, …) — their
//! target tokens, attributes and the tenant's gateway tokens.

use fleetcare_agent::outln;
use fleetcare_wire::ddi::{GatewayToken, NewTarget, Revoked, TargetCreated, TargetView};

use crate::client::segment;
use crate::{Remote, print_json};

#[derive(clap::Subcommand)]
pub enum DdiCmd {
    /// Make a device a DDI target; its target token is shown once.
    AddTarget {
        /// The device id: the client's controllerId.
        id: String,
        #[arg(long)]
        model: String,
    },
    /// A DDI target's model and the attributes it sent (configData).
    Show { id: String },
    /// A new gateway token for the tenant (shown once): its holder acts as any controllerId.
    GatewayToken {
        /// Revoke every gateway token of the tenant instead.
        #[arg(long)]
        revoke: bool,
    },
}

/// Run a `ddi` subcommand.
pub async fn ddi(c: DdiCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match c {
        DdiCmd::AddTarget { id, model } => {
            let t: TargetCreated = api
                .post(
                    "/api/v1/ddi/targets",
                    Some(&NewTarget {
                        device_id: id,
                        model,
                    }),
                )
                .await?;
            if remote.json {
                return print_json(&t);
            }
            outln!(
                "DDI target {} of tenant {}; its target token (shown only now):\n{}\n\
                 SWUpdate: swupdate -u \"-t {} -u <center> -i {} -k <token>\"",
                t.device_id,
                t.tenant,
                t.target_token,
                t.tenant,
                t.device_id
            );
        }
        DdiCmd::Show { id } => {
            let t: TargetView = api
                .get(&format!("/api/v1/ddi/targets/{}", segment(&id)?))
                .await?;
            if remote.json {
                return print_json(&t);
            }
            outln!(
                "{} ({}), {} report(s) from its attributes",
                t.device_id,
                t.model,
                t.reports
            );
            for (k, v) in &t.attributes {
                outln!("  {k} = {v}");
            }
        }
        DdiCmd::GatewayToken { revoke: true } => {
            let r: Revoked = api
                .delete("/api/v1/ddi/gateway-tokens", &serde_json::json!({}))
                .await?;
            if remote.json {
                return print_json(&r);
            }
            outln!("{} gateway token(s) revoked", r.revoked);
        }
        DdiCmd::GatewayToken { revoke: false } => {
            let g: GatewayToken = api
                .post::<(), _>("/api/v1/ddi/gateway-tokens", None)
                .await?;
            if remote.json {
                return print_json(&g);
            }
            outln!(
                "gateway token of tenant {} (shown only now; it acts as any device of the tenant):\n{}",
                g.tenant,
                g.gateway_token
            );
        }
    }
    Ok(())
}
