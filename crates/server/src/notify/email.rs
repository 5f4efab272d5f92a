//! E-mail: the relay from the config, and mails a service engineer understands in one read
//! (device, site, what is wrong, what to do, part numbers, a link to the device page), as
//! plain text and HTML. Several events waiting for one subscription make one digest.

use std::time::Duration;

use fleetcare_wire::notify::Event;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::SmtpSettings;
use crate::ui::chart::esc;

/// Most addresses one subscription mails.
pub const MAX_ADDRESSES: usize = 20;
/// Most events one digest lists (the rest follow in the next).
pub const MAX_DIGEST: usize = 50;

/// An address such as `ops@example.com` or `Service <ops@example.com>`.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, String> {
    if s.len() > 320 {
        return Err("an e-mail address is at most 320 bytes".into());
    }
    s.trim()
        .parse::<Mailbox>()
        .map_err(|e| format!("{s:?} is not an e-mail address: {e}"))
}

/// The relay, ready to send.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    pub fn new(
        s: &SmtpSettings,
        ca_file: &std::path::Path,
        timeout: Duration,
    ) -> Result<Mailer, String> {
        let from = parse_mailbox(&s.from).map_err(|e| format!("`smtp_from`: {e}"))?;
        let params = || -> Result<TlsParameters, String> {
            let mut b =
                TlsParameters::builder(s.host.clone()).certificate_store(CertificateStore::None);
            for der in fleetcare_tls::ca_certificates(ca_file).map_err(|e| e.to_string())? {
                b = b.add_root_certificate(
                    Certificate::from_der(der.to_vec()).map_err(|e| e.to_string())?,
                );
            }
            b.build_rustls()
                .map_err(|e| format!("TLS for {}: {e}", s.host))
        };
        let tls = match s.tls.as_str() {
            "none" => Tls::None,
            "tls" => Tls::Wrapper(params()?),
            _ => Tls::Required(params()?),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
            .port(s.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some(user), Some(file)) = (&s.user, &s.password_file) {
            let password = std::fs::read_to_string(file)
                .map_err(|e| format!("`smtp_password_file` {}: {e}", file.display()))?;
            b = b.credentials(Credentials::new(
                user.clone(),
                password.trim_end().to_owned(),
            ));
        }
        Ok(Mailer {
            transport: b.build(),
            from,
            timeout,
        })
    }

    /// Send one mail (one event, or a digest of several) to every address.
    pub async fn send(&self, to: &[Mailbox], events: &[Event]) -> Result<(), String> {
        let (subject, text, html) = compose(events);
        let mut m = Message::builder().from(self.from.clone()).subject(subject);
        for t in to {
            m = m.to(t.clone());
        }
        let mail = m
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| format!("making the mail: {e}"))?;
        match tokio::time::timeout(self.timeout * 2, self.transport.send(mail)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the relay refused or failed: {e}")),
            Err(_) => Err(format!(
                "the relay took longer than {} s",
                (self.timeout * 2).as_secs()
            )),
        }
    }
}

/// What an event says, as labelled lines.
fn lines(e: &Event) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(d) = &e.device {
        let mut dev = format!("{} ({})", d.device_id, d.model);
        if let Some(site) = &d.site {
            dev.push_str(&format!(", site {site}"));
        }
        out.push(("Device", dev));
    }
    let data = &e.data;
    let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    if let Some(t) = data.get("trouble") {
        out.push((
            "What",
            format!(
                "{} ({}, rule {}, {} occurrence(s) since {})",
                s(&t["title"]).unwrap_or_default(),
                s(&t["severity"]).unwrap_or_default(),
                s(&t["rule_id"]).unwrap_or_default(),
                t["occurrences"].as_u64().unwrap_or(0),
                s(&t["opened_at"]).unwrap_or_default(),
            ),
        ));
        if let Some(a) = s(&t["action"]).filter(|a| !a.is_empty()) {
            out.push(("Do", a));
        }
        if let Some(ev) = t["evidence"].as_array()
            && !ev.is_empty()
        {
            let codes: Vec<String> = ev
                .iter()
                .take(5)
                .map(|x| {
                    format!(
                        "{} on {}{}",
                        s(&x["code"]).unwrap_or_default(),
                        s(&x["unit"]).unwrap_or_default(),
                        s(&x["at"]).map(|a| format!(" at {a}")).unwrap_or_default()
                    )
                })
                .collect();
            out.push(("Evidence", codes.join("; ")));
        }
        if let Some(f) = s(&t["fix"]) {
            out.push(("Fix", format!("the center has a known software fix: {f}")));
        }
    }
    if let Some(a) = data.get("advice") {
        out.push(("What", s(&a["title"]).unwrap_or_default()));
        if let Some(sum) = s(&a["summary"]).filter(|x| !x.is_empty()) {
            out.push(("Why", sum));
        }
        for r in a["recommendations"]
            .as_array()
            .into_iter()
            .flatten()
            .take(3)
        {
            let hw: Vec<String> = r["hardware"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| h.to_string().trim_matches('"').to_owned())
                .collect();
            out.push((
                "Do",
                format!(
                    "#{}: {}{}",
                    r["rank"].as_u64().unwrap_or(0),
                    s(&r["summary"]).unwrap_or_default(),
                    if hw.is_empty() {
                        String::new()
                    } else {
                        format!(" (hardware: {})", hw.join(", "))
                    }
                ),
            ));
        }
    }
    if let Some(r) = data.get("rollout") {
        out.push((
            "What",
            format!(
                "rollout {} ({}) paused: {}",
                r["id"],
                s(&r["name"]).unwrap_or_default(),
                s(&r["state_reason"]).unwrap_or_else(|| "no reason given".into())
            ),
        ));
        out.push(("Do", "look at its failures, then resume or abort it".into()));
    }
    if let Some(j) = data.get("job") {
        out.push((
            "What",
            format!(
                "job {} failed: {}{}",
                j["id"],
                s(&j["reason"]).unwrap_or_default(),
                s(&j["detail"])
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(o) = data.get("offline") {
        out.push((
            "What",
            format!(
                "silent since {} (no report for {} min)",
                s(&o["last_report_at"]).unwrap_or_default(),
                o["silent_s"].as_u64().unwrap_or(0) / 60
            ),
        ));
        out.push(("Do", "check its power and network".into()));
    }
    if let Some(u) = e.device.as_ref().and_then(|d| d.url.clone()) {
        out.push(("Link", u));
    }
    out.push((
        "Event",
        format!("{} ({}) at {}", e.id, e.kind, e.created_at),
    ));
    out
}

/// Subject, plain text and HTML of a mail about `events` (one, or a digest).
pub fn compose(events: &[Event]) -> (String, String, String) {
    let subject = match events {
        [e] => format!("[Fleetcare] {}: {}", e.severity, e.summary),
        _ => {
            let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
            for e in events {
                *kinds.entry(e.kind.as_str()).or_default() += 1;
            }
            let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            format!(
                "[Fleetcare] {} notifications: {}",
                events.len(),
                parts.join(", ")
            )
        }
    };
    let mut text = String::new();
    let mut html = String::from("<!doctype html><html><body style=\"font-family:sans-serif\">");
    for e in events {
        text.push_str(&format!("{}\n", e.summary));
        html.push_str(&format!("<h3>{}</h3><table>", esc(&e.summary)));
        for (label, value) in lines(e) {
            text.push_str(&format!("  {label:<9} {value}\n"));
            let v = if label == "Link" {
                format!("<a href=\"{}\">{}</a>", esc(&value), esc(&value))
            } else {
                esc(&value)
            };
            html.push_str(&format!(
                "<tr><th align=\"left\" valign=\"top\">{label}</th><td>{v}</td></tr>"
            ));
        }
        text.push('\n');
        html.push_str("</table>");
    }
    text.push_str("-- \nFleetcare: sent because of a notification subscription.\n");
    html.push_str("<p style=\"color:#666\">Fleetcare: sent because of a notification subscription.</p></body></html>");
    (subject, text, html)
}
