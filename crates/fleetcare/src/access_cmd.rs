//! `fleetcare tokens`, `fleetcare audit`, `fleetcare whoami` and `fleetcare customers`.

use clap::Subcommand;
use fleetcare_agent::{out, outln};
use fleetcare_wire::access::{
    AccountInfo, AccountList, AuditLog, CreateAccount, CreateCustomer, CreateToken,
    CreatedCustomer, CreatedToken, CustomerList, TokenInfo, TokenList, WhoAmI,
};

use crate::client::segment;
use crate::table;
use crate::{Remote, print_json};

#[derive(Subcommand)]
pub enum TokensCmd {
    /// A new operator token; the token is printed once and stored only as a hash.
    Create {
        /// Who holds it (approvals compare names: one person, one name).
        name: String,
        /// viewer, operator, release_engineer, approver, admin or auditor.
        #[arg(long)]
        role: String,
    },
    /// The tenant's tokens (never the secrets).
    List,
    /// Revoke a token by its id (from `tokens list`): refused from the next request on.
    Revoke { id: String },
}

pub async fn tokens(cmd: TokensCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match cmd {
        TokensCmd::Create { name, role } => {
            let t: CreatedToken = api
                .post("/api/v1/tokens", Some(&CreateToken { name, role }))
                .await?;
            if remote.json {
                return print_json(&t);
            }
            outln!("token {} for {} ({}):", t.info.id, t.info.name, t.info.role);
            outln!("{}", t.token);
            outln!("It is shown this once; the center keeps only its hash.");
        }
        TokensCmd::List => {
            let l: TokenList = api.get("/api/v1/tokens").await?;
            if remote.json {
                return print_json(&l);
            }
            let rows: Vec<Vec<String>> = l
                .tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.name.clone(),
                        t.role.clone(),
                        t.created_at.clone(),
                        t.revoked_at.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(&["ID", "NAME", "ROLE", "CREATED", "REVOKED"], &rows)
            );
        }
        TokensCmd::Revoke { id } => {
            let t: TokenInfo = api
                .post::<(), _>(&format!("/api/v1/tokens/{}/revoke", segment(&id)?), None)
                .await?;
            if remote.json {
                return print_json(&t);
            }
            outln!("token {} of {} revoked", t.id, t.name);
        }
    }
    Ok(())
}

pub async fn audit(limit: u32, before: Option<u64>, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    let mut path = format!("/api/v1/audit?limit={limit}");
    if let Some(b) = before {
        path.push_str(&format!("&before={b}"));
    }
    let l: AuditLog = api.get(&path).await?;
    if remote.json {
        return print_json(&l);
    }
    let rows: Vec<Vec<String>> = l
        .entries
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.at.clone(),
                e.actor.clone().unwrap_or_else(|| "-".into()),
                e.action.clone(),
                format!("{} {}", e.method, e.path),
                format!("{} {}", e.outcome, e.status),
            ]
        })
        .collect();
    out!(
        "{}",
        table::render(&["ID", "AT", "WHO", "ACTION", "REQUEST", "OUTCOME"], &rows)
    );
    Ok(())
}

pub async fn whoami(remote: &Remote) -> anyhow::Result<()> {
    let me: WhoAmI = remote.api()?.get("/api/v1/whoami").await?;
    if remote.json {
        return print_json(&me);
    }
    outln!("{} ({}), tenant {}", me.name, me.role, me.tenant_id);
    outln!("may: {}", me.may.join(", "));
    Ok(())
}

#[derive(Subcommand)]
pub enum CustomersCmd {
    /// A new customer organization; its devices' enrollment key is printed once. Act within
    /// it with `--tenant NAME` (for example `fleetcare tokens create … --tenant NAME`).
    Create { name: String },
    /// The provider's customer organizations and their device counts.
    List,
}

pub async fn customers(cmd: CustomersCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match cmd {
        CustomersCmd::Create { name } => {
            let c: CreatedCustomer = api
                .post("/api/v1/customers", Some(&CreateCustomer { name }))
                .await?;
            if remote.json {
                return print_json(&c);
            }
            outln!(
                "customer {} created; its devices enroll with:",
                c.customer.name
            );
            outln!("{}", c.enrollment_key);
            outln!("It is shown this once; the center keeps only its hash.");
        }
        CustomersCmd::List => {
            let l: CustomerList = api.get("/api/v1/customers").await?;
            if remote.json {
                return print_json(&l);
            }
            let rows: Vec<Vec<String>> = l
                .customers
                .iter()
                .map(|c| vec![c.name.clone(), c.devices.to_string(), c.created_at.clone()])
                .collect();
            out!(
                "{}",
                table::render(&["CUSTOMER", "DEVICES", "CREATED"], &rows)
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum AccountsCmd {
    /// A dashboard account; its password (12 to 256 characters) comes from a file or from
    /// FLEETCARE_PASSWORD, never the command line, and is stored only as an argon2id hash.
    Create {
        name: String,
        /// viewer, operator, release_engineer, approver, admin or auditor.
        #[arg(long)]
        role: String,
        /// A file holding the password (its first line).
        #[arg(long, env = "FLEETCARE_PASSWORD_FILE")]
        password_file: Option<std::path::PathBuf>,
    },
    /// The tenant's accounts.
    List,
    /// Disable an account: its sessions end at once.
    Disable { name: String },
}

pub async fn accounts(cmd: AccountsCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match cmd {
        AccountsCmd::Create {
            name,
            role,
            password_file,
        } => {
            let password = match (password_file, std::env::var("FLEETCARE_PASSWORD").ok()) {
                (Some(f), _) => std::fs::read_to_string(&f)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                (None, Some(p)) => p,
                (None, None) => anyhow::bail!(
                    "the password: --password-file FILE or FLEETCARE_PASSWORD (never an argument)"
                ),
            };
            let a: AccountInfo = api
                .post(
                    "/api/v1/accounts",
                    Some(&CreateAccount {
                        name,
                        role,
                        password,
                    }),
                )
                .await?;
            if remote.json {
                return print_json(&a);
            }
            outln!("account {} ({}) created", a.name, a.role);
        }
        AccountsCmd::List => {
            let l: AccountList = api.get("/api/v1/accounts").await?;
            if remote.json {
                return print_json(&l);
            }
            let rows: Vec<Vec<String>> = l
                .accounts
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        a.role.clone(),
                        a.created_at.clone(),
                        a.disabled_at.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(&["NAME", "ROLE", "CREATED", "DISABLED"], &rows)
            );
        }
        AccountsCmd::Disable { name } => {
            let _: serde_json::Value = api
                .post::<(), _>(
                    &format!("/api/v1/accounts/{}/disable", segment(&name)?),
                    None,
                )
                .await?;
            if remote.json {
                return print_json(&serde_json::json!({"name": name, "disabled": true}));
            }
            outln!("account {name} disabled; its sessions are over");
        }
    }
    Ok(())
}
