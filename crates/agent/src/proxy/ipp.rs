//! Reading a printer over IPP: one Get-Printer-Attributes request (RFC 8011 §4.2.5) for the
//! attributes the proxy maps, the answer bounded in size and time, parsed by the `ipp` crate
//! and turned into [`PrinterFacts`].

use std::time::Duration;

use ipp::parser::IppParser;
use ipp::prelude::*;
use ipp::value::IppKeyword;

use super::facts::{Alert, Firmware, PrinterFacts, parse_ipp_alert};

/// Largest Get-Printer-Attributes answer read.
pub const MAX_ANSWER: usize = 1 << 20;

/// The attributes asked for.
const WANTED: &[&str] = &[
    "printer-uuid",
    "printer-device-id",
    "printer-make-and-model",
    "printer-firmware-name",
    "printer-firmware-string-version",
    "printer-firmware-version",
    "printer-firmware-patches",
    "printer-state",
    "printer-state-reasons",
    "printer-alert",
    "printer-alert-description",
    "printer-supply",
    "printer-supply-description",
    "printer-impressions-completed",
    "printer-media-sheets-completed",
    "printer-pages-completed",
    "printer-up-time",
];

#[derive(Debug, thiserror::Error)]
pub enum IppError {
    #[error("{uri}: {detail}")]
    Uri { uri: String, detail: String },
    #[error("{uri}: {detail}")]
    Request { uri: String, detail: String },
    #[error("{uri}: the answer is larger than {MAX_ANSWER} bytes")]
    TooLarge { uri: String },
    #[error("{uri}: not an IPP answer: {detail}")]
    Parse { uri: String, detail: String },
    #[error("{uri}: the printer answered {status}")]
    Status { uri: String, status: String },
}

/// The HTTP URL an `ipp://` (or `http://`) printer URI is served at.
pub fn http_url(uri: &str) -> Result<String, IppError> {
    let bad = |detail: &str| IppError::Uri {
        uri: uri.to_owned(),
        detail: detail.into(),
    };
    let parsed: Uri = uri.parse().map_err(|_| bad("not a URI"))?;
    let host = parsed.host().ok_or_else(|| bad("no host"))?;
    let path = parsed.path_and_query().map_or("/", |p| p.as_str());
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match parsed.scheme_str() {
        Some("ipp") => Ok(format!(
            "http://{host}:{}{path}",
            parsed.port_u16().unwrap_or(631)
        )),
        Some("http") => Ok(format!(
            "http://{host}:{}{path}",
            parsed.port_u16().unwrap_or(80)
        )),
        Some("ipps" | "https") => Err(bad(
            "ipps:// is not supported yet (this agent speaks IPP over plain HTTP on the LAN)",
        )),
        _ => Err(bad("the scheme must be ipp:// or http://")),
    }
}

/// The Get-Printer-Attributes request.
pub fn request(uri: &str) -> Result<Vec<u8>, IppError> {
    let err = |detail: String| IppError::Uri {
        uri: uri.to_owned(),
        detail,
    };
    let parsed: Uri = uri.parse().map_err(|_| err("not a URI".into()))?;
    let mut req = IppRequestResponse::new(
        IppVersion::v2_0(),
        Operation::GetPrinterAttributes,
        Some(parsed),
    )
    .map_err(|e| err(e.to_string()))?;
    let wanted: Result<Vec<IppValue>, _> = WANTED
        .iter()
        .map(|a| IppKeyword::try_from(*a).map(IppValue::Keyword))
        .collect();
    let attr = IppAttribute::with_name(
        "requested-attributes",
        IppValue::Array(wanted.map_err(|e| err(e.to_string()))?),
    )
    .map_err(|e| err(e.to_string()))?;
    req.attributes_mut()
        .add(DelimiterTag::OperationAttributes, attr);
    Ok(req.to_bytes().to_vec())
}

/// An attribute's values as text (octet strings as UTF-8, lossily).
fn texts(v: &IppValue) -> Vec<String> {
    match v {
        IppValue::Array(a) => a.iter().flat_map(texts).collect(),
        IppValue::OctetString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        IppValue::NoValue => Vec::new(),
        IppValue::NonUtf8 { data, .. } => vec![String::from_utf8_lossy(data).into_owned()],
        other => vec![other.to_string()],
    }
}

fn integer(v: &IppValue) -> Option<i64> {
    match v {
        IppValue::Integer(i) | IppValue::Enum(i) => Some(i64::from(*i)),
        IppValue::Array(a) => a.first().and_then(integer),
        _ => None,
    }
}

/// Walk an IPP message's framing (RFC 8010 §3) and check what the `ipp` crate (8.0) trusts
/// without checking: the inner lengths of `textWithLanguage` and `nameWithLanguage` values
/// (it slices by them and panics past the end — found by the `ipp_answer` fuzz target; under
/// the device profile's `panic = "abort"` one hostile printer would stop the whole proxy).
fn check_framing(body: &[u8]) -> Result<(), String> {
    let u16_at = |i: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *body.get(i)?,
            *body.get(i + 1)?,
        ])))
    };
    let mut i = 8; // version, status, request id
    if body.len() < i {
        return Err("shorter than an IPP header".into());
    }
    while let Some(&tag) = body.get(i) {
        i += 1;
        if tag <= 0x0f {
            if tag == 0x03 {
                return Ok(()); // end of attributes; what follows is document data
            }
            continue; // a group delimiter
        }
        let name_len = u16_at(i).ok_or("a value without its name length")?;
        i += 2 + name_len;
        let value_len = u16_at(i).ok_or("a value without its length")?;
        i += 2;
        let value = body
            .get(i..i + value_len)
            .ok_or("a value longer than the message")?;
        if tag == 0x35 || tag == 0x36 {
            // language length, language, text length, text: exactly the value
            let inner = |at: usize| -> Option<usize> {
                Some(usize::from(u16::from_be_bytes([
                    *value.get(at)?,
                    *value.get(at + 1)?,
                ])))
            };
            let lang = inner(0).ok_or("a with-language value without its language")?;
            let text = inner(2 + lang).ok_or("a with-language value without its text")?;
            if 2 + lang + 2 + text != value.len() {
                return Err("a with-language value whose parts do not add up".into());
            }
        }
        i += value_len;
    }
    Err("no end-of-attributes tag".into())
}

/// Turn a Get-Printer-Attributes answer into facts.
pub fn parse_answer(uri: &str, body: &[u8]) -> Result<PrinterFacts, IppError> {
    check_framing(body).map_err(|detail| IppError::Parse {
        uri: uri.to_owned(),
        detail,
    })?;
    let parsed = IppParser::new(std::io::Cursor::new(body.to_vec()))
        .parse()
        .map_err(|e| IppError::Parse {
            uri: uri.to_owned(),
            detail: e.to_string(),
        })?;
    let status = parsed.header().status_code();
    if !status.is_success() {
        return Err(IppError::Status {
            uri: uri.to_owned(),
            status: format!("{status:?}"),
        });
    }
    let mut attrs: std::collections::BTreeMap<String, &IppValue> = Default::default();
    for g in parsed
        .attributes()
        .groups_of(DelimiterTag::PrinterAttributes)
    {
        for a in g.attributes() {
            // The first of a name wins (a printer listing one twice is not trusted twice).
            attrs.entry(a.name().to_string()).or_insert(a.value());
        }
    }
    let list = |n: &str| attrs.get(n).map(|v| texts(v)).unwrap_or_default();
    let one = |n: &str| list(n).into_iter().next().filter(|s| !s.is_empty());
    let names = list("printer-firmware-name");
    let strings = list("printer-firmware-string-version");
    let versions = list("printer-firmware-version");
    let patches = list("printer-firmware-patches");
    let firmware = names
        .iter()
        .enumerate()
        .map(|(i, name)| Firmware {
            name: name.clone(),
            string_version: strings.get(i).cloned().filter(|s| !s.is_empty()),
            version: versions.get(i).cloned().filter(|s| !s.is_empty()),
            patches: patches.get(i).cloned().filter(|s| !s.is_empty()),
        })
        .collect();
    let descriptions = list("printer-alert-description");
    let alerts = list("printer-alert")
        .into_iter()
        .enumerate()
        .map(|(i, a)| Alert {
            alert: parse_ipp_alert(&a),
            description: descriptions.get(i).cloned(),
            key: a,
        })
        .collect();
    let supply_descr = list("printer-supply-description");
    let supplies = list("printer-supply")
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, supply_descr.get(i).cloned()))
        .collect();
    let mut counters = std::collections::BTreeMap::new();
    for (attr, key) in [
        ("printer-impressions-completed", "pages_total"),
        ("printer-media-sheets-completed", "sheets_total"),
        ("printer-pages-completed", "pages_completed"),
        ("printer-up-time", "up_time_s"),
    ] {
        if let Some(v) = attrs.get(attr).and_then(|v| integer(v)) {
            counters.insert(key.to_owned(), v as f64);
        }
    }
    Ok(PrinterFacts {
        uuid: one("printer-uuid"),
        device_id_1284: one("printer-device-id"),
        serial: None,
        make_and_model: one("printer-make-and-model"),
        firmware,
        firmware_kinds: std::collections::BTreeMap::new(),
        hr_devices: Vec::new(),
        state: attrs.get("printer-state").and_then(|v| integer(v)),
        state_reasons: list("printer-state-reasons"),
        alerts,
        supplies,
        supply_rows: Vec::new(),
        counters,
    })
}

/// Ask the printer, within `timeout`, reading at most [`MAX_ANSWER`] bytes.
pub async fn query(
    http: &reqwest::Client,
    uri: &str,
    timeout: Duration,
) -> Result<PrinterFacts, IppError> {
    let url = http_url(uri)?;
    let body = request(uri)?;
    let req_err = |detail: String| IppError::Request {
        uri: uri.to_owned(),
        detail,
    };
    let read = async {
        let mut resp = http
            .post(&url)
            .header("content-type", "application/ipp")
            .body(body)
            .send()
            .await
            .map_err(|e| req_err(crate::client::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(req_err(format!("HTTP {}", resp.status())));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| req_err(crate::client::error_chain(&e)))?
        {
            if buf.len() + chunk.len() > MAX_ANSWER {
                return Err(IppError::TooLarge {
                    uri: uri.to_owned(),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    let buf = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| req_err(format!("no answer within {timeout:?}")))??;
    parse_answer(uri, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_uris_map_to_http() {
        assert_eq!(
            http_url("ipp://127.0.0.1:8631/ipp/print").expect("ok"),
            "http://127.0.0.1:8631/ipp/print"
        );
        assert_eq!(
            http_url("ipp://printer.lan/ipp/print").expect("ok"),
            "http://printer.lan:631/ipp/print"
        );
        assert!(http_url("ipps://printer.lan/ipp/print").is_err());
        assert!(http_url("file:///etc/passwd").is_err());
    }

    #[test]
    fn garbage_is_refused_with_a_clear_error() {
        for body in [
            &b""[..],
            b"\x02\x00",
            b"<html>not ipp</html>",
            &[0xffu8; 64],
        ] {
            let e = parse_answer("ipp://p/ipp/print", body).expect_err("refused");
            assert!(e.to_string().contains("ipp://p/ipp/print"), "{e}");
        }
    }

    #[test]
    fn the_request_asks_for_the_attributes_the_proxy_maps() {
        let r = request("ipp://127.0.0.1:8631/ipp/print").expect("valid");
        assert_eq!(&r[2..4], &[0x00, 0x0B], "Get-Printer-Attributes");
        let text = String::from_utf8_lossy(&r);
        assert!(text.contains("printer-firmware-string-version"));
        assert!(text.contains("ipp://127.0.0.1:8631/ipp/print"));
    }
}
