//! Units out of service (claim 16): taken out by the compatibility policy (an optional unit
//! that does not work in its device) or by an operator, put back by an operator or when a
//! compatible unit is in the slot again. The store's `unit_service` rows are the record; the
//! device is told at once wherever it is connected (`Devices::send`), and learns the whole
//! list again whenever it connects (`GET /device/v1/settings`), so an offline device, one on
//! another instance or one on MQTT ends up exactly as the record says.

use axum::Json;
use axum::extract::{Path, State};
use fleetcare_compat::{DeviceFacts, FindingKind};
use fleetcare_core::Structure;
use fleetcare_core::clock::rfc3339;
use fleetcare_store::units::{BY_OPERATOR, BY_POLICY, UnitService};
use fleetcare_store::{DeviceKey, NewNotification, StoreError};
use fleetcare_wire::ErrorBody;
use fleetcare_wire::compat as w;
use fleetcare_wire::device::Command;

use crate::AppState;
use crate::compat::decide::{Current, takes_over};
use crate::compat::notice::NotificationBody;
use crate::compat::notice::push_notification;
use crate::ctx::Ctx;
use crate::devices::hub::Via;
use crate::error::ApiError;
use crate::extract::device_key;
use crate::extract::{JsonBody, OperatorAuth};

/// The kind of the notice a unit taken out of service leaves on its device.
pub const NOTICE_KIND: &str = "unit_out_of_service";
/// Longest reason an operator may give.
pub const MAX_REASON: usize = 500;

fn notice_key(slot: &str, serial: &str) -> String {
    format!("out-of-service:{slot}:{serial}")
}

pub fn view(u: UnitService) -> w::UnitService {
    w::UnitService {
        slot: u.slot,
        serial: u.serial,
        reason: u.reason,
        origin: u.origin,
        taken_by: u.taken_by,
        switched_to: u.switched_to,
        taken_at: rfc3339(u.taken_at_ms),
    }
}

/// Take a unit out of service: record it, tell the device wherever it is connected, and
/// leave a notice (with `summary` and the recommended configurations, if any). How the
/// connected device was told now, if it was; `Ok(None)` also when nothing changed.
pub async fn take_out(
    st: &Ctx,
    key: &DeviceKey,
    u: UnitService,
    summary: &str,
    recommendations: Vec<w::Recommendation>,
    catalog_revision: Option<u64>,
) -> Result<Option<Via>, StoreError> {
    if !st.store.take_unit_out(key, &u).await? {
        return Ok(None);
    }
    let told = tell(st, key, &u, false).await;
    let takes_over = u.switched_to.as_ref().map_or(String::new(), |to| {
        format!(" The {to} takes over its work.")
    });
    let n = NewNotification {
        key: notice_key(&u.slot, &u.serial),
        kind: NOTICE_KIND.into(),
        title: format!("{}: the {} was taken out of service", key.device_id, u.slot),
        body_json: serde_json::to_string(&NotificationBody {
            summary: format!("{}.{takes_over} {summary}", u.reason)
                .trim_end()
                .to_owned(),
            recommendations,
            switched_to: u.switched_to.clone(),
        })
        .expect("bodies serialize"),
        catalog_revision,
        replaces: false,
    };
    let now = st.clock.now_ms();
    if let Some(id) = st.store.notify(key, &n, now).await? {
        st.metrics.notifications.inc();
        push_notification(st, key, id, &n, now).await?;
    }
    tracing::info!(device = %key.device_id, slot = %u.slot, origin = %u.origin,
        switched_to = ?u.switched_to, told = ?told.map(|v| v.as_str()), "unit taken out of service");
    st.events.device(key.tenant, key.device_id.as_str());
    Ok(told)
}

/// Put the unit in `slot` back in service: forget its record, close its notice, tell the
/// device. The record and how the device was told, if the unit was out of service.
pub async fn put_back(
    st: &Ctx,
    key: &DeviceKey,
    slot: &str,
    why: &str,
) -> Result<Option<(UnitService, Option<Via>)>, StoreError> {
    let Some(u) = st.store.put_unit_back(key, slot).await? else {
        return Ok(None);
    };
    st.store
        .close_notification(key, &notice_key(&u.slot, &u.serial), st.clock.now_ms())
        .await?;
    let told = tell(
        st,
        key,
        &UnitService {
            reason: why.to_owned(),
            ..u.clone()
        },
        true,
    )
    .await;
    tracing::info!(device = %key.device_id, %slot, why, told = ?told.map(|v| v.as_str()), "unit back in service");
    st.events.device(key.tenant, key.device_id.as_str());
    Ok(Some((u, told)))
}

async fn tell(st: &Ctx, key: &DeviceKey, u: &UnitService, in_service: bool) -> Option<Via> {
    st.devices
        .send(
            key,
            Command::SetUnitService {
                slot: u.slot.clone(),
                serial: u.serial.clone(),
                in_service,
                reason: u.reason.clone(),
                switched_to: u.switched_to.clone().filter(|_| !in_service),
            },
        )
        .await
}

/// After a report or a catalog change: a unit out of service whose slot now holds another
/// unit (replaced, or removed) is forgotten, and one the compatibility policy took out that
/// would work in the device now goes back in service. An operator's stays until an operator
/// puts it back.
pub async fn reconcile(
    st: &Ctx,
    compat: &crate::compat::Compat,
    key: &DeviceKey,
    cur: &Current,
    structure: &Structure,
) -> Result<(), StoreError> {
    let out = st.store.units_out(key).await?;
    if out.is_empty() {
        return Ok(());
    }
    let facts = DeviceFacts::new(&compat.vocab, structure.model(), structure.units());
    for u in out {
        let why = match structure.unit(&u.slot) {
            None => "the unit was removed".to_owned(),
            Some(now) if now.serial != u.serial => {
                format!("the {} was replaced (now #{})", u.slot, now.serial)
            }
            Some(_) if u.origin == BY_POLICY && works_here(cur, &facts, &u.slot) => format!(
                "the {} works in this configuration now; it is back in service",
                u.slot
            ),
            Some(_) => continue,
        };
        put_back(st, key, &u.slot, &why).await?;
    }
    Ok(())
}

/// Would the unit in `slot` work in the device if it were in service: no finding that only
/// hardware can fix, and none of a model or revision the catalog does not know, involves it.
fn works_here(cur: &Current, facts: &DeviceFacts, slot: &str) -> bool {
    let vocab = &cur.catalog.vocab;
    let Some(i) = facts
        .units
        .iter()
        .position(|u| &*facts.text(vocab, &u.slot) == slot)
    else {
        return false;
    };
    let mut back = facts.clone();
    back.units[i].in_service = true;
    !cur.catalog.judge(&back).iter().any(|f| {
        (f.kind.hardware() || f.kind == FindingKind::UnknownUnitModel)
            && f.units.contains(&(i as u16))
    })
}

/// The device's units out of service.
#[utoipa::path(get, path = "/api/v1/devices/{id}/units", params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = [w::UnitService]), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<Json<Vec<w::UnitService>>, ApiError> {
    let key = device_key(&op, &id)?;
    crate::extract::known_device(&st, &key).await?;
    Ok(Json(
        st.store
            .units_out(&key)
            .await?
            .into_iter()
            .map(view)
            .collect(),
    ))
}

async fn changed(
    st: &Ctx,
    key: &DeviceKey,
    slot: &str,
    serial: String,
    in_service: bool,
    switched_to: Option<String>,
    told: Option<Via>,
) -> Result<Json<w::UnitServiceChanged>, ApiError> {
    Ok(Json(w::UnitServiceChanged {
        device_id: key.device_id.to_string(),
        slot: slot.to_owned(),
        serial,
        in_service,
        switched_to,
        told_via: told.map(|v| v.as_str().to_owned()),
        out_of_service: st
            .store
            .units_out(key)
            .await?
            .into_iter()
            .map(view)
            .collect(),
    }))
}

/// Take a unit out of service by hand: the device stops using it (another unit of the same
/// kind takes over its work, if it has one) until an operator puts it back or the unit is
/// replaced. The device is told now if it is connected, else when it connects.
#[utoipa::path(post, path = "/api/v1/devices/{id}/units/{slot}/disable",
    params(("id" = String, Path, description = "device id"), ("slot" = String, Path, description = "the unit's slot")),
    request_body = w::DisableUnit,
    responses((status = 200, body = w::UnitServiceChanged), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn disable(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path((id, slot)): Path<(String, String)>,
    JsonBody(req): JsonBody<w::DisableUnit>,
) -> Result<Json<w::UnitServiceChanged>, ApiError> {
    let key = device_key(&op, &id)?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(ApiError::BadRequest(format!(
            "reason: 1 to {MAX_REASON} characters"
        )));
    }
    let structure = crate::extract::known_device(&st, &key)
        .await?
        .structure
        .ok_or_else(|| ApiError::Conflict {
            code: "no_structure",
            message: format!(
                "device {} has not reported its structure yet",
                key.device_id
            ),
        })?;
    let unit = structure
        .unit(&slot)
        .ok_or_else(|| ApiError::NotFound(format!("a unit in slot {slot:?} of device {id}")))?;
    let switched_to = takes_over(&structure, &slot);
    let u = UnitService {
        slot: slot.clone(),
        serial: unit.serial.clone(),
        origin: BY_OPERATOR.into(),
        taken_by: op.0.name.clone(),
        reason: reason.to_owned(),
        switched_to: switched_to.clone(),
        taken_at_ms: st.clock.now_ms(),
    };
    let told = match take_out(&st, &key, u.clone(), "", Vec::new(), None).await? {
        Some(v) => Some(v),
        // Recorded before: tell the device again all the same (it may have missed it).
        None => tell(&st, &key, &u, false).await,
    };
    changed(&st, &key, &slot, u.serial, false, switched_to, told).await
}

/// Put a unit back in service (whoever took it out): the device uses it again.
#[utoipa::path(post, path = "/api/v1/devices/{id}/units/{slot}/enable",
    params(("id" = String, Path, description = "device id"), ("slot" = String, Path, description = "the unit's slot")),
    responses((status = 200, body = w::UnitServiceChanged), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn enable(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path((id, slot)): Path<(String, String)>,
) -> Result<Json<w::UnitServiceChanged>, ApiError> {
    let key = device_key(&op, &id)?;
    crate::extract::known_device(&st, &key).await?;
    let why = format!("put back in service by {}", op.0.name);
    let Some((u, told)) = put_back(&st, &key, &slot, &why).await? else {
        return Err(ApiError::Conflict {
            code: "in_service",
            message: format!("the unit in slot {slot:?} of device {id} is not out of service"),
        });
    };
    changed(&st, &key, &slot, u.serial, true, None, told).await
}
