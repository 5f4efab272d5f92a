//! How a printer behind the proxy is addressed: a `printers` entry parsed into IPP and/or SNMP.

use super::ipp;

/// How one printer is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrinterAddr {
    /// IPP (`ipp://` or `http://`), and optionally SNMP at `host:port` with a community.
    Ipp {
        uri: String,
        snmp: Option<(String, String)>,
    },
    /// SNMP only: `snmp://community@host:port`.
    Snmp { target: String, community: String },
}

impl PrinterAddr {
    /// Parse a `printers` entry; `snmp_community` and `snmp_port` add SNMP to IPP printers.
    pub fn parse(
        entry: &str,
        snmp_community: Option<&str>,
        snmp_port: u16,
    ) -> Result<PrinterAddr, String> {
        if let Some(rest) = entry.strip_prefix("snmp://") {
            let (community, hostport) = rest.rsplit_once('@').unwrap_or(("public", rest));
            let hostport = hostport.trim_end_matches('/');
            if hostport.is_empty() || community.is_empty() {
                return Err(format!("{entry:?}: snmp://community@host[:port]"));
            }
            let target = if hostport
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                hostport.to_owned()
            } else {
                format!("{hostport}:161")
            };
            return Ok(PrinterAddr::Snmp {
                target,
                community: community.to_owned(),
            });
        }
        ipp::http_url(entry).map_err(|e| e.to_string())?;
        let snmp = match snmp_community {
            Some(c) => {
                let uri: ::ipp::prelude::Uri =
                    entry.parse().map_err(|_| format!("{entry:?}: not a URI"))?;
                let host = uri.host().ok_or_else(|| format!("{entry:?}: no host"))?;
                Some((format!("{host}:{snmp_port}"), c.to_owned()))
            }
            None => None,
        };
        Ok(PrinterAddr::Ipp {
            uri: entry.to_owned(),
            snmp,
        })
    }

    pub(crate) fn label(&self) -> String {
        match self {
            PrinterAddr::Ipp { uri, .. } => uri.clone(),
            PrinterAddr::Snmp {
                target,
                community: _,
            } => format!("snmp://{target}"),
        }
    }
}
