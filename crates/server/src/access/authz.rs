//! Who may do what: one declarative table of every operator endpoint, the roles it allows,
//! and the middleware that enforces it and writes the audit log.
//!
//! Every operator route passes through [`authorize`]: a route missing from [`TABLE`] is
//! refused (fail closed), the caller is authenticated by token (looked up on every request,
//! so a revoked token stops working at once), its role is checked against the table, and
//! every denial and every state-changing request is appended to the audit log with its
//! outcome before the answer leaves. Tenancy is not decided here: every handler scopes its
//! queries to the caller's tenant, so another tenant's things are "not found".

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fleetcare_core::secret;
use fleetcare_store::{NewAudit, Operator};

use crate::AppState;
use crate::access::session;
use crate::error::ApiError;
use crate::extract::{OperatorAuth, bearer, client_ip, failed};

/// The request header naming the customer organization a provider's operator acts within.
pub const TENANT_HEADER: &str = "fleetcare-tenant";

/// An operator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads the fleet: devices, compatibility, troubles, rollouts, jobs, catalog.
    Viewer,
    /// Works with devices: requests reports and error logs, sets intervals, labels and sites,
    /// acknowledges troubles, creates and cancels jobs, pauses and resumes rollouts.
    Operator,
    /// Loads catalogs and rules, publishes releases and artifacts, creates rollouts.
    ReleaseEngineer,
    /// Approves rollouts, waves and jobs (never their own).
    Approver,
    /// Everything, including keys, policy, device revocation and tokens.
    Admin,
    /// Reads everything a viewer does, and the audit log.
    Auditor,
}

pub const ROLES: &[Role] = &[
    Role::Viewer,
    Role::Operator,
    Role::ReleaseEngineer,
    Role::Approver,
    Role::Admin,
    Role::Auditor,
];

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::ReleaseEngineer => "release_engineer",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        ROLES.iter().copied().find(|r| r.as_str() == s)
    }
}

use Role::{Admin, Approver, Auditor, Operator as Ops, ReleaseEngineer, Viewer};

const READ: &[Role] = &[Viewer, Ops, ReleaseEngineer, Approver, Admin, Auditor];
const OPERATE: &[Role] = &[Ops, Admin];
const RELEASE: &[Role] = &[ReleaseEngineer, Admin];
const APPROVE: &[Role] = &[Approver, Admin];
const CONTROL: &[Role] = &[Ops, ReleaseEngineer, Admin];
const ADMIN: &[Role] = &[Admin];
const AUDIT: &[Role] = &[Auditor, Admin];

/// One endpoint: its method and route, the action's name (in the audit log) and the roles
/// that may call it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub action: &'static str,
    pub roles: &'static [Role],
}

const fn r(
    method: &'static str,
    path: &'static str,
    action: &'static str,
    roles: &'static [Role],
) -> Rule {
    Rule {
        method,
        path,
        action,
        roles,
    }
}

/// Operator API endpoints deliberately outside the layer: logging in is how a caller gets
/// a session (it is bounded by the failed-authentication budget and audited itself). The API
/// description is public too, but is not an endpoint of the API.
pub const PUBLIC: &[(&str, &str)] = &[("POST", "/api/v1/login")];

/// Every operator endpoint. The router's routes and this table are the same set (a test
/// checks it both ways).
pub const TABLE: &[Rule] = &[
    r("GET", "/api/v1/devices", "device.list", READ),
    r("GET", "/api/v1/devices/{id}", "device.show", READ),
    r(
        "GET",
        "/api/v1/devices/{id}/history",
        "device.history",
        READ,
    ),
    r("GET", "/api/v1/devices/{id}/meters", "device.meters", READ),
    r("GET", "/api/v1/meter-reads", "meter_read.list", READ),
    r(
        "GET",
        "/api/v1/supplies/running-out",
        "supply.running_out",
        READ,
    ),
    r(
        "GET",
        "/api/v1/meter-read-schedule",
        "meter_read.schedule",
        READ,
    ),
    r(
        "PUT",
        "/api/v1/meter-read-schedule",
        "meter_read.set_schedule",
        ADMIN,
    ),
    r(
        "GET",
        "/api/v1/devices/{id}/supplies",
        "device.supplies",
        READ,
    ),
    r("GET", "/api/v1/notify", "notify.list", READ),
    r("POST", "/api/v1/notify", "notify.add", ADMIN),
    r("GET", "/api/v1/notify/{name}", "notify.show", READ),
    r("DELETE", "/api/v1/notify/{name}", "notify.remove", ADMIN),
    r("POST", "/api/v1/notify/{name}/test", "notify.test", ADMIN),
    r(
        "POST",
        "/api/v1/notify/{name}/enable",
        "notify.enable",
        ADMIN,
    ),
    r(
        "GET",
        "/api/v1/notify/{name}/deliveries",
        "notify.deliveries",
        READ,
    ),
    r(
        "POST",
        "/api/v1/notify/{name}/deliveries/{id}/redeliver",
        "notify.redeliver",
        ADMIN,
    ),
    r("GET", "/api/v1/retention", "retention.show", READ),
    r("PUT", "/api/v1/retention", "retention.set", ADMIN),
    r("POST", "/api/v1/ddi/targets", "ddi.add_target", ADMIN),
    r("GET", "/api/v1/ddi/targets/{id}", "ddi.show_target", READ),
    r(
        "POST",
        "/api/v1/ddi/gateway-tokens",
        "ddi.add_gateway_token",
        ADMIN,
    ),
    r(
        "DELETE",
        "/api/v1/ddi/gateway-tokens",
        "ddi.revoke_gateway_tokens",
        ADMIN,
    ),
    r("GET", "/api/v1/notify-settings", "notify.settings", READ),
    r(
        "PUT",
        "/api/v1/notify-settings",
        "notify.set_settings",
        ADMIN,
    ),
    r(
        "POST",
        "/api/v1/devices/{id}/request-report",
        "device.request_report",
        OPERATE,
    ),
    r("GET", "/api/v1/devices/{id}/units", "unit.list", READ),
    r(
        "POST",
        "/api/v1/devices/{id}/units/{slot}/disable",
        "unit.disable",
        OPERATE,
    ),
    r(
        "POST",
        "/api/v1/devices/{id}/units/{slot}/enable",
        "unit.enable",
        OPERATE,
    ),
    r(
        "PUT",
        "/api/v1/devices/{id}/report-interval",
        "device.report_interval",
        OPERATE,
    ),
    r(
        "POST",
        "/api/v1/devices/{id}/revoke",
        "device.revoke",
        ADMIN,
    ),
    r(
        "POST",
        "/api/v1/devices/{id}/rotate-credential",
        "device.rotate_credential",
        ADMIN,
    ),
    r(
        "POST",
        "/api/v1/devices/{id}/allow-reenroll",
        "device.allow_reenroll",
        ADMIN,
    ),
    r("GET", "/api/v1/devices/{id}/compat", "device.compat", READ),
    r("GET", "/api/v1/devices/{id}/about", "device.about", READ),
    r("GET", "/api/v1/devices/{id}/errors", "device.errors", READ),
    r(
        "POST",
        "/api/v1/devices/{id}/request-errors",
        "device.request_errors",
        OPERATE,
    ),
    r(
        "PUT",
        "/api/v1/devices/{id}/labels",
        "device.labels",
        OPERATE,
    ),
    r("GET", "/api/v1/catalog", "catalog.show", READ),
    r("POST", "/api/v1/catalog", "catalog.load", RELEASE),
    r(
        "GET",
        "/api/v1/catalog/revisions",
        "catalog.revisions",
        READ,
    ),
    r("GET", "/api/v1/compat/fleet", "compat.fleet", READ),
    r("GET", "/api/v1/compat/policy", "policy.show", READ),
    r("PUT", "/api/v1/compat/policy", "policy.set", ADMIN),
    r("GET", "/api/v1/rules", "rules.show", READ),
    r("PUT", "/api/v1/rules", "rules.load", RELEASE),
    r("GET", "/api/v1/troubles", "trouble.list", READ),
    r("GET", "/api/v1/troubles/{id}", "trouble.show", READ),
    r("POST", "/api/v1/troubles/{id}/ack", "trouble.ack", OPERATE),
    r(
        "POST",
        "/api/v1/troubles/{id}/resolve",
        "trouble.resolve",
        OPERATE,
    ),
    r(
        "GET",
        "/api/v1/error-schedules",
        "error_schedule.list",
        READ,
    ),
    r(
        "PUT",
        "/api/v1/error-schedules",
        "error_schedule.set",
        OPERATE,
    ),
    r(
        "DELETE",
        "/api/v1/error-schedules",
        "error_schedule.remove",
        OPERATE,
    ),
    r("GET", "/api/v1/jobs", "job.list", READ),
    r("POST", "/api/v1/jobs", "job.create", CONTROL),
    r("GET", "/api/v1/jobs/{id}", "job.show", READ),
    r("POST", "/api/v1/jobs/{id}/approve", "job.approve", APPROVE),
    r("POST", "/api/v1/jobs/{id}/cancel", "job.cancel", CONTROL),
    r("GET", "/api/v1/releases", "release.list", READ),
    r("POST", "/api/v1/releases", "release.publish", RELEASE),
    r(
        "PUT",
        "/api/v1/artifacts/{sha256}",
        "artifact.upload",
        RELEASE,
    ),
    r("GET", "/api/v1/keys", "keys.show", READ),
    r("POST", "/api/v1/keys", "keys.publish", ADMIN),
    r("GET", "/api/v1/tuf/online-keys", "tuf.online_keys", ADMIN),
    r("GET", "/api/v1/tuf/roles/{role}", "tuf.show", READ),
    r("POST", "/api/v1/tuf/root", "tuf.root", ADMIN),
    r("POST", "/api/v1/tuf/targets", "tuf.targets", ADMIN),
    r("POST", "/api/v1/tuf/makers/{maker}", "tuf.maker", RELEASE),
    r("GET", "/api/v1/rollouts", "rollout.list", READ),
    r("POST", "/api/v1/rollouts", "rollout.create", RELEASE),
    r("GET", "/api/v1/rollouts/{id}", "rollout.show", READ),
    r(
        "GET",
        "/api/v1/rollouts/{id}/devices",
        "rollout.devices",
        READ,
    ),
    r(
        "POST",
        "/api/v1/rollouts/{id}/approve",
        "rollout.approve",
        APPROVE,
    ),
    r(
        "POST",
        "/api/v1/rollouts/{id}/pause",
        "rollout.pause",
        CONTROL,
    ),
    r(
        "POST",
        "/api/v1/rollouts/{id}/resume",
        "rollout.resume",
        CONTROL,
    ),
    r(
        "POST",
        "/api/v1/rollouts/{id}/abort",
        "rollout.abort",
        CONTROL,
    ),
    r("GET", "/api/v1/sites", "site.list", READ),
    r("PUT", "/api/v1/sites/{name}", "site.set", OPERATE),
    r("POST", "/api/v1/logout", "session.logout", READ),
    r("GET", "/api/v1/accounts", "account.list", ADMIN),
    r("POST", "/api/v1/accounts", "account.create", ADMIN),
    r(
        "POST",
        "/api/v1/accounts/{name}/disable",
        "account.disable",
        ADMIN,
    ),
    r("GET", "/api/v1/customers", "customer.list", READ),
    r("POST", "/api/v1/customers", "customer.create", ADMIN),
    r("GET", "/api/v1/audit", "audit.read", AUDIT),
    r("GET", "/api/v1/tokens", "token.list", ADMIN),
    r("POST", "/api/v1/tokens", "token.create", ADMIN),
    r("POST", "/api/v1/tokens/{id}/revoke", "token.revoke", ADMIN),
    r("GET", "/api/v1/whoami", "whoami", READ),
];

/// The rule of a request (`HEAD` is a `GET`).
pub fn rule(method: &Method, path: &str) -> Option<&'static Rule> {
    let m = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    TABLE.iter().find(|r| r.method == m && r.path == path)
}

/// Whether `role` (as stored) may take `rule`'s action.
pub fn allows(rule: &Rule, role: &str) -> bool {
    Role::parse(role).is_some_and(|r| rule.roles.contains(&r))
}

/// Whether `role` (as stored) may call `method path` (a route of [`TABLE`]); `false` for a
/// route the table lacks. The dashboard shows an action only where this holds.
pub fn may(role: &str, method: &str, path: &str) -> bool {
    TABLE
        .iter()
        .any(|r| r.method == method && r.path == path && allows(r, role))
}

/// Role names, for messages.
pub fn names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Enforce [`TABLE`] and write the audit log. Route layer of every operator route; the
/// operator it lets through is the request's [`OperatorAuth`].
pub async fn authorize(
    State(st): State<AppState>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let ip = client_ip(req.extensions(), req.headers(), &st);
    let route = matched.as_ref().map(MatchedPath::as_str).unwrap_or("");
    let audit =
        |op: Option<&Operator>, action: &str, status: u16, outcome: &str, detail| NewAudit {
            tenant: op.map(|o| o.tenant),
            actor: op.map(|o| o.name.clone()),
            role: op.map(|o| o.role.clone()),
            action: action.to_owned(),
            method: method.as_str().to_owned(),
            path: path.clone(),
            status,
            outcome: outcome.to_owned(),
            detail,
            source: ip.map(|ip| ip.to_string()),
        };
    // Every refusal: audited with its status and message, then answered — but for the 429s
    // of an address past its failed-authentication budget, which are only counted.
    let deny = |op: Option<&Operator>, action: &str, e: ApiError| {
        let throttled = matches!(e, ApiError::TooManyRequests { .. });
        let line = audit(
            op,
            action,
            e.status().as_u16(),
            "denied",
            Some(e.to_string()),
        );
        let st = st.clone();
        async move {
            if !throttled {
                record(&st, line).await;
            }
            e.into_response()
        }
    };
    let Some(rule) = rule(&method, route) else {
        // Fail closed: a route nobody wrote a rule for is refused, and the refusal is loud.
        tracing::error!(%method, route, "an operator route has no authorization rule");
        let e = ApiError::Forbidden(format!("{method} {route} has no authorization rule"));
        return deny(None, "unknown", e).await;
    };
    // A token, or a dashboard session's cookie.
    let from_cookie = bearer(req.headers()).is_none();
    let Some(token) = bearer(req.headers())
        .or_else(|| session::cookie(req.headers()))
        .filter(|t| !t.is_empty())
    else {
        let e = failed(
            &st,
            ip,
            "missing operator token (Authorization: Bearer …) or session",
        );
        return deny(None, rule.action, e).await;
    };
    let op = match st
        .store
        .operator_by_token(&secret::hash(token), st.clock.now_ms())
        .await
    {
        Ok(Some(op)) => op,
        Ok(None) => {
            let e = failed(
                &st,
                ip,
                "unknown, revoked or expired operator token or session",
            );
            return deny(None, rule.action, e).await;
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    if from_cookie && !session::same_origin(&method, req.headers()) {
        st.metrics.rejected("cross_site");
        let e = ApiError::Forbidden(
            "a change with a session cookie must come from the center's own pages".into(),
        );
        return deny(Some(&op), rule.action, e).await;
    }
    if !allows(rule, &op.role) {
        st.metrics.rejected("forbidden");
        let e = ApiError::Forbidden(format!(
            "the role {} may not {} (allowed: {})",
            op.role,
            rule.action,
            names(rule.roles)
        ));
        return deny(Some(&op), rule.action, e).await;
    }
    // A provider's operator acting within one of its customers: the customer's tenant, the
    // same role. Any other name is "not found" (another provider's customer is invisible).
    let mut op = op;
    if let Some(scope) = req.headers().get(TENANT_HEADER) {
        let name = scope.to_str().unwrap_or("").trim().to_owned();
        match st.store.customer(op.tenant, &name).await {
            Ok(Some(customer)) => {
                op = Operator {
                    tenant: customer,
                    name: format!("{} (provider)", op.name),
                    role: op.role,
                };
            }
            Ok(None) => {
                let e = ApiError::NotFound(format!("customer {name:?}"));
                return deny(Some(&op), rule.action, e).await;
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    req.extensions_mut().insert(OperatorAuth(op.clone()));
    let resp = next.run(req).await;
    if rule.method != "GET" {
        let status = resp.status();
        let outcome = if status.is_success() { "ok" } else { "failed" };
        record(
            &st,
            audit(Some(&op), rule.action, status.as_u16(), outcome, None),
        )
        .await;
    }
    resp
}

/// Append to the audit log; a failure to is logged loudly (the action already happened).
async fn record(st: &AppState, a: NewAudit) {
    if let Err(e) = st.store.append_audit(&a, st.clock.now_ms()).await {
        tracing::error!(error = %e, action = %a.action, "writing the audit log failed");
    }
}
