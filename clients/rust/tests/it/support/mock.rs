//! A tiny HTTP server on 127.0.0.1 that answers every documented route with a sample of
//! its documented answer and records what it was asked.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::openapi::{self, Samples};

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The documented path template it matched, if any.
    pub route: Option<String>,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct MockServer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `path` (no query) fits the template `route`.
fn matches(route: &str, path: &str) -> bool {
    let (a, b): (Vec<_>, Vec<_>) = (route.split('/').collect(), path.split('/').collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

impl MockServer {
    pub async fn start() -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let doc = Arc::new(openapi::document());
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (doc, recorded) = (doc.clone(), recorded.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &doc, &recorded).await;
                });
            }
        });
        MockServer {
            url,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut stream: TcpStream,
    doc: &Value,
    recorded: &Mutex<Vec<Recorded>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let target = request_line.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path = target.split('?').next().unwrap_or("").to_owned();
    let route = openapi::routes(doc)
        .into_iter()
        .find(|(m, r)| *m == method && matches(r, &path))
        .map(|(_, r)| r);
    recorded.lock().unwrap().push(Recorded {
        method: method.clone(),
        route: route.clone(),
        target,
        headers,
        body,
    });

    let Some(route) = route else {
        let body = r#"{"error":{"code":"not_found","message":"no such route"}}"#;
        return respond(&mut stream, 404, "application/json", &[], body.as_bytes()).await;
    };
    let samples = Samples::new(doc);
    match (method.as_str(), route.as_str()) {
        ("GET", "/v1/apps/{app}/realtime") => {
            let frames = concat!(
                "id: orders:0\nevent: hello\n",
                "data: {\"protocol\":1,\"heartbeat_secs\":30,\"topics\":[\"orders\"],\"cursor\":\"orders:0\"}\n\n",
                ": heartbeat\n\n",
                "id: orders:1\nevent: created\n",
                "data: {\"topic\":\"orders\",\"seq\":1,\"type\":\"created\",\"data\":{\"n\":1},\"published_at\":5}\n\n",
            );
            respond(
                &mut stream,
                200,
                "text/event-stream",
                &[],
                frames.as_bytes(),
            )
            .await
        }
        ("GET", "/metrics") => {
            respond(&mut stream, 200, "text/plain", &[], b"picloud_up 1\n").await
        }
        ("GET", "/v1/apps/{app}/functions/{script}")
        | ("POST", "/v1/apps/{app}/functions/{script}") => {
            respond(&mut stream, 200, "application/json", &[], br#"{"ok":true}"#).await
        }
        _ => {
            let (status, sample) = samples.answer(&method, &route);
            let extra: &[(&str, &str)] = if route == "/v1/admin/session" && method == "POST" {
                &[("set-cookie", "picloud_session=s3cr3t; Path=/; HttpOnly")]
            } else {
                &[]
            };
            let body = match (status, sample) {
                (204, _) => Vec::new(),
                (_, Some(sample)) => serde_json::to_vec(&sample).unwrap(),
                (_, None) => b"{}".to_vec(),
            };
            respond(&mut stream, status, "application/json", extra, &body).await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-request-id: req-mock\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}
