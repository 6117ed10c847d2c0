//! Prometheus metrics endpoint (text exposition format 0.0.4), off by default.
//!
//! `translator run` serves `GET /metrics` on `metrics.listen` when the setting is present.
//! Every scrape reads the pinned maps (counters, sessions, bindings, port blocks) and the
//! controller's `controller.json` (slow-path and DNS64 counters, written every tick), so the
//! numbers are the ones `translator stats` and `translator status` print. Scrapes less than
//! [`CACHE_FOR`] apart share one rendering, and only one rendering runs at a time.
//!
//! Cost: a scrape walks the session table once (one IPv4-side lookup per session to classify
//! it), the binding table and the block-slot table; with millions of sessions a scrape takes
//! a noticeable fraction of a second of CPU. Bytes per direction are not counted by the data
//! plane yet and are not exported.
//!
//! The HTTP side is deliberately minimal: HTTP/1.x, one request per connection
//! (`Connection: close`), `GET` and `HEAD` on `/metrics`, 404 elsewhere, a bounded request head,
//! read and write timeouts and a cap on concurrent connections.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::anyhow;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{Mutex, Semaphore},
};
use translator_common::counters::{DropReason, Event};

use crate::{
    config::{Config, Protocol},
    dataplane::Maps,
    state::SessionState,
};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Scrapes closer together than this get the same rendering.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
/// Longest request head accepted (request line and headers).
const MAX_HEAD: usize = 8192;
/// Time a client has to send its request, and to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at the same time; more are closed at once.
const MAX_CONNECTIONS: usize = 16;

/// Counters by name, as `controller.json` holds them.
pub type Named = BTreeMap<String, u64>;

/// Port blocks of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks {
    pub protocol: Protocol,
    pub in_use: u64,
    pub total: u64,
}

/// Everything one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Data-plane events (every [`Event`]).
    pub events: Vec<(Event, u64)>,
    /// Data-plane drops (every [`DropReason`]).
    pub drops: Vec<(DropReason, u64)>,
    /// Sessions per protocol and state (every valid pair, zeros included).
    pub sessions: Vec<(Protocol, SessionState, u64)>,
    /// Bindings (dynamic and static) in the binding table.
    pub bindings: u64,
    /// Port blocks per protocol.
    pub blocks: Vec<Blocks>,
    /// Slow-path counters from `controller.json`, when present.
    pub slow_path: Option<Named>,
    /// DNS64 counters from `controller.json`, when the server is enabled.
    pub dns64: Option<Named>,
    /// Router advertisement counters from `controller.json`, when `[ra]` is enabled.
    pub ra: Option<Named>,
}

/// The session states a protocol's sessions can be in.
fn states(p: Protocol) -> &'static [SessionState] {
    match p {
        Protocol::Tcp => &[SessionState::TcpEstablished, SessionState::TcpTransitory],
        Protocol::Udp => &[SessionState::Udp],
        Protocol::Icmp => &[SessionState::Icmp],
    }
}

/// Reads a snapshot from the pinned maps in `pins` and `run_dir/controller.json` (blocking).
pub fn collect(pins: &Path, run_dir: &Path, cfg: &Config) -> anyhow::Result<Snapshot> {
    let maps = Maps::open(pins)?;
    let (events, drops) = maps.counters()?;

    // Sessions: one walk, classified like `sessions::list` does, without building and sorting
    // the whole list.
    let mut sessions: Vec<(Protocol, SessionState, u64)> = Protocol::ALL
        .into_iter()
        .flat_map(|p| states(p).iter().map(move |s| (p, *s, 0)))
        .collect();
    for (k, v6) in maps.sessions6.iter().filter_map(Result::ok) {
        let Some(p) = Protocol::from_number(k.proto) else {
            continue;
        };
        let flags4 = maps
            .sessions4
            .get(&k.reverse(&v6), 0)
            .map_or(0, |v| v.flags);
        let state = crate::state::classify(k.proto, v6.flags, flags4);
        if let Some(e) = sessions
            .iter_mut()
            .find(|(ep, es, _)| *ep == p && *es == state)
        {
            e.2 += 1;
        }
    }

    let bindings = maps.bindings4.keys().filter_map(Result::ok).count() as u64;
    let mut in_use = [0u64; 3];
    for k in maps.block_slots.keys().filter_map(Result::ok) {
        if let Some(p) = Protocol::from_number(k.proto) {
            in_use[p.index()] += 1;
        }
    }
    let blocks = Protocol::ALL
        .into_iter()
        .map(|p| Blocks {
            protocol: p,
            in_use: in_use[p.index()],
            total: u64::from(cfg.total_blocks(p)),
        })
        .collect();

    let (slow_path, dns64, ra) = read_controller(&run_dir.join("controller.json"));
    Ok(Snapshot {
        events,
        drops,
        sessions,
        bindings,
        blocks,
        slow_path,
        dns64,
        ra,
    })
}

/// The "slow_path", "dns64" and "ra" counter maps of `controller.json` (absent when the file
/// is missing or unreadable; values that are not unsigned integers are skipped).
fn read_controller(path: &Path) -> (Option<Named>, Option<Named>, Option<Named>) {
    let Some(v) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return (None, None, None);
    };
    let section = |name: &str| {
        v.get(name).and_then(|s| s.as_object()).map(|o| {
            o.iter()
                .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                .collect::<BTreeMap<_, _>>()
        })
    };
    (section("slow_path"), section("dns64"), section("ra"))
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Renders a snapshot in the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(8192);
    let event = |e: Event| {
        s.events
            .iter()
            .find(|(x, _)| *x == e)
            .map_or(0, |(_, n)| *n)
    };

    let name = "translator_packets_total";
    family(
        &mut out,
        name,
        "counter",
        "Packets translated by the data plane, by direction (hairpin: IPv6 client to IPv6 \
         client through a pool address).",
    );
    for (dir, e) in [
        ("6to4", Event::Translated6to4),
        ("4to6", Event::Translated4to6),
        ("hairpin", Event::Hairpinned),
    ] {
        sample(&mut out, name, &[("direction", dir)], event(e));
    }

    let name = "translator_events_total";
    family(
        &mut out,
        name,
        "counter",
        "Data-plane events, as `translator stats` lists them.",
    );
    for (e, n) in &s.events {
        sample(&mut out, name, &[("event", e.name())], *n);
    }

    let name = "translator_drops_total";
    family(
        &mut out,
        name,
        "counter",
        "Packets dropped by the data plane, by reason.",
    );
    for (r, n) in &s.drops {
        sample(&mut out, name, &[("reason", r.name())], *n);
    }

    let name = "translator_sessions";
    family(
        &mut out,
        name,
        "gauge",
        "Sessions in the session table, by protocol and RFC 6146 state.",
    );
    for (p, st, n) in &s.sessions {
        sample(
            &mut out,
            name,
            &[("protocol", p.name()), ("state", st.name())],
            *n,
        );
    }

    let name = "translator_bindings";
    family(
        &mut out,
        name,
        "gauge",
        "Bindings (client address and port to pool address and port), static ones included.",
    );
    sample(&mut out, name, &[], s.bindings);

    let name = "translator_port_blocks_in_use";
    family(
        &mut out,
        name,
        "gauge",
        "Port blocks held by clients, by protocol.",
    );
    for b in &s.blocks {
        sample(&mut out, name, &[("protocol", b.protocol.name())], b.in_use);
    }
    let name = "translator_port_blocks_total";
    family(
        &mut out,
        name,
        "gauge",
        "Port blocks in the pool, by protocol.",
    );
    for b in &s.blocks {
        sample(&mut out, name, &[("protocol", b.protocol.name())], b.total);
    }

    for (name, help, section) in [
        (
            "translator_slow_path_total",
            "Packets and datagrams handled by the user-space slow path (reassembly, \
             fragmentation), by counter.",
            &s.slow_path,
        ),
        (
            "translator_dns64_total",
            "DNS64 server counters (present when the server is enabled).",
            &s.dns64,
        ),
        (
            "translator_ra_total",
            "Router advertisement counters (present when [ra] is enabled).",
            &s.ra,
        ),
    ] {
        if let Some(map) = section {
            family(&mut out, name, "counter", help);
            for (k, n) in map {
                sample(&mut out, name, &[("counter", k)], *n);
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------------------------
// HTTP.

type RenderFn = dyn Fn() -> anyhow::Result<String> + Send + Sync;

/// The rendering function with its one-second cache.
struct Endpoint {
    render: Box<RenderFn>,
    cache: Mutex<Option<(Instant, Arc<String>)>>,
}

impl Endpoint {
    async fn body(self: &Arc<Self>) -> anyhow::Result<Arc<String>> {
        // Holding the lock while rendering: concurrent scrapes wait and share the result.
        let mut cache = self.cache.lock().await;
        if let Some((at, body)) = cache.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(body.clone());
        }
        let me = self.clone();
        let body = tokio::task::spawn_blocking(move || (me.render)())
            .await
            .map_err(|e| anyhow!("rendering metrics: {e}"))??;
        let body = Arc::new(body);
        *cache = Some((Instant::now(), body.clone()));
        Ok(body)
    }
}

/// Serves `GET /metrics` on `listen` until the task is dropped. Only failing to listen is an
/// error; a failing scrape answers 503 with the reason.
pub async fn serve(
    listen: SocketAddr,
    pins: PathBuf,
    run_dir: PathBuf,
    cfg: Arc<Config>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow!("metrics.listen: cannot listen on {listen}: {e}"))?;
    log::info!("metrics: serving http://{listen}/metrics");
    let scrape = move || collect(&pins, &run_dir, &cfg).map(|s| render(&s));
    serve_on(listener, Box::new(scrape)).await
}

async fn serve_on(listener: TcpListener, render: Box<RenderFn>) -> anyhow::Result<()> {
    let ep = Arc::new(Endpoint {
        render,
        cache: Mutex::new(None),
    });
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
        tokio::spawn(async move {
            if let Err(e) = handle(&ep, stream).await {
                log::debug!("metrics: {peer}: {e}");
            }
            drop(permit);
        });
    }
}

/// Reads the request head (up to the empty line). `None` when the client closed early or sent
/// more than [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(buf));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

/// A response: status line, extra headers, body, and whether the body is sent (not for HEAD).
struct Response {
    status: &'static str,
    content_type: &'static str,
    extra: &'static str,
    body: Arc<String>,
    send_body: bool,
}

impl Response {
    fn text(status: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            extra: "",
            body: Arc::new(body.into()),
            send_body: true,
        }
    }
}

async fn respond(ep: &Arc<Endpoint>, head: &[u8]) -> Response {
    let line = head
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_owned())
        .unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Response::text("400 Bad Request", "bad request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text("400 Bad Request", "HTTP/1.x only\n");
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Response::text("404 Not Found", "not found; metrics are at /metrics\n");
    }
    let send_body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => {
            let mut r = Response::text("405 Method Not Allowed", "GET or HEAD only\n");
            r.extra = "Allow: GET, HEAD\r\n";
            return r;
        }
    };
    match ep.body().await {
        Ok(body) => Response {
            status: "200 OK",
            content_type: CONTENT_TYPE,
            extra: "",
            body,
            send_body,
        },
        Err(e) => {
            log::warn!("metrics: scrape failed: {e:#}");
            let mut r = Response::text("503 Service Unavailable", format!("{e:#}\n"));
            r.send_body = send_body;
            r
        }
    }
}

async fn handle(ep: &Arc<Endpoint>, mut stream: TcpStream) -> std::io::Result<()> {
    let head = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) | Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
    };
    let r = respond(ep, &head).await;
    let header = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len(),
        r.extra
    );
    let write = async {
        stream.write_all(header.as_bytes()).await?;
        if r.send_body {
            stream.write_all(r.body.as_bytes()).await?;
        }
        stream.shutdown().await
    };
    match tokio::time::timeout(IO_TIMEOUT, write).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            events: Event::ALL
                .iter()
                .enumerate()
                .map(|(i, e)| (*e, i as u64 * 10))
                .collect(),
            drops: DropReason::ALL
                .iter()
                .map(|r| (*r, u64::from(*r == DropReason::NoSession) * 7))
                .collect(),
            sessions: vec![
                (Protocol::Tcp, SessionState::TcpEstablished, 3),
                (Protocol::Tcp, SessionState::TcpTransitory, 1),
                (Protocol::Udp, SessionState::Udp, 2),
                (Protocol::Icmp, SessionState::Icmp, 0),
            ],
            bindings: 5,
            blocks: Protocol::ALL
                .into_iter()
                .map(|p| Blocks {
                    protocol: p,
                    in_use: 1,
                    total: 3968,
                })
                .collect(),
            slow_path: Some(BTreeMap::from([("slow-path-received".to_owned(), 4)])),
            dns64: Some(BTreeMap::from([
                ("queries".to_owned(), 9),
                ("odd\"name\\".to_owned(), 1),
            ])),
            ra: Some(BTreeMap::from([("ra-sent".to_owned(), 2)])),
        }
    }

    /// A parsed sample line: name, labels, value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// Parses `name{k="v",...} value` (label values with the format's escapes).
    fn parse_sample(line: &str) -> Sample {
        let (name_end, rest) = match line.find(['{', ' ']) {
            Some(i) => (i, &line[i..]),
            None => panic!("no value: {line:?}"),
        };
        let name = line[..name_end].to_owned();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let mut labels = BTreeMap::new();
        let mut chars = rest.chars().peekable();
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert!(
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name in {line:?}"
                );
                assert_eq!(chars.next(), Some('"'), "unquoted label in {line:?}");
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => panic!("unterminated label in {line:?}"),
                    }
                }
                labels.insert(key, value);
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    other => panic!("unexpected {other:?} in {line:?}"),
                }
            }
        }
        assert_eq!(chars.next(), Some(' '), "no space before value in {line:?}");
        let value: String = chars.collect();
        let value = value
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        (name, labels, value)
    }

    /// Every line is a HELP, a TYPE or a sample of the family announced last.
    fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        let mut helped = HashSet::new();
        let mut current = String::new();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP without text");
                assert!(!help.is_empty());
                assert!(helped.insert(name.to_owned()), "second HELP for {name}");
                current = name.to_owned();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE without type");
                assert_eq!(name, current, "TYPE without HELP first");
                assert!(matches!(kind, "counter" | "gauge"), "type {kind}");
                assert!(types.insert(name.to_owned(), kind.to_owned()).is_none());
            } else {
                let s = parse_sample(line);
                assert_eq!(s.0, current, "sample outside its family: {line:?}");
                assert!(types.contains_key(&s.0), "sample before TYPE: {line:?}");
                if types[&s.0] == "counter" {
                    assert!(s.0.ends_with("_total"), "counter {} without _total", s.0);
                }
                samples.push(s);
            }
        }
        (samples, types)
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<f64> = samples
            .iter()
            .filter(|(n, l, _)| n == name && *l == want)
            .map(|s| s.2)
            .collect();
        assert!(found.len() <= 1, "duplicate sample {name} {labels:?}");
        found.first().copied()
    }

    #[test]
    fn render_parses_back() {
        let text = render(&snapshot());
        let (samples, types) = parse(&text);
        assert_eq!(types["translator_packets_total"], "counter");
        assert_eq!(types["translator_sessions"], "gauge");
        let v = |n: &str, l: &[(&str, &str)]| value(&samples, n, l);
        assert_eq!(
            v("translator_packets_total", &[("direction", "6to4")]),
            Some(0.0)
        );
        assert_eq!(
            v("translator_packets_total", &[("direction", "4to6")]),
            Some(10.0)
        );
        assert_eq!(
            v("translator_packets_total", &[("direction", "hairpin")]),
            Some(20.0)
        );
        for (i, e) in Event::ALL.iter().enumerate() {
            assert_eq!(
                v("translator_events_total", &[("event", e.name())]),
                Some(i as f64 * 10.0)
            );
        }
        for r in DropReason::ALL {
            let want = if r == DropReason::NoSession { 7.0 } else { 0.0 };
            assert_eq!(
                v("translator_drops_total", &[("reason", r.name())]),
                Some(want),
                "{}",
                r.name()
            );
        }
        assert_eq!(
            v(
                "translator_sessions",
                &[("protocol", "tcp"), ("state", "established")]
            ),
            Some(3.0)
        );
        assert_eq!(
            v(
                "translator_sessions",
                &[("protocol", "icmp"), ("state", "icmp")]
            ),
            Some(0.0)
        );
        assert_eq!(v("translator_bindings", &[]), Some(5.0));
        for p in ["tcp", "udp", "icmp"] {
            assert_eq!(
                v("translator_port_blocks_in_use", &[("protocol", p)]),
                Some(1.0)
            );
            assert_eq!(
                v("translator_port_blocks_total", &[("protocol", p)]),
                Some(3968.0)
            );
        }
        assert_eq!(
            v(
                "translator_slow_path_total",
                &[("counter", "slow-path-received")]
            ),
            Some(4.0)
        );
        assert_eq!(
            v("translator_dns64_total", &[("counter", "queries")]),
            Some(9.0)
        );
        assert_eq!(
            v("translator_dns64_total", &[("counter", "odd\"name\\")]),
            Some(1.0)
        );
        assert_eq!(
            v("translator_ra_total", &[("counter", "ra-sent")]),
            Some(2.0)
        );
    }

    #[test]
    fn optional_sections_are_left_out() {
        let mut s = snapshot();
        s.dns64 = None;
        s.slow_path = None;
        s.ra = None;
        let text = render(&s);
        let (samples, types) = parse(&text);
        assert!(!types.contains_key("translator_dns64_total"));
        assert!(!types.contains_key("translator_ra_total"));
        assert!(!types.contains_key("translator_slow_path_total"));
        assert_eq!(
            samples
                .iter()
                .filter(|s| s.0 == "translator_drops_total")
                .count(),
            DropReason::ALL.len()
        );
    }

    #[test]
    fn controller_json_sections() {
        let dir = std::env::temp_dir().join(format!("translator-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("controller.json");
        std::fs::write(
            &path,
            r#"{"slow_path":{"slow-path-received":3,"neg":-1},"dns64":{"queries":2},"x":1}"#,
        )
        .expect("write");
        let (slow, dns, ra) = read_controller(&path);
        assert_eq!(
            slow,
            Some(BTreeMap::from([("slow-path-received".to_owned(), 3)]))
        );
        assert_eq!(dns, Some(BTreeMap::from([("queries".to_owned(), 2)])));
        assert_eq!(ra, None);
        std::fs::write(&path, r#"{"slow_path":{}}"#).expect("write");
        assert_eq!(read_controller(&path), (Some(BTreeMap::new()), None, None));
        std::fs::write(&path, "not json").expect("write");
        assert_eq!(read_controller(&path), (None, None, None));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(read_controller(&path), (None, None, None));
    }

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        let server = tokio::spawn(serve_on(
            listener,
            Box::new(move || {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(render(&snapshot()))
            }),
        ));

        let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = r.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Type: {CONTENT_TYPE}")));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let (samples, _) = parse(body);
        assert!(samples.len() > DropReason::ALL.len());

        // A second scrape within CACHE_FOR reuses the rendering.
        let r = get(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);

        let r = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"));
        let r = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        let r = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        let r = get(addr, "garbage\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
        server.abort();
    }

    #[tokio::test]
    async fn scrape_error_is_503() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve_on(
            listener,
            Box::new(|| Err(anyhow!("opening pinned map: no such file"))),
        ));
        let r = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(r.contains("no such file"));
        server.abort();
    }

    #[tokio::test]
    async fn bind_error_names_setting() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("addr");
        let cfg = Arc::new(
            Config::parse(
                "[interfaces]\nipv6 = \"a\"\nipv4 = \"b\"\n[nat64]\nclients = [\"2001:db8:1::/64\"]\n\
                 [pool]\naddresses = [\"192.0.2.1\"]\n",
            )
            .expect("config"),
        );
        let e = serve(
            addr,
            PathBuf::from("/nonexistent"),
            PathBuf::from("/nonexistent"),
            cfg,
        )
        .await
        .expect_err("address in use");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("metrics.listen") && msg.contains(&addr.to_string()),
            "{msg}"
        );
    }

    /// Reads a live instance (root; `TRANSLATOR_METRICS_INSTANCE=name cargo test -p
    /// translator-user --lib metrics::tests::live -- --ignored`).
    #[test]
    #[ignore = "needs a running instance named by TRANSLATOR_METRICS_INSTANCE"]
    fn live() {
        let name =
            std::env::var("TRANSLATOR_METRICS_INSTANCE").unwrap_or_else(|_| "default".into());
        let inst = crate::dataplane::Instance::new(&name);
        let cfg = inst
            .read_state()
            .and_then(|s| s.config())
            .expect("instance state");
        let snap = collect(&inst.pins, &inst.run, &cfg).expect("collect");
        let text = render(&snap);
        let (samples, _) = parse(&text);
        assert!(samples.len() >= Event::ALL.len() + DropReason::ALL.len());
        print!("{text}");
    }
}
