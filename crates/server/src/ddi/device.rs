//! Who a DDI request is: its token (a target's or the tenant's gateway's), the device it acts
//! as, where its links point, and that device's jobs.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use fleetcare_core::secret;
use fleetcare_core::structure::DeviceId;
use fleetcare_store::{DeviceKey, Enrollment, JobRecord, NewAudit};
use fleetcare_wire::compat::SoftwareStep;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{self, Client};

/// Model of a device first seen through a gateway token, until its attributes name one.
pub const UNKNOWN_MODEL: &str = "unknown";

/// The device a DDI request acts as (after its token; see [`authenticate`]) and the base of
/// the links its answers carry.
pub struct Ddi {
    pub key: DeviceKey,
    pub base: String,
}

impl FromRequestParts<AppState> for Ddi {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let client = Client::from_request_parts(parts, st).await?;
        let params = RawPathParams::from_request_parts(parts, st)
            .await
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let (mut tenant, mut id) = (String::new(), String::new());
        for (k, v) in &params {
            match k {
                "tenant" => tenant = v.to_owned(),
                "id" => id = v.to_owned(),
                _ => {}
            }
        }
        let key = authenticate(
            st,
            &client,
            &parts.headers,
            (&parts.method, &parts.uri),
            &tenant,
            &id,
        )
        .await?;
        let base = base_url(st, &client, &parts.headers, &tenant, &id);
        Ok(Ddi { key, base })
    }
}

/// A DDI request's device, after its token.
async fn authenticate(
    st: &AppState,
    client: &Client,
    headers: &HeaderMap,
    (method, uri): (&Method, &Uri),
    tenant: &str,
    controller: &str,
) -> Result<DeviceKey, ApiError> {
    let refused = |status: u16, why: &str| {
        let line = NewAudit {
            tenant: None,
            actor: Some(format!(
                "ddi:{}",
                controller.chars().take(64).collect::<String>()
            )),
            role: None,
            action: "ddi.request".into(),
            method: method.to_string(),
            path: uri.path().chars().take(500).collect(),
            status,
            outcome: "denied".into(),
            detail: Some(why.to_owned()),
            source: client.ip.map(|ip| ip.to_string()),
        };
        let store = st.store.clone();
        let now = st.clock.now_ms();
        async move {
            if let Err(e) = store.append_audit(&line, now).await {
                tracing::warn!(error = %e, "the audit line of a refused DDI request was not written");
            }
        }
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(scheme, token)| (scheme.to_ascii_lowercase(), token.trim().to_owned()));
    let Some((scheme, token)) = auth.filter(|(s, t)| {
        (s == "targettoken" || s == "gatewaytoken") && !t.is_empty() && t.len() <= 200
    }) else {
        let why = "missing DDI token (Authorization: TargetToken … or GatewayToken …)";
        let e = extract::failed(st, client.ip, why);
        if e.status() == StatusCode::UNAUTHORIZED {
            refused(401, why).await;
        }
        return Err(e);
    };
    let device_id = match DeviceId::parse(controller) {
        Ok(id) => id,
        Err(e) => {
            let why = format!("controllerId: {e}");
            refused(400, &why).await;
            return Err(ApiError::BadRequest(why));
        }
    };
    let tenant_id = tenant_by_name(st, tenant).await?;
    let key = if scheme == "targettoken" {
        let Some(key) = extract::device_of_credential(st, &token).await? else {
            let why = "unknown or revoked target token";
            let e = extract::failed(st, client.ip, why);
            if e.status() == StatusCode::UNAUTHORIZED {
                refused(401, why).await;
            }
            return Err(e);
        };
        if Some(key.tenant) != tenant_id || key.device_id != device_id {
            let why = "a target token acts only as its own controllerId, in its own tenant";
            st.metrics.rejected("other_device");
            refused(403, why).await;
            return Err(ApiError::Forbidden(why.into()));
        }
        if st.store.ddi_device(&key).await?.is_none() {
            let why = "this device joined with Fleetcare's agent; its credential is not a \
                       target token (fleetcare ddi add-target makes one)";
            refused(403, why).await;
            return Err(ApiError::Forbidden(why.into()));
        }
        key
    } else {
        let holder = st.store.gateway_tenant(&secret::hash(&token)).await?;
        let Some(tenant_id) = holder.filter(|t| Some(*t) == tenant_id) else {
            let why = "unknown or revoked gateway token for this tenant";
            let e = extract::failed(st, client.ip, why);
            if e.status() == StatusCode::UNAUTHORIZED {
                refused(401, why).await;
            }
            return Err(e);
        };
        let key = DeviceKey {
            tenant: tenant_id,
            device_id,
        };
        if st.store.ddi_device(&key).await?.is_none() {
            join_through_gateway(st, &key).await.inspect_err(|e| {
                if e.status() == StatusCode::FORBIDDEN {
                    tracing::warn!(device = %key.device_id, "a gateway named an agent's device");
                }
            })?;
        }
        key
    };
    if st.settings.device_client_cert == crate::config::ClientCert::Required
        && client.cert.is_none()
    {
        refused(
            401,
            "this center requires a device certificate (mutual TLS)",
        )
        .await;
        return Err(extract::refuse(
            st,
            "this center requires a device certificate (mutual TLS)",
        ));
    }
    extract::take_budget(st, &key)?;
    Ok(key)
}

/// A controllerId first seen through a gateway token becomes a device (an agent's device
/// stays the agent's: 403).
async fn join_through_gateway(st: &AppState, key: &DeviceKey) -> Result<(), ApiError> {
    if st.store.device(key).await?.is_some() {
        return Err(ApiError::Forbidden(format!(
            "device {} joined with Fleetcare's agent; a gateway cannot act as it",
            key.device_id
        )));
    }
    // A credential nobody holds: the device acts only through the gateway until an admin
    // makes it a target token.
    let unheld = secret::hash(&secret::generate(secret::SecretKind::Device));
    match st
        .store
        .enroll_device(key, UNKNOWN_MODEL, &unheld, None, st.clock.now_ms())
        .await?
    {
        Enrollment::Enrolled { .. } => {}
        // Another request made it a moment ago.
        Enrollment::Refused => {}
    }
    st.store.ddi_register(key, st.clock.now_ms()).await?;
    st.metrics.enrollments.inc();
    tracing::info!(device = %key.device_id, tenant = key.tenant, "a DDI target joined through its tenant's gateway token");
    Ok(())
}

async fn tenant_by_name(st: &AppState, name: &str) -> Result<Option<i64>, ApiError> {
    if name.is_empty() || name.len() > fleetcare_core::limits::MAX_NAME_LEN {
        return Ok(None);
    }
    let cached = st.tenant_ids.lock().expect("tenant ids").get(name).copied();
    if cached.is_some() {
        return Ok(cached);
    }
    let t = st.store.tenant_id(name).await?;
    if let Some(t) = t {
        let mut ids = st.tenant_ids.lock().expect("tenant ids");
        if ids.len() >= 100_000 {
            ids.clear();
        }
        ids.insert(name.to_owned(), t);
    }
    Ok(t)
}

/// Where links point: `public_url`, else the address the client used.
fn base_url(st: &AppState, client: &Client, headers: &HeaderMap, tenant: &str, id: &str) -> String {
    let origin = match &st.settings.public_url {
        Some(u) => u.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    h.len() <= 255
                        && h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                })
                .unwrap_or("localhost");
            format!("{}://{host}", if client.https { "https" } else { "http" })
        }
    };
    format!("{origin}/{tenant}/controller/v1/{id}")
}

pub(crate) fn steps_of(j: &JobRecord) -> Result<Vec<SoftwareStep>, ApiError> {
    serde_json::from_str(&j.steps_json)
        .map_err(|e| ApiError::Internal(format!("stored job steps: {e}")))
}

/// The job of this device named by an action id.
pub(crate) async fn job_of(st: &AppState, key: &DeviceKey, id: u64) -> Result<JobRecord, ApiError> {
    st.store
        .job(key.tenant, id)
        .await?
        .filter(|j| j.device_id == key.device_id.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("action {id} of this device")))
}
