//! Prometheus metrics, served at `/metrics`. Names carry their unit, counters end in
//! `_total`; no label ever holds a device id (unbounded cardinality).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabel {
    pub trigger: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reports: Family<TriggerLabel, Counter>,
    pub report_duplicates: Counter,
    pub structure_changes: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub enrollments: Counter,
    pub commands_sent: Counter,
    /// Long polls answered (B4: an unchanged poll writes nothing to the store).
    pub polls: Counter,
    pub ingest_seconds: Histogram,
    pub push_connections: Gauge,
    /// 1 while this instance holds the background engines' lease.
    pub leader: Gauge,
    /// 1 while this instance's MQTT session to the broker is up.
    pub mqtt_connected: Gauge,
    /// Answers published to devices over MQTT.
    pub mqtt_messages: Counter,
    pub store_group_commits: Counter,
    pub compat_rejudge_seconds: Histogram,
    pub compat_plan_seconds: Histogram,
    pub jobs_created: Counter,
    /// Error-log events stored, and ones received again (retries) and not stored twice.
    pub error_events: Counter,
    pub error_event_duplicates: Counter,
    /// Operating history pruned: device-days rolled up, raw points deleted, daily rollups
    /// deleted past their keep limit.
    pub operating_days_rolled: Counter,
    pub operating_points_pruned: Counter,
    pub operating_days_dropped: Counter,
    /// Rows deleted by retention, by kind of data.
    pub pruned_rows: Family<KindLabel, Counter>,
    /// Artifact bytes sent to devices, by how: `sendfile` (from the page cache, plain TCP),
    /// `memory` (the hot cache), `read` (read from the file and copied: over TLS).
    pub artifact_bytes: Family<KindLabel, Counter>,
    /// 1 while writes are refused for want of disk space.
    pub disk_full: Gauge,
    pub disk_free_bytes: Gauge,
    pub writes_refused_disk_full: Counter,
    /// Devices asked for a report by the meter-read schedule at a month's edge.
    pub meter_read_requests: Counter,
    pub notifications: Counter,
    /// Notification events taken from the outbox; deliveries that reached their receiver,
    /// attempts that failed (to be retried), deliveries given up.
    pub notify_events: Counter,
    pub notify_delivered: Counter,
    pub notify_failed_attempts: Counter,
    pub notify_gave_up: Counter,
    pub catalog_loads: Counter,
    /// Troubles opened, and the time from receiving the triggering batch to the trouble stored.
    pub troubles_opened: Counter,
    pub trouble_open_seconds: Histogram,
    /// The process itself (read at each scrape): CPU seconds, resident memory, descriptors.
    process_cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    process_resident_bytes: Gauge,
    process_open_fds: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let reports = Family::<TriggerLabel, Counter>::default();
        registry.register(
            "fleetcare_reports_stored",
            "Structure reports stored, by trigger",
            reports.clone(),
        );
        let report_duplicates = Counter::default();
        registry.register(
            "fleetcare_report_duplicates",
            "Structure reports received again (retries), acknowledged without storing",
            report_duplicates.clone(),
        );
        let structure_changes = Counter::default();
        registry.register(
            "fleetcare_structure_changes",
            "Structure history events recorded",
            structure_changes.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "fleetcare_requests_rejected",
            "Requests refused, by reason",
            rejected.clone(),
        );
        let enrollments = Counter::default();
        registry.register(
            "fleetcare_enrollments",
            "Device enrollments (and re-enrollments)",
            enrollments.clone(),
        );
        let commands_sent = Counter::default();
        registry.register(
            "fleetcare_commands_sent",
            "Commands queued for connected devices",
            commands_sent.clone(),
        );
        let polls = Counter::default();
        registry.register(
            "fleetcare_polls",
            "Long polls answered (with or without commands)",
            polls.clone(),
        );
        let ingest_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 14));
        registry.register_with_unit(
            "fleetcare_report_ingest",
            "Time from a report's arrival to its durable acknowledgement",
            Unit::Seconds,
            ingest_seconds.clone(),
        );
        let push_connections = Gauge::default();
        registry.register(
            "fleetcare_push_connected_devices",
            "Devices with an open push channel to this instance",
            push_connections.clone(),
        );
        let mqtt_connected = Gauge::default();
        registry.register(
            "fleetcare_mqtt_connected",
            "1 while this instance's session to the MQTT broker is up",
            mqtt_connected.clone(),
        );
        let mqtt_messages = Counter::default();
        registry.register(
            "fleetcare_mqtt_answers",
            "Answers published to devices over MQTT",
            mqtt_messages.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "fleetcare_engines_leader",
            "1 while this instance runs the background engines (holds their lease)",
            leader.clone(),
        );
        let store_group_commits = Counter::default();
        registry.register(
            "fleetcare_store_group_commits",
            "Group commits of the embedded store (one fsync each)",
            store_group_commits.clone(),
        );
        let compat_rejudge_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "fleetcare_compat_rejudge",
            "Time to re-judge a tenant's fleet after a catalog change, writes included",
            Unit::Seconds,
            compat_rejudge_seconds.clone(),
        );
        let compat_plan_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 14));
        registry.register_with_unit(
            "fleetcare_compat_plan",
            "Time to search a device's software plan",
            Unit::Seconds,
            compat_plan_seconds.clone(),
        );
        let error_events = Counter::default();
        registry.register(
            "fleetcare_error_events",
            "Error-log events stored",
            error_events.clone(),
        );
        let error_event_duplicates = Counter::default();
        registry.register(
            "fleetcare_error_event_duplicates",
            "Error-log events received again (retries) and not stored twice",
            error_event_duplicates.clone(),
        );
        let operating_days_rolled = Counter::default();
        registry.register(
            "fleetcare_operating_days_rolled",
            "Device-days of operating history rolled up to one row (raw points deleted)",
            operating_days_rolled.clone(),
        );
        let operating_points_pruned = Counter::default();
        registry.register(
            "fleetcare_operating_points_pruned",
            "Raw points of operating history cleared after their day was rolled up",
            operating_points_pruned.clone(),
        );
        let operating_days_dropped = Counter::default();
        registry.register(
            "fleetcare_operating_days_dropped",
            "Daily rollups of operating history deleted past operating_keep_days",
            operating_days_dropped.clone(),
        );
        let pruned_rows = Family::<KindLabel, Counter>::default();
        registry.register(
            "fleetcare_pruned_rows",
            "Rows deleted past their tenant's retention, by kind of data",
            pruned_rows.clone(),
        );
        let artifact_bytes = Family::<KindLabel, Counter>::default();
        registry.register(
            "fleetcare_artifact_bytes",
            "Artifact bytes sent to devices, by how: sendfile, memory or read",
            artifact_bytes.clone(),
        );
        let disk_full = Gauge::default();
        registry.register(
            "fleetcare_disk_full",
            "1 while writes are refused because the data directory's disk is (nearly) full",
            disk_full.clone(),
        );
        let disk_free_bytes = Gauge::default();
        registry.register(
            "fleetcare_disk_free_bytes",
            "Bytes free on the data directory's file system at the last look",
            disk_free_bytes.clone(),
        );
        let writes_refused_disk_full = Counter::default();
        registry.register(
            "fleetcare_writes_refused_disk_full",
            "Write requests refused (503) because the disk was full",
            writes_refused_disk_full.clone(),
        );
        let meter_read_requests = Counter::default();
        registry.register(
            "fleetcare_meter_read_requests",
            "Devices asked for a report by the meter-read schedule at a month's edge",
            meter_read_requests.clone(),
        );
        let notify_events = Counter::default();
        registry.register(
            "fleetcare_notify_events",
            "Notification events taken from the outbox and fanned out to subscriptions",
            notify_events.clone(),
        );
        let notify_delivered = Counter::default();
        registry.register(
            "fleetcare_notify_delivered",
            "Notifications (webhook calls, mailed events) that reached their receiver",
            notify_delivered.clone(),
        );
        let notify_failed_attempts = Counter::default();
        registry.register(
            "fleetcare_notify_failed_attempts",
            "Notification attempts that failed and will be retried",
            notify_failed_attempts.clone(),
        );
        let notify_gave_up = Counter::default();
        registry.register(
            "fleetcare_notify_gave_up",
            "Notifications given up after retrying for notify_retry_hours",
            notify_gave_up.clone(),
        );
        let troubles_opened = Counter::default();
        registry.register(
            "fleetcare_troubles_opened",
            "Troubles opened by the diagnosis rules",
            troubles_opened.clone(),
        );
        let trouble_open_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        registry.register_with_unit(
            "fleetcare_trouble_open",
            "Time from receiving the error batch that fired a rule to the trouble stored",
            Unit::Seconds,
            trouble_open_seconds.clone(),
        );
        let jobs_created = Counter::default();
        registry.register(
            "fleetcare_jobs_created",
            "Jobs created",
            jobs_created.clone(),
        );
        let notifications = Counter::default();
        registry.register(
            "fleetcare_notifications",
            "Notifications opened for devices",
            notifications.clone(),
        );
        let catalog_loads = Counter::default();
        registry.register(
            "fleetcare_catalog_loads",
            "Catalog revisions loaded",
            catalog_loads.clone(),
        );
        let process_cpu_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "process_cpu",
            "User and system CPU time of the center process",
            Unit::Seconds,
            process_cpu_seconds.clone(),
        );
        let process_resident_bytes = Gauge::default();
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the center process",
            Unit::Bytes,
            process_resident_bytes.clone(),
        );
        let process_open_fds = Gauge::default();
        registry.register(
            "process_open_fds",
            "Open file descriptors of the center process (sockets included)",
            process_open_fds.clone(),
        );
        Metrics {
            registry,
            compat_rejudge_seconds,
            compat_plan_seconds,
            jobs_created,
            error_events,
            error_event_duplicates,
            operating_days_rolled,
            operating_points_pruned,
            operating_days_dropped,
            pruned_rows,
            artifact_bytes,
            disk_full,
            disk_free_bytes,
            writes_refused_disk_full,
            meter_read_requests,
            notifications,
            notify_events,
            notify_delivered,
            notify_failed_attempts,
            notify_gave_up,
            catalog_loads,
            troubles_opened,
            trouble_open_seconds,
            process_cpu_seconds,
            process_resident_bytes,
            process_open_fds,
            reports,
            report_duplicates,
            structure_changes,
            rejected,
            enrollments,
            commands_sent,
            polls,
            ingest_seconds,
            push_connections,
            leader,
            mqtt_connected,
            mqtt_messages,
            store_group_commits,
        }
    }

    /// Bring the group-commit counter up to the store's own count.
    pub fn observe_group_commits(&self, total: u64) {
        let seen = self.store_group_commits.get();
        if total > seen {
            self.store_group_commits.inc_by(total - seen);
        }
    }

    /// Read the process's CPU time, resident memory and open descriptors (Linux `/proc`).
    pub fn observe_process(&self) {
        if let Some(cpu) = process_cpu_seconds() {
            let seen = self.process_cpu_seconds.get();
            if cpu > seen {
                self.process_cpu_seconds.inc_by(cpu - seen);
            }
        }
        if let Some(rss) = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        {
            self.process_resident_bytes
                .set(rss.saturating_mul(i64::try_from(rustix::param::page_size()).unwrap_or(4096)));
        }
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            self.process_open_fds
                .set(i64::try_from(d.count()).unwrap_or(i64::MAX));
        }
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// User and system CPU seconds of this process so far (`/proc/self/stat`, fields 14 and 15).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
