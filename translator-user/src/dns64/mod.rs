//! Embedded DNS64 server (RFC 6147), configured by the `[dns64]` table.
//!
//! Behaviour: `docs/dns64.md` (prefixes from the NAT64 setting, exclusion, TTL rules, DNSSEC
//! policy, PTR and ipv4only.arpa answered locally, UDP and TCP, EDNS hop by hop, client ACL,
//! counters).
//!
//! Choices where the RFCs leave room:
//! - Answers never carry AA; RA is always set; AD only on data passed through from an
//!   upstream to a client that set DO or AD (never on synthesized or changed data).
//! - DO+CD queries get the upstream data as it is (also excluded AAAA records: the client
//!   validates), and no PTR synthesis.
//! - SERVFAIL and REFUSED from an upstream make us try the next one; a failed or silent
//!   upstream is tried last for 30 s. An upstream answering FORMERR is asked again without
//!   EDNS. Upstream queries carry our own EDNS (DO copied from the client, no client options).
//! - ipv4only.arpa answers have TTL 3600 and a local SOA for negative answers; the reverse
//!   names of 192.0.0.170/171 (in-addr.arpa, and ip6.arpa inside a prefix) give
//!   `PTR ipv4only.arpa.`
//! - A PTR CNAME has the TTL of the PTR behind it (or the SOA negative TTL), at most 600 s.
//! - Queries with more than one question, answer or authority records, or compression in
//!   the question get FORMERR; messages shorter than a header and responses are dropped.
//!
//! Layout:
//! - `config`: the TOML table, its defaults and validation.
//! - `wire`: raw reads and writes on the hot path (query header/question/OPT, answer bytes
//!   whose TTLs age in place, per-client rendering with truncation).
//! - `cache`: bounded sharded answer cache.
//! - `upstream`: UDP exchange with TCP retry on TC, fail-over between upstreams.
//! - `resolve`: the DNS64 rules, building changed answers with hickory-proto.
//! - `server`: listeners and the per-query path.

mod cache;
mod config;
mod resolve;
mod server;
mod stats;
mod upstream;
mod wire;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};

pub use config::{Dns64Config, Dns64ConfigError, Net, ValidDns64};
/// The wire-format library used by the server, for callers and tests that build messages.
pub use hickory_proto as proto;
pub use stats::Dns64Stats;

use resolve::Engine;

/// Binds every listen address (UDP and TCP; the error names the address that failed), then
/// serves forever. Returns at once when the configuration is not enabled.
pub async fn serve(cfg: ValidDns64, stats: Arc<Dns64Stats>) -> anyhow::Result<()> {
    if !cfg.enabled {
        return Ok(());
    }
    // After a reload the old server's listeners close as its tasks are dropped, which can take
    // a moment: an address still in use is tried again for a while.
    let mut tries = 0;
    let listeners = loop {
        match server::bind(&cfg.listen).await {
            Ok(l) => break l,
            Err(e)
                if tries < 50
                    && e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
                    }) =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    };
    log::info!(
        "dns64: serving on {:?}, upstreams {:?}, prefixes {:?}",
        listeners.local_addrs(),
        cfg.upstreams,
        cfg.prefixes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    server::run(listeners, Arc::new(Engine::new(cfg, stats))).await
}

/// What the server would answer to `name`/`qtype` (e.g. "AAAA", "A", "PTR"), as dig-like text.
/// Asks the configured upstreams; a fresh cache, so the TTLs are the upstream's.
pub async fn synthesize_once(cfg: &ValidDns64, name: &str, qtype: &str) -> anyhow::Result<String> {
    let rtype: RecordType = qtype
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| anyhow!("unknown record type {qtype:?}; try AAAA, A or PTR"))?;
    let mut qname =
        Name::from_utf8(name).with_context(|| format!("{name:?} is not a domain name"))?;
    qname.set_fqdn(true);
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(proto::op::Query::query(qname, rtype));
    let query = m.to_vec().context("encoding the query")?;
    let q = wire::parse_query(&query).map_err(|e| anyhow!("could not build the query: {e:?}"))?;
    let mut local = cfg.clone();
    local.cache_size = 0;
    let engine = Engine::new(local, Arc::new(Dns64Stats::default()));
    let mut out = Vec::new();
    engine.slow(&query, &q, false, &mut out).await;
    let answer = Message::from_vec(&out).context("decoding our own answer")?;
    Ok(dig_text(&answer))
}

/// A short dig-like rendering of a message.
pub fn dig_text(m: &Message) -> String {
    let h = &m.metadata;
    let mut flags = vec!["qr"];
    for (on, f) in [
        (h.authoritative, "aa"),
        (h.truncation, "tc"),
        (h.recursion_desired, "rd"),
        (h.recursion_available, "ra"),
        (h.authentic_data, "ad"),
        (h.checking_disabled, "cd"),
    ] {
        if on {
            flags.push(f);
        }
    }
    let mut s = String::new();
    let status = match u16::from(h.response_code) {
        0 => "NOERROR".to_owned(),
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        3 => "NXDOMAIN".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        n => format!("RCODE{n}"),
    };
    let _ = writeln!(s, ";; status: {status}, flags: {}", flags.join(" "));
    for q in &m.queries {
        let _ = writeln!(
            s,
            ";; QUESTION: {} {} {}",
            q.name(),
            q.query_class(),
            q.query_type()
        );
    }
    for (title, recs) in [("ANSWER", &m.answers), ("AUTHORITY", &m.authorities)] {
        if !recs.is_empty() {
            let _ = writeln!(s, ";; {title}:");
            for r in recs.iter() {
                let _ = writeln!(s, "{r}");
            }
        }
    }
    s
}

impl Dns64Config {
    /// Parses the body of a `[dns64]` table on its own (for tools and tests; the controller
    /// reads it as part of its whole configuration file).
    pub fn from_toml_table(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).context("parsing the [dns64] table")
    }
}

/// A server running on its own thread and runtime, stopped when dropped. For tests and tools
/// that have no runtime of their own.
pub struct Dns64Thread {
    addrs: Vec<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dns64Thread {
    /// Binds (the error names the address) and starts serving on a new thread.
    pub fn start(cfg: ValidDns64, stats: Arc<Dns64Stats>) -> anyhow::Result<Self> {
        if !cfg.enabled {
            bail!("dns64.enabled is false: nothing to start");
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the dns64 runtime")?;
        let listeners = rt.block_on(server::bind(&cfg.listen))?;
        let addrs = listeners.local_addrs();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let engine = Arc::new(Engine::new(cfg, stats));
        let thread = std::thread::Builder::new()
            .name("dns64".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        r = server::run(listeners, engine) => {
                            if let Err(e) = r {
                                log::error!("dns64: {e:#}");
                            }
                        }
                        _ = rx => {}
                    }
                });
                rt.shutdown_background();
            })
            .context("starting the dns64 thread")?;
        Ok(Self {
            addrs,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound addresses: UDP ones, then TCP ones (same ports).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

impl Drop for Dns64Thread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs a future to completion on a small runtime of its own (for tools and tests without
/// one, e.g. around [`synthesize_once`]).
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    Ok(rt.block_on(f))
}
