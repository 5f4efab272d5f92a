//! A mirror in front of a center, as an attacker between devices and the center would be:
//! it forwards GETs (with their `Authorization`) and answers some paths with bytes of its
//! own. Tests of signed metadata use it to serve tampered documents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A running mirror on 127.0.0.1.
pub struct Mirror {
    pub url: String,
    overrides: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl Mirror {
    /// Start a mirror of `center` (its base URL).
    pub async fn start(center: String) -> Mirror {
        let overrides: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let o = overrides.clone();
        let http = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (o, http, center) = (o.clone(), http.clone(), center.clone());
            async move {
                let path = req.uri().path().to_owned();
                if let Some(b) = o.lock().expect("lock").get(&path) {
                    return (axum::http::StatusCode::OK, b.clone());
                }
                let mut fwd = http.get(format!("{center}{path}"));
                if let Some(a) = req.headers().get("authorization") {
                    fwd = fwd.header("authorization", a.as_bytes());
                }
                let resp = fwd.send().await.expect("the center answers");
                let status =
                    axum::http::StatusCode::from_u16(resp.status().as_u16()).expect("a status");
                (status, resp.bytes().await.expect("body").to_vec())
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("mirror") });
        Mirror { url, overrides }
    }

    /// Answer `path` (the URL's path) with `bytes` from now on.
    pub fn serve(&self, path: &str, bytes: Vec<u8>) {
        self.overrides
            .lock()
            .expect("lock")
            .insert(path.to_owned(), bytes);
    }

    /// Forward everything again.
    pub fn clear(&self) {
        self.overrides.lock().expect("lock").clear();
    }
}
