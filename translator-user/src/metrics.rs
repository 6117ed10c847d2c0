//! Prometheus metrics endpoint, off by default.
//!
//! `translator run` serves `GET /metrics` on `metrics.listen` when the setting is present.
//! Every scrape reads the pinned counters and the controller's `controller.json` (slow-path,
//! DNS64 and RA counters, written every tick), so the numbers are the ones `translator stats`
//! prints; the session, binding and port-block gauges are the counts of the controller's last
//! expiry pass, at most one expiry period old (`translator_gauges_age_seconds` says how old).
//! Scrapes less than [`CACHE_FOR`] apart share one reading, and only one reading runs at a
//! time.
//!
//! Three parts; exposition and HTTP never touch the maps, collection knows no format:
//! - [`collect`] reads a [`Snapshot`] (module `collect`). Cost: the pinned counters (one lookup
//!   per counter) and one small file, whatever the size of the tables: the gauges come from the
//!   expiry pass ([`PassGauges`]), which walks the tables anyway. Bytes per direction are the
//!   events `bytes-6to4` and `bytes-4to6`.
//! - [`Format`] writes a snapshot with `prometheus-client` (module `exposition`): the Prometheus
//!   text format 0.0.4 by default, OpenMetrics 1.0.0 text when the scraper's `Accept` header
//!   prefers it (Prometheus itself does). The crate writes every line; the one piece written
//!   here is that choice ([`Format::negotiate`], a loop over the `Accept` ranges): neither hyper
//!   nor `http` parses `Accept`, and the choice hangs on the `version` parameter (OpenMetrics
//!   0.0.1 or `text/plain;version=1.0.0` are not what this endpoint writes).
//! - [`serve`] answers HTTP with hyper (module `http`): HTTP/1.x, one request per connection,
//!   `GET` and `HEAD` on `/metrics`, 404 elsewhere, 503 with the reason when the maps cannot be
//!   read, a bounded request head, timeouts and a cap on concurrent connections.
//!
//! Nothing here is on a hot path: it runs once per scrape.

mod collect;
mod exposition;
mod http;

pub use collect::{Blocks, Named, PassGauges, Snapshot, collect};
pub use exposition::{Format, render};
pub use http::{CACHE_FOR, bind, serve, serve_bound};

#[cfg(test)]
mod tests {
    use std::{
        collections::{BTreeMap, HashSet},
        net::SocketAddr,
        path::PathBuf,
        sync::Arc,
    };

    use anyhow::anyhow;
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::{TcpListener, TcpStream},
    };
    use translator_common::counters::{DropReason, Event};

    use super::{collect::read_controller, http::serve_on, *};
    use crate::{
        config::{Config, Protocol},
        state::SessionState,
    };

    const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
                (Protocol::Tcp, SessionState::TcpTrans, 1),
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
            gauges_age: std::time::Duration::from_millis(2500),
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
                Ok(snapshot())
            }),
        ));

        let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = r.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Type: {CONTENT_TYPE}")));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let (samples, _) = parse(body);
        assert!(samples.len() > DropReason::ALL.len());

        // A second scrape within CACHE_FOR reuses the reading (hyper answers an HTTP/1.0
        // request in HTTP/1.0).
        let r = get(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"), "{r}");
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

    #[test]
    fn negotiation() {
        use Format::{OpenMetrics as Om, Prometheus as Text};
        // Prometheus 2 and 3 ask for OpenMetrics first.
        let prometheus2 = "application/openmetrics-text;version=1.0.0;q=0.5,\
                           application/openmetrics-text;version=0.0.1;q=0.4,\
                           text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let prometheus3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
                           application/openmetrics-text;version=0.0.1;q=0.4,\
                           text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
                           text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        for (accept, want) in [
            (&[][..], Text),
            (&["*/*"], Text),
            (&[prometheus2], Om),
            (&[prometheus3], Om),
            (&["application/openmetrics-text"], Om),
            (&["APPLICATION/OpenMetrics-Text; Version=\"1.0.0\""], Om),
            (&["text/plain; version=0.0.4"], Text),
            // Versions this endpoint does not write.
            (&["application/openmetrics-text; version=0.0.1"], Text),
            (
                &["application/openmetrics-text;version=2.0.0, text/plain;q=0.1"],
                Text,
            ),
            // Qualities, across several Accept headers too; a tie keeps the default.
            (
                &["text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"],
                Text,
            ),
            (
                &["application/openmetrics-text;q=0.5", "text/plain;q=0.6"],
                Text,
            ),
            (
                &["application/openmetrics-text;q=0.7", "text/plain;q=0.6"],
                Om,
            ),
            (&["application/openmetrics-text, text/plain"], Text),
            (&["application/*;q=0.8, text/*;q=0.5"], Om),
            // The most specific range decides: text/plain is refused, */* lets OpenMetrics in.
            (&["text/plain;q=0, */*"], Om),
            (
                &["text/plain;version=0.0.4;q=0.1, text/*;q=0.9, */*;q=0.5"],
                Om,
            ),
            // Malformed qualities void their range; nothing acceptable falls back to the text.
            (
                &["application/openmetrics-text;q=high, text/plain;q=0.1"],
                Text,
            ),
            (&["application/openmetrics-text;q=2"], Text),
            (&["application/json"], Text),
            (&[",;=,"], Text),
        ] {
            assert_eq!(
                Format::negotiate(accept.iter().copied()),
                want,
                "{accept:?}"
            );
        }
    }

    #[test]
    fn openmetrics_names_counters_without_total() {
        let text = Format::OpenMetrics
            .encode(Arc::new(snapshot()))
            .expect("encode");
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in [
            "# TYPE translator_packets counter\n",
            "translator_packets_total{direction=\"4to6\"} 10\n",
            "# TYPE translator_port_blocks_total gauge\n",
            "translator_bindings 5\n",
            "translator_dns64_total{counter=\"odd\\\"name\\\\\"} 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        assert!(!render(&snapshot()).contains("# EOF"));
    }

    /// Serves `snapshot()` on a free port.
    async fn server() -> (SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (
            addr,
            tokio::spawn(serve_on(listener, Box::new(|| Ok(snapshot())))),
        )
    }

    #[tokio::test]
    async fn http_negotiates_the_format() {
        let (addr, server) = server().await;
        let open = Format::OpenMetrics.content_type();
        let r = get(
            addr,
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        )
        .await;
        let (head, body) = r.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Type: {open}")), "{head}");
        assert!(body.ends_with("# EOF\n"), "{body}");

        let r = get(
            addr,
            "GET /metrics HTTP/1.1\r\nAccept: text/plain;version=0.0.4;q=0.9\r\n\
             Accept: application/openmetrics-text;q=0.5\r\n\r\n",
        )
        .await;
        let (head, body) = r.split_once("\r\n\r\n").expect("head");
        assert!(
            head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
            "{head}"
        );
        parse(body);

        let r = get(
            addr,
            "HEAD /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n",
        )
        .await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n")
                && r.contains(&format!("Content-Type: {open}"))
                && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn http_limits() {
        let (addr, server) = server().await;
        // A request head over 8 KiB (sent unfinished, and read by the server before it answers,
        // so that closing does not reset the connection under the answer).
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(8500));
        s.write_all(big.as_bytes()).await.expect("write");
        let mut r = String::new();
        s.read_to_string(&mut r).await.expect("read");
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");

        // 16 idle connections take every slot: the next one is closed without an answer.
        let mut idle = Vec::new();
        for _ in 0..16 {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut r = String::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_string(&mut r)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "a 17th connection was not closed at once: {read:?} {r:?}"
        );
        drop(idle);
        let mut served = false;
        for _ in 0..50 {
            if get(addr, "GET /metrics HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 200 OK\r\n")
            {
                served = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            served,
            "the slots are not given back when the idle clients leave"
        );
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
            Arc::default(),
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
        let snap = collect(&inst.pins, &inst.run, &cfg, None).expect("collect");
        let text = render(&snap);
        let (samples, _) = parse(&text);
        assert!(samples.len() >= Event::ALL.len() + DropReason::ALL.len());
        print!("{text}");
    }
}
