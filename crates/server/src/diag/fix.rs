//! The fix loop: a trouble whose rule names a fix gets an update job or a setting for exactly
//! the affected device, and a finished job closes or reopens what it was meant to fix.

use crate::ctx::Ctx;
use fleetcare_compat::plan::{Action, Step};
use fleetcare_compat::version::Version;
use fleetcare_core::clock::rfc3339;
use fleetcare_diag::Fix;
use fleetcare_store::{DeviceKey, NewJob, StoreError};
use fleetcare_wire::device::Command;

impl super::Diag {
    /// A job finished: the live troubles it was made to fix are `fixed` when it succeeded (they
    /// resolve when no matching event follows within their rule's quiet period, and open again
    /// if one does), or resolved at once when their rule says `resolve_on_fix`.
    pub async fn job_finished(
        &self,
        st: &Ctx,
        key: &DeviceKey,
        job: u64,
        state: &str,
    ) -> Result<(), StoreError> {
        if state != "succeeded" {
            return Ok(());
        }
        let troubles = st.store.troubles_fixed_by(key.tenant, job).await?;
        if troubles.is_empty() {
            return Ok(());
        }
        let now = st.clock.now_ms();
        let rules = self.rules(key.tenant).map(|(_, r)| r);
        for t in troubles {
            let rule = rules
                .as_ref()
                .and_then(|r| r.rules.iter().find(|r| r.id == t.rule_id));
            let quiet = rule.map_or(
                i64::try_from(fleetcare_diag::rules::DEFAULT_RESOLVE_AFTER.as_millis())
                    .unwrap_or(i64::MAX),
                |r| r.resolve_after_ms,
            );
            if rule.is_some_and(|r| r.resolve_on_fix) {
                let by = format!("center (its fix, job {job}, succeeded)");
                if st.store.resolve_trouble(key.tenant, t.id, &by, now).await? {
                    self.forget(key.tenant, &t.device_id, &t.rule_id);
                    st.devices
                        .tell(crate::cluster::Message::TroubleClosed {
                            t: key.tenant,
                            d: t.device_id.clone(),
                            rule: t.rule_id.clone(),
                        })
                        .await;
                    tracing::info!(device = %key.device_id, trouble = t.id, job, "trouble resolved by its fix");
                }
            } else {
                let until = now.saturating_add(quiet);
                let outcome = format!(
                    "its fix (job {job}) succeeded at {}; it resolves at {} unless a matching event \
                     follows",
                    rfc3339(now),
                    rfc3339(until)
                );
                if st
                    .store
                    .mark_trouble_fixed(key.tenant, t.id, now, until, &outcome)
                    .await?
                {
                    tracing::info!(device = %key.device_id, trouble = t.id, job, "trouble fixed; watching for a recurrence");
                }
            }
        }
        st.events
            .notify(key.tenant, crate::cluster::events::Topic::Troubles);
        st.events.device(key.tenant, key.device_id.as_str());
        Ok(())
    }

    /// Act on a known fix for a device's new trouble; what was done, in words, and in `made` the
    /// job it created.
    pub(crate) async fn fix_loop(
        &self,
        st: &Ctx,
        key: &DeviceKey,
        trouble: u64,
        rule_id: &str,
        fix: &Fix,
        made: &mut Option<u64>,
    ) -> Result<String, StoreError> {
        let now = st.clock.now_ms();
        match fix {
            Fix::Setting { key: name, value } => {
                st.store
                    .set_device_setting(
                        key,
                        name,
                        value,
                        &format!("center (trouble {trouble}, rule {rule_id})"),
                        now,
                    )
                    .await?;
                let told = st
                    .devices
                    .send(key, Command::SettingsChanged)
                    .await
                    .is_some();
                Ok(format!(
                    "setting {name} = {value} set{}",
                    if told {
                        "; the device was told"
                    } else {
                        "; the device fetches it when it connects"
                    }
                ))
            }
            Fix::Release { product, version } => {
                let Some(cur) = self.compat.current(key.tenant) else {
                    return Ok(
                        "not applied: the tenant has no catalog to check the fix against".into(),
                    );
                };
                let Some(facts) = self.compat.facts(key) else {
                    return Ok("not applied: the center holds no structure of the device".into());
                };
                let catalog = &cur.catalog;
                let vocab = &self.compat.vocab;
                let (Some(psym), Some(vsym), Ok(to)) = (
                    vocab.get(product),
                    vocab.get(version),
                    Version::parse(version),
                ) else {
                    return Ok(format!(
                        "not applied: the catalog does not know {product} {version}"
                    ));
                };
                let Some(release) = catalog.find_release(psym, vsym) else {
                    return Ok(format!(
                        "not applied: the catalog does not know {product} {version}"
                    ));
                };
                let product_name = fleetcare_compat::vocab::Name::of(psym);
                let Some(sw) = facts
                    .software
                    .iter()
                    .find(|s| s.active && s.product == product_name)
                else {
                    return Ok(format!("not applied: the device runs no {product}"));
                };
                let from_text = sw
                    .version
                    .as_ref()
                    .map(|v| facts.text(vocab, v).to_string());
                if from_text.as_deref() == Some(version.as_str()) {
                    return Ok(format!("not needed: the device runs {product} {version}"));
                }
                let inactive = facts
                    .inactive_copy(sw.unit, &product_name)
                    .is_some_and(|c| {
                        c.version
                            .as_ref()
                            .is_some_and(|v| facts.text(vocab, v).as_ref() == version)
                    });
                let step = Step {
                    unit: sw.unit,
                    product: psym,
                    from: from_text.as_deref().and_then(|v| Version::parse(v).ok()),
                    to,
                    release,
                    action: if inactive {
                        Action::Switch
                    } else {
                        Action::Install
                    },
                };
                let after = catalog.apply(&facts, std::slice::from_ref(&step));
                if !catalog.software_compatible(&after) {
                    return Ok(format!(
                        "not applied: {product} {version} would make the device incompatible \
                         (its compatibility plan does not allow it)"
                    ));
                }
                let policy = st.store.policy(key.tenant).await?;
                if policy.fix == "off" {
                    return Ok(
                        "not applied: automatic fixes are off by the tenant's policy".into(),
                    );
                }
                if let Some(why) = st.store.device(key).await?.and_then(|d| d.install_blocked) {
                    return Ok(format!(
                        "not applied: the device cannot install software ({why})"
                    ));
                }
                if let Some(j) = st.store.open_jobs(key).await?.first() {
                    return Ok(format!(
                        "not applied yet: job {} is open for the device (one change at a time)",
                        j.id
                    ));
                }
                let steps = crate::compat::decide::software_steps(catalog, &facts, &[step]);
                let state = policy.fix_job_state();
                let ttl_ms = policy.job_ttl_ms();
                let id = st
                    .store
                    .create_job(
                        key,
                        &NewJob {
                            origin: "diagnosis".into(),
                            state: state.into(),
                            steps_json: serde_json::to_string(&steps).expect("steps serialize"),
                            catalog_revision: Some(cur.revision),
                            created_by: format!("center (trouble {trouble}, rule {rule_id})"),
                            expires_at_ms: now.saturating_add(ttl_ms),
                        },
                        now,
                    )
                    .await?;
                st.metrics.jobs_created.inc();
                *made = Some(id);
                if state == "queued" {
                    st.devices.send(key, Command::JobsAvailable).await;
                }
                // Its state is not written here: every page reads the job's state now.
                Ok(format!("job {id} created to install {product} {version}"))
            }
        }
    }
}
