//! HTTP: `GET`/`HEAD /metrics` served by hyper (HTTP/1.x), with the one-second snapshot cache.
//!
//! hyper parses requests and writes responses (status line, `Content-Length`, no body for
//! `HEAD`, 400 for a malformed request, 431 for a request head over [`MAX_HEAD`]) and closes a
//! connection whose request head takes longer than [`IO_TIMEOUT`]. Around it: one request per
//! connection (keep-alive off), at most [`MAX_CONNECTIONS`] connections at a time (more are
//! closed at once), and [`CONNECTION_TIMEOUT`] for a whole connection, so a client that does not
//! take its response cannot hold a slot.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::anyhow;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Mutex, Semaphore},
};

use super::{Format, PassGauges, Snapshot, collect};
use crate::config::Config;

/// Scrapes closer together than this get the same reading.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
/// Longest request head accepted (request line and headers); hyper answers 431 beyond it.
const MAX_HEAD: usize = 8192;
/// Time a client has to send its request head.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection may take in all (request, collection, response); then it is closed.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at the same time; more are closed at once.
const MAX_CONNECTIONS: usize = 16;

/// Reads one snapshot (blocking; runs on the blocking pool).
pub(super) type CollectFn = dyn Fn() -> anyhow::Result<Snapshot> + Send + Sync;

/// The collection function with its one-second cache.
struct Endpoint {
    collect: Box<CollectFn>,
    cache: Mutex<Option<(Instant, Arc<Snapshot>)>>,
}

impl Endpoint {
    /// The cached snapshot, or a new reading when it is older than [`CACHE_FOR`].
    async fn snapshot(self: &Arc<Self>) -> anyhow::Result<Arc<Snapshot>> {
        // Holding the lock while collecting: concurrent scrapes wait and share the reading.
        let mut cache = self.cache.lock().await;
        if let Some((at, snapshot)) = cache.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(snapshot.clone());
        }
        let me = self.clone();
        let snapshot = tokio::task::spawn_blocking(move || (me.collect)())
            .await
            .map_err(|e| anyhow!("reading the metrics: {e}"))??;
        let snapshot = Arc::new(snapshot);
        *cache = Some((Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }

    /// The response to one request.
    async fn respond(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != "/metrics" {
            return text(
                StatusCode::NOT_FOUND,
                "not found; metrics are at /metrics\n".into(),
            );
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n".into());
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let format = Format::negotiate(
            req.headers()
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let body = match self.snapshot().await {
            Ok(snapshot) => format
                .encode(snapshot)
                .map_err(|e| anyhow!("encoding the metrics: {e}")),
            Err(e) => Err(e),
        };
        match body {
            Ok(body) => {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(format.content_type()),
                );
                r
            }
            Err(e) => {
                log::warn!("metrics: scrape failed: {e:#}");
                text(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}\n"))
            }
        }
    }
}

/// A plain-text response (hyper leaves the body out for `HEAD`).
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Binds the endpoint's socket; the error names `metrics.listen`.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow!("metrics.listen: cannot listen on {listen}: {e}"))
}

/// Serves `GET /metrics` on `listen` until the task is dropped. Only failing to listen is an
/// error; a failing scrape answers 503 with the reason.
pub async fn serve(
    listen: SocketAddr,
    pins: PathBuf,
    run_dir: PathBuf,
    cfg: Arc<Config>,
    pass: Arc<PassGauges>,
) -> anyhow::Result<()> {
    serve_bound(bind(listen).await?, pins, run_dir, cfg, pass).await
}

/// [`serve`] on a socket from [`bind`] (so that a caller can report a bind error before it
/// spawns the server).
pub async fn serve_bound(
    listener: TcpListener,
    pins: PathBuf,
    run_dir: PathBuf,
    cfg: Arc<Config>,
    pass: Arc<PassGauges>,
) -> anyhow::Result<()> {
    if let Ok(a) = listener.local_addr() {
        log::info!("metrics: serving http://{a}/metrics");
    }
    serve_on(
        listener,
        Box::new(move || collect(&pins, &run_dir, &cfg, Some(&pass))),
    )
    .await
}

/// Serves the endpoint on a bound listener, reading snapshots with `collect`.
pub(super) async fn serve_on(listener: TcpListener, collect: Box<CollectFn>) -> anyhow::Result<()> {
    let ep = Arc::new(Endpoint {
        collect,
        cache: Mutex::new(None),
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(IO_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .keep_alive(false)
        .title_case_headers(true);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                log::warn!("metrics: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            log::debug!("metrics: too many connections, closing the one from {peer}");
            continue;
        };
        let ep = ep.clone();
        let service = service_fn(move |req| {
            let ep = ep.clone();
            async move { Ok::<_, Infallible>(ep.respond(req).await) }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("metrics: {peer}: {e}"),
                Err(_) => log::debug!("metrics: {peer}: closed after {CONNECTION_TIMEOUT:?}"),
            }
            drop(permit);
        });
    }
}
