//! Units the center took out of service: one row per slot while it lasts (table
//! `unit_service`).

use crate::exec::{Guard, Stmt, Ty, sql};
use crate::{DeviceKey, Result, Store};

/// A unit taken out of service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitService {
    pub slot: String,
    /// The unit's serial when it was taken out (a new serial in the slot is another unit).
    pub serial: String,
    /// `policy` (the compatibility policy) or `operator`.
    pub origin: String,
    pub taken_by: String,
    pub reason: String,
    /// The slot of the unit of the same kind that takes over, if the device has one.
    pub switched_to: Option<String>,
    pub taken_at_ms: i64,
}

/// `origin` of a unit the compatibility policy took out of service.
pub const BY_POLICY: &str = "policy";
/// `origin` of a unit an operator took out of service.
pub const BY_OPERATOR: &str = "operator";

const COLUMNS: &[Ty] = &[
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
];

impl Store {
    /// Record a unit taken out of service; whether anything changed. The policy never
    /// overrides what is recorded for the same unit (an operator's reason stays); an operator
    /// does.
    pub async fn take_unit_out(&self, key: &DeviceKey, u: &UnitService) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "INSERT INTO unit_service (tenant_id, device_id, slot, serial, origin, \
                     taken_by, reason, switched_to, taken_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                     $8, $9) ON CONFLICT (tenant_id, device_id, slot) DO UPDATE SET \
                     serial = excluded.serial, origin = excluded.origin, \
                     taken_by = excluded.taken_by, reason = excluded.reason, \
                     switched_to = excluded.switched_to, taken_at = excluded.taken_at \
                     WHERE unit_service.serial <> excluded.serial OR (excluded.origin = 'operator' \
                     AND (unit_service.origin <> 'operator' OR unit_service.reason <> excluded.reason))",
                    vec![
                        key.tenant.into(),
                        key.device_id.as_str().into(),
                        u.slot.as_str().into(),
                        u.serial.as_str().into(),
                        u.origin.as_str().into(),
                        u.taken_by.as_str().into(),
                        u.reason.as_str().into(),
                        u.switched_to.as_deref().into(),
                        u.taken_at_ms.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0) > 0)
    }

    /// The unit in `slot` is back in service: its record, if it had one.
    pub async fn put_unit_back(&self, key: &DeviceKey, slot: &str) -> Result<Option<UnitService>> {
        let Some(u) = self
            .units_out(key)
            .await?
            .into_iter()
            .find(|u| u.slot == slot)
        else {
            return Ok(None);
        };
        let n = self
            .run(
                vec![Stmt::new(
                    "DELETE FROM unit_service WHERE tenant_id = $1 AND device_id = $2 \
                     AND slot = $3 AND serial = $4",
                    vec![
                        key.tenant.into(),
                        key.device_id.as_str().into(),
                        slot.into(),
                        u.serial.as_str().into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        Ok((n.first().copied().unwrap_or(0) > 0).then_some(u))
    }

    /// The device's units out of service, by slot.
    pub async fn units_out(&self, key: &DeviceKey) -> Result<Vec<UnitService>> {
        let rows = self
            .select(
                sql(
                    "SELECT slot, serial, origin, taken_by, reason, switched_to, taken_at \
                     FROM unit_service WHERE tenant_id = $1 AND device_id = $2 ORDER BY slot",
                ),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                COLUMNS,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UnitService {
                    slot: r[0].text()?,
                    serial: r[1].text()?,
                    origin: r[2].text()?,
                    taken_by: r[3].text()?,
                    reason: r[4].text()?,
                    switched_to: r[5].opt_text()?,
                    taken_at_ms: r[6].int()?,
                })
            })
            .collect()
    }
}
