//! The `/metrics` HTTP endpoint: a tokio `TcpListener`, one request per
//! connection, bounded scrape slots (in total and per source address), an
//! optional bearer token. The same listener answers an orchestrator's
//! probes: `/health` (the process serves) and `/ready` (the node is up in
//! the ring and takes requests), without a token (they tell nothing but
//! that).

use super::Metrics;
use crate::util::LockExt;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

/// Largest HTTP request head the endpoint reads.
const MAX_HEAD: usize = 8 * 1024;
/// Scrapes served at once; more connections wait.
const MAX_SCRAPES: usize = 8;
/// Time a scraper has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a whole exchange may take (read, render, write): a scraper that
/// stops reading cannot hold a slot longer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the metrics endpoint (TCP) on `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Scrapes one source address may have in progress at once.
pub const MAX_SCRAPES_PER_SOURCE: usize = 2;

/// Whether the node is ready to serve: `Err` says why not (`/ready`
/// answers 503 with it).
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Serves `GET /metrics`, `GET /health` and `GET /ready` (HTTP/1.1, one
/// request per connection) until shutdown. Any other path is 404, any
/// other method 405. With a `token`, a `/metrics` request without
/// `Authorization: Bearer <token>` is 401. At most
/// [`MAX_SCRAPES_PER_SOURCE`] of the slots go to one source address.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    token: Option<String>,
    ready: Readiness,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    let per_source: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> =
        Default::default();
    let token: Option<Arc<str>> = token.map(Arc::from);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let (metrics, token, ready) = (metrics.clone(), token.clone(), ready.clone());
        // Busy (slow or idle scrapers hold every slot, or this source its
        // share): refuse at once rather than queue, so the loop keeps
        // accepting and stopping.
        let share = SourceShare::take(&per_source, peer.ip());
        let permit = share
            .is_some()
            .then(|| slots.clone().try_acquire_owned().ok())
            .flatten();
        conns.spawn(async move {
            // The permit and share (if any) are held until this task ends.
            let _share = share;
            let r = match &permit {
                Some(_) => {
                    let answering = answer(stream, metrics, token.as_deref(), &ready);
                    tokio::time::timeout(ANSWER_TIMEOUT, answering).await
                }
                None => tokio::time::timeout(READ_TIMEOUT, busy(stream, &ready)).await,
            };
            match r {
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics request failed"),
                Err(_) => tracing::debug!("metrics request timed out"),
                Ok(Ok(())) => {}
            }
        });
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// A source's scrape in progress, counted while it lives.
struct SourceShare(
    Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    std::net::IpAddr,
);

impl SourceShare {
    fn take(
        map: &Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
        ip: std::net::IpAddr,
    ) -> Option<Self> {
        let mut m = map.locked();
        let n = m.entry(ip).or_insert(0);
        if *n >= MAX_SCRAPES_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(Self(map.clone(), ip))
    }
}

impl Drop for SourceShare {
    fn drop(&mut self) {
        let mut m = self.0.locked();
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Whether the request head carries `Authorization: Bearer <token>`
/// (compared in constant time).
fn authorized(head: &[u8], token: &str) -> bool {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n").skip(1).any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return false;
        }
        let Some(given) = value.trim().strip_prefix("Bearer ") else {
            return false;
        };
        let (a, b) = (given.trim().as_bytes(), token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    })
}

/// No slot free: a probe (`/health`, `/ready`) is still answered, so that
/// busy scrapers never make an orchestrator restart a healthy node;
/// anything else gets 503.
async fn busy(mut stream: tokio::net::TcpStream, ready: &Readiness) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    let (method, path) = request_line(&head);
    let answer = probe(&method, &path, ready).unwrap_or((
        "503 Service Unavailable\r\nRetry-After: 1",
        "text/plain",
        "too many scrapes at once\n".to_string(),
    ));
    respond(stream, answer).await
}

/// Reads a request head (up to [`MAX_HEAD`] bytes).
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// The method and path (without a query) of a request head.
fn request_line(head: &[u8]) -> (String, String) {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    (method.to_string(), path.to_string())
}

/// Status (with any extra header lines), content type and body.
type Answer = (&'static str, &'static str, String);

/// The answer to an orchestrator's probe, if the request is one.
fn probe(method: &str, path: &str, ready: &Readiness) -> Option<Answer> {
    match (method, path) {
        ("GET", "/health") => Some(("200 OK", "text/plain", "ok\n".to_string())),
        ("GET", "/ready") => Some(match ready() {
            Ok(()) => ("200 OK", "text/plain", "ready\n".to_string()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        }),
        _ => None,
    }
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    metrics: Arc<Metrics>,
    token: Option<&str>,
    ready: &Readiness,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let (method, path) = request_line(&head);
    if let Some(answer) = probe(&method, &path, ready) {
        return respond(stream, answer).await;
    }
    let allowed = token.is_none_or(|t| authorized(&head, t));
    let answer = match (method.as_str(), path.as_str()) {
        ("GET", "/metrics") if !allowed => (
            "401 Unauthorized",
            "text/plain",
            "a bearer token is required ([metrics] bearer_token_file)\n".to_string(),
        ),
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            // CPU work (and the collectors read storage): off the runtime.
            tokio::task::spawn_blocking(move || metrics.render())
                .await
                .map_err(std::io::Error::other)?,
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "see /metrics, /health or /ready\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics, /health or /ready only\n".to_string(),
        ),
    };
    respond(stream, answer).await
}

async fn respond(
    mut stream: tokio::net::TcpStream,
    (status, content_type, body): Answer,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
