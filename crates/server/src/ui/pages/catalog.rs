//! The catalog page: the current compatibility catalog as tables, with the fault rules.

use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::AppState;
use crate::diag;
use crate::error::ApiError;
use crate::extract::Query;
use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::Response;

use super::*;

pub struct CatalogFacts {
    revision: u64,
    title: String,
    loaded: String,
    digest: String,
    stats: String,
}

pub struct Table {
    id: &'static str,
    title: &'static str,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

pub struct RuleRow {
    id: String,
    title: String,
    severity: String,
    condition: String,
    fix: String,
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    info: Option<CatalogFacts>,
    tables: Vec<Table>,
    rules: Vec<RuleRow>,
    rules_loaded: String,
}

fn cell(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => {
            let sep = if a.iter().any(toml::Value::is_table) {
                "; "
            } else {
                ", "
            };
            a.iter().map(cell).collect::<Vec<_>>().join(sep)
        }
        // A requirement or conflict: "engine-firmware >= 2.7 on the engine".
        toml::Value::Table(t) if t.contains_key("product") => {
            let mut words = cell(&t["product"]);
            if let Some(v) = t.get("versions") {
                words.push(' ');
                words.push_str(&cell(v));
            }
            match t.get("unit").map(cell).as_deref() {
                None | Some("any") => {}
                Some("same") => words.push_str(" on the same unit"),
                Some(unit) => words.push_str(&format!(" on the {unit}")),
            }
            words
        }
        // A target: "ctl-x2 rev B, C".
        toml::Value::Table(t) if t.contains_key("unit_model") => {
            let mut words = cell(&t["unit_model"]);
            if let Some(r) = t.get("hw_revisions") {
                words.push_str(&format!(" rev {}", cell(r)));
            }
            words
        }
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| format!("{k} {}", cell(v)))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// The catalog's sections as tables: one column per key any entry has, in first-seen order.
fn tables(source: &str) -> Vec<Table> {
    let Ok(doc) = source.parse::<toml::Table>() else {
        return Vec::new();
    };
    [
        ("device_model", "catalog-device-models", "Device models"),
        ("unit_model", "catalog-unit-models", "Unit models"),
        ("product", "catalog-products", "Software products"),
        ("release", "catalog-releases", "Releases"),
    ]
    .into_iter()
    .filter_map(|(key, id, title)| {
        let entries = doc.get(key)?.as_array()?;
        let mut columns: Vec<String> = Vec::new();
        for e in entries.iter().filter_map(toml::Value::as_table) {
            for k in e.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
        // The name first, the rest as the catalog spells them (sorted).
        if let Some(i) = columns.iter().position(|c| c == "name") {
            let name = columns.remove(i);
            columns.insert(0, name);
        }
        let rows = entries
            .iter()
            .filter_map(toml::Value::as_table)
            .map(|e| {
                columns
                    .iter()
                    .map(|c| e.get(c).map(cell).unwrap_or_default())
                    .collect()
            })
            .collect();
        Some(Table {
            id,
            title,
            columns: columns.iter().map(|c| c.replace('_', " ")).collect(),
            rows,
        })
    })
    .collect()
}

pub async fn catalog(State(st): State<AppState>, ui: Ui) -> Response {
    let got = async {
        let found = crate::compat::api::show_catalog(
            State(st.clone()),
            ui.auth(),
            Query(crate::compat::api::CatalogQuery {
                revision: None,
                source: Some(true),
            }),
        )
        .await;
        let info = match found {
            Ok(Json(c)) => Some(c),
            Err(ApiError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let Json(rules) = diag::api::show_rules(State(st.clone()), ui.auth()).await?;
        let Json(published) = crate::delivery::api::list_releases(
            State(st.clone()),
            ui.auth(),
            Query(crate::delivery::api::ReleaseQuery {
                product: None,
                limit: Some(1000),
            }),
        )
        .await?;
        let source = info
            .as_ref()
            .and_then(|c| c.source.clone())
            .unwrap_or_default();
        let title = source
            .parse::<toml::Table>()
            .ok()
            .and_then(|d| d.get("title").and_then(|t| t.as_str().map(str::to_owned)))
            .unwrap_or_default();
        render(&CatalogPage {
            title: "Catalog".into(),
            nav: nav(&ui, "/ui/catalog"),
            css: ASSET_CSS,
            js: ASSET_JS,
            tables: {
                let mut t = tables(&source);
                t.push(Table {
                    id: "published-releases",
                    title: "Published releases (signed; what devices can be given)",
                    columns: [
                        "product",
                        "maker",
                        "version",
                        "counter",
                        "files",
                        "held",
                        "published",
                    ]
                    .map(String::from)
                    .to_vec(),
                    rows: published
                        .releases
                        .iter()
                        .map(|r| {
                            vec![
                                r.product.clone(),
                                r.maker.clone(),
                                r.version.clone(),
                                r.counter.to_string(),
                                format!(
                                    "{} ({} bytes)",
                                    r.artifacts.len(),
                                    r.artifacts.iter().map(|a| a.size).sum::<u64>()
                                ),
                                if r.complete {
                                    "every file"
                                } else {
                                    "not every file yet"
                                }
                                .into(),
                                format!("{} by {}", when(&r.published_at), r.published_by),
                            ]
                        })
                        .collect(),
                });
                t
            },
            info: info.map(|c| CatalogFacts {
                revision: c.revision,
                title,
                loaded: format!("{} by {}", when(&c.loaded_at), c.loaded_by),
                digest: c.digest.clone(),
                stats: format!(
                    "{} device models, {} unit models, {} products, {} releases, {} rules",
                    c.stats.device_models,
                    c.stats.unit_models,
                    c.stats.products,
                    c.stats.releases,
                    c.stats.rules
                ),
            }),
            rules_loaded: match (rules.revision, &rules.loaded_at, &rules.loaded_by) {
                (Some(r), Some(at), Some(by)) => {
                    format!("Revision {r}, loaded {} by {by}.", when(at))
                }
                _ => String::new(),
            },
            rules: rules
                .rules
                .iter()
                .map(|r| RuleRow {
                    id: r.id.clone(),
                    title: r.title.clone(),
                    severity: r.severity.clone(),
                    condition: r.condition.clone(),
                    fix: r.fix.clone().unwrap_or_default(),
                })
                .collect(),
        })
    }
    .await;
    page(&ui, "/ui/catalog", got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_cells_read_as_requirements_and_targets() {
        let doc: toml::Table = r#"
requires = [{ product = "engine-firmware", versions = ">= 2.7", unit = "engine" }, { product = "pdl", versions = "< 4", unit = "same" }]
targets = [{ unit_model = "ctl-x2", hw_revisions = ["B", "C"] }, { unit_model = "ctl-x3" }]
"#
        .parse()
        .expect("toml");
        assert_eq!(
            cell(&doc["requires"]),
            "engine-firmware >= 2.7 on the engine; pdl < 4 on the same unit"
        );
        assert_eq!(cell(&doc["targets"]), "ctl-x2 rev B, C; ctl-x3");
    }

    #[test]
    fn catalog_sections_become_tables_with_every_key() {
        let t = tables(
            r#"
[[device_model]]
name = "m1"
maker = "acme"
[[device_model]]
name = "m2"
optional_kinds = ["fax", "finisher"]
"#,
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].columns, ["name", "maker", "optional kinds"]);
        assert_eq!(t[0].rows[1], ["m2", "", "fax, finisher"]);
        assert!(tables("not toml [").is_empty());
    }
}
