//! DNS64 counters (spec point 12 and a few more), shared with `translator stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Event counters of the DNS64 server. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Dns64Stats {
    /// Queries received from clients (UDP and TCP, also refused and malformed ones).
    pub queries: AtomicU64,
    /// Queries received over TCP.
    pub tcp_queries: AtomicU64,
    /// Answers sent that hold synthesized AAAA records.
    pub synthesized: AtomicU64,
    /// AAAA records removed because they were in an excluded range.
    pub excluded_removed: AtomicU64,
    /// PTR queries answered with a CNAME into in-addr.arpa.
    pub ptr_synthesized: AtomicU64,
    /// Queries for ipv4only.arpa (and its reverse names) answered locally.
    pub ipv4only_answered: AtomicU64,
    /// Upstream exchanges that failed (network error, malformed or mismatched reply, REFUSED).
    pub upstream_errors: AtomicU64,
    /// Upstream exchanges that timed out.
    pub upstream_timeouts: AtomicU64,
    /// Upstream answers that came back truncated and were fetched again over TCP.
    pub upstream_tcp_retries: AtomicU64,
    /// Answers served from the cache.
    pub cache_hits: AtomicU64,
    /// Queries that were not in the cache.
    pub cache_misses: AtomicU64,
    /// Queries refused because the client is not in `allowed_clients`.
    pub refused: AtomicU64,
    /// Malformed queries answered with FORMERR.
    pub formerr: AtomicU64,
    /// Messages dropped without an answer (too short to answer, or not a query).
    pub dropped: AtomicU64,
    /// UDP answers truncated (TC set) to fit the client's size limit.
    pub truncated: AtomicU64,
    /// Answers with SERVFAIL because no upstream gave a usable answer.
    pub servfail: AtomicU64,
    /// UDP queries dropped because too many resolutions were already waiting for upstreams.
    pub overloaded: AtomicU64,
}

impl Dns64Stats {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// All counters by kebab-case name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        let all: [(&'static str, &AtomicU64); 17] = [
            ("queries", &self.queries),
            ("tcp-queries", &self.tcp_queries),
            ("synthesized", &self.synthesized),
            ("excluded-removed", &self.excluded_removed),
            ("ptr-synthesized", &self.ptr_synthesized),
            ("ipv4only-answered", &self.ipv4only_answered),
            ("upstream-errors", &self.upstream_errors),
            ("upstream-timeouts", &self.upstream_timeouts),
            ("upstream-tcp-retries", &self.upstream_tcp_retries),
            ("cache-hits", &self.cache_hits),
            ("cache-misses", &self.cache_misses),
            ("refused", &self.refused),
            ("formerr", &self.formerr),
            ("dropped", &self.dropped),
            ("truncated", &self.truncated),
            ("servfail", &self.servfail),
            ("overloaded", &self.overloaded),
        ];
        all.into_iter()
            .map(|(k, v)| (k, v.load(Ordering::Relaxed)))
            .collect()
    }
}
