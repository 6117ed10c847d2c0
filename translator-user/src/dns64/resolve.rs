//! The DNS64 rules (spec points 2 to 9): what a question becomes, given the upstream answers.
//! Upstream answers that need no change are kept as the upstream sent them (bytes); answers
//! that change are built with hickory-proto.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

use super::cache::Cache;
use super::config::ValidDns64;
use super::stats::Dns64Stats;
use super::upstream::Upstreams;
use super::wire::{
    self, Answer, AnswerKind, CLASS_IN, QueryView, RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_A,
    TYPE_AAAA, TYPE_AXFR, TYPE_IXFR, TYPE_PTR, TYPE_RRSIG,
};

/// TTL cap of synthesized records when the AAAA answer had no SOA (RFC 6147 section 5.1.7).
const NO_SOA_TTL: u32 = 600;
/// TTL of the locally answered ipv4only.arpa records.
const IPV4ONLY_TTL: u32 = 3600;
/// The two well-known IPv4 addresses of ipv4only.arpa (RFC 7050).
const IPV4ONLY_ADDRS: [[u8; 4]; 2] = [[192, 0, 0, 170], [192, 0, 0, 171]];
const IPV4ONLY_NAME: &[u8] = b"\x08ipv4only\x04arpa\x00";
const IP6_ARPA: &[u8] = b"\x03ip6\x04arpa\x00";

/// The question being answered: the name as the client wrote it (wire form).
pub(crate) struct Question<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) lower: &'a [u8],
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
    pub(crate) dnssec_ok: bool,
    pub(crate) cd: bool,
}

impl<'a> Question<'a> {
    pub(crate) fn of(query: &'a [u8], q: &'a QueryView) -> Self {
        let lower = q.name_lower();
        Self {
            name: query.get(12..12 + lower.len()).unwrap_or(lower),
            lower,
            qtype: q.qtype,
            qclass: q.qclass,
            dnssec_ok: q.dnssec_ok(),
            cd: q.cd(),
        }
    }

    fn hickory_name(&self) -> Option<Name> {
        Name::from_bytes(self.name).ok()
    }

    fn key(&self, qtype: u16) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.lower.len() + 5);
        k.extend_from_slice(self.lower);
        k.extend_from_slice(&qtype.to_be_bytes());
        k.extend_from_slice(&self.qclass.to_be_bytes());
        k.push(u8::from(self.dnssec_ok) | (u8::from(self.cd) << 1));
        k
    }
}

/// Offsets of the labels of a wire-form name (without the root).
fn label_offsets(name: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut i = 0;
    while let Some(&l) = name.get(i) {
        if l == 0 || l & 0xc0 != 0 {
            break;
        }
        v.push(i);
        i += 1 + l as usize;
    }
    v
}

/// Whether `name` is `suffix` or below it (both lower-case wire form); `Some(true)` when equal.
fn under(name: &[u8], suffix: &[u8]) -> Option<bool> {
    if name == suffix {
        return Some(true);
    }
    label_offsets(name)
        .into_iter()
        .any(|o| &name[o..] == suffix)
        .then_some(false)
}

/// The address of a full 32-nibble ip6.arpa name.
fn ip6_arpa_addr(lower: &[u8]) -> Option<[u8; 16]> {
    if lower.len() != 64 + IP6_ARPA.len() || !lower.ends_with(IP6_ARPA) {
        return None;
    }
    let mut a = [0u8; 16];
    for i in 0..32 {
        if lower[2 * i] != 1 {
            return None;
        }
        let c = lower[2 * i + 1];
        let n = (c as char).to_digit(16)? as u8;
        // Label i is nibble 31 - i (least significant first).
        let nib = 31 - i;
        a[nib / 2] |= if nib % 2 == 0 { n << 4 } else { n };
    }
    Some(a)
}

/// The in-addr.arpa name of an IPv4 address, in wire form.
fn in_addr_arpa(v4: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::with_capacity(30);
    for b in v4.iter().rev() {
        let s = b.to_string();
        v.push(s.len() as u8);
        v.extend_from_slice(s.as_bytes());
    }
    v.extend_from_slice(b"\x07in-addr\x04arpa\x00");
    v
}

fn soa_negative_ttl(m: &Message) -> Option<u32> {
    m.authorities
        .iter()
        .filter_map(|r| match &r.data {
            RData::SOA(s) => Some(r.ttl.min(s.minimum)),
            _ => None,
        })
        .min()
}

fn is_rrsig(r: &Record) -> bool {
    r.record_type() == RecordType::RRSIG || u16::from(r.record_type()) == TYPE_RRSIG
}

/// The type an RRSIG covers (first two bytes of its RDATA).
fn rrsig_covers(r: &Record) -> Option<u16> {
    match &r.data {
        RData::Unknown { rdata, .. } => {
            let b = &rdata.anything;
            Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
        }
        _ => None,
    }
}

/// The server's shared state: configuration, cache, counters and upstreams.
pub(crate) struct Engine {
    pub(crate) cfg: ValidDns64,
    pub(crate) cache: Cache,
    pub(crate) stats: Arc<Dns64Stats>,
    /// Resolutions in progress (each may hold an upstream socket): bounded.
    pub(crate) inflight: Arc<tokio::sync::Semaphore>,
    /// Questions being resolved, with the askers waiting for the same answer.
    pending: std::sync::Mutex<std::collections::HashMap<Box<[u8]>, Vec<Waiter>>>,
    upstreams: Upstreams,
}

/// Removes a pending-resolution entry, also when the resolving future is dropped (its
/// waiters then see their channel closed and resolve on their own).
struct Pending<'a> {
    engine: &'a Engine,
    key: &'a [u8],
}

impl Pending<'_> {
    fn finish(self) -> Vec<Waiter> {
        let w = self.take();
        std::mem::forget(self);
        w
    }
    fn take(&self) -> Vec<Waiter> {
        let mut p = self
            .engine
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.remove(self.key).unwrap_or_default()
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

type Waiter = tokio::sync::oneshot::Sender<Arc<Answer>>;

/// Most resolutions waiting for upstreams at once; UDP queries beyond it are dropped.
const MAX_INFLIGHT: usize = 512;

impl Engine {
    pub(crate) fn new(cfg: ValidDns64, stats: Arc<Dns64Stats>) -> Self {
        let upstreams = Upstreams::new(
            cfg.upstreams.clone(),
            cfg.upstream_timeout,
            cfg.max_udp_payload,
            stats.clone(),
        );
        Self {
            cache: Cache::new(cfg.cache_size),
            cfg,
            stats,
            inflight: Arc::new(tokio::sync::Semaphore::new(MAX_INFLIGHT)),
            pending: std::sync::Mutex::new(std::collections::HashMap::new()),
            upstreams,
        }
    }

    /// Resolves a question that was not in the cache and caches the result.
    /// Identical questions asked while one is being resolved wait for that one.
    pub(crate) async fn resolve(&self, query: &[u8], q: &QueryView) -> Arc<Answer> {
        let question = Question::of(query, q);
        let waiter = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match p.get_mut(q.key()) {
                Some(waiters) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    p.insert(q.key().into(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiter {
            if let Ok(a) = rx.await {
                return a;
            }
            // The first asker went away: resolve on our own.
            return Arc::new(self.resolve_question(&question).await);
        }
        let guard = Pending {
            engine: self,
            key: q.key(),
        };
        let a = Arc::new(self.resolve_question(&question).await);
        self.cache.insert(q.key(), a.clone(), Instant::now());
        for w in guard.finish() {
            let _ = w.send(a.clone());
        }
        a
    }

    pub(crate) async fn resolve_question(&self, q: &Question<'_>) -> Answer {
        if q.qtype == TYPE_AXFR || q.qtype == TYPE_IXFR {
            return self.rcode_answer(q, ResponseCode::NotImp, AnswerKind::Plain);
        }
        if q.qclass == CLASS_IN {
            if let Some(exact) = under(q.lower, IPV4ONLY_NAME) {
                return self.ipv4only(q, exact);
            }
            if q.qtype == TYPE_PTR {
                if let Some(a) = self.local_ipv4only_ptr(q) {
                    return a;
                }
                // DO+CD: the client validates; nothing is synthesized (RFC 6147 5.5).
                if !(q.dnssec_ok && q.cd)
                    && let Some(addr) = ip6_arpa_addr(q.lower)
                    && let Some(a) = self.ptr6(q, addr).await
                {
                    return a;
                }
            }
            if q.qtype == TYPE_AAAA {
                return self.aaaa(q).await;
            }
        }
        let r = self
            .upstreams
            .query(q.name, q.qtype, q.qclass, q.cd, q.dnssec_ok)
            .await;
        self.pass(q, r)
    }

    /// An upstream answer as it is, or SERVFAIL.
    fn pass(&self, q: &Question<'_>, r: Result<Vec<u8>, super::upstream::UpstreamError>) -> Answer {
        match r {
            Ok(b) => Answer::from_wire(&b, AnswerKind::Plain, self.cfg.cache_max_ttl)
                .unwrap_or_else(|| {
                    Dns64Stats::bump(&self.stats.upstream_errors);
                    self.servfail(q)
                }),
            Err(_) => self.servfail(q),
        }
    }

    fn response(&self, q: &Question<'_>, name: Name, rcode: ResponseCode) -> Message {
        let mut m = Message::new(0, MessageType::Response, OpCode::Query);
        m.metadata.recursion_available = true;
        m.metadata.response_code = rcode;
        let mut query = Query::query(name, RecordType::from(q.qtype));
        query.set_query_class(DNSClass::from(q.qclass));
        m.add_query(query);
        m
    }

    fn encode(&self, m: &Message, kind: AnswerKind) -> Answer {
        Answer::from_message(m, kind, self.cfg.cache_max_ttl).unwrap_or_else(|| {
            log::warn!("dns64: could not encode an answer");
            self.bare(ResponseCode::ServFail, AnswerKind::ServFail)
        })
    }

    /// Header only, for when even the question cannot be written.
    fn bare(&self, rcode: ResponseCode, kind: AnswerKind) -> Answer {
        let mut wire = vec![0u8; 12];
        wire[3] = rcode.low() | 0x80;
        Answer {
            wire: wire.into_boxed_slice(),
            question_end: 12,
            ttl_offsets: Box::new([]),
            cache_ttl: None,
            kind,
        }
    }

    fn rcode_answer(&self, q: &Question<'_>, rcode: ResponseCode, kind: AnswerKind) -> Answer {
        match q.hickory_name() {
            Some(n) => {
                let mut a = self.encode(&self.response(q, n, rcode), kind);
                a.cache_ttl = None;
                a
            }
            None => self.bare(rcode, kind),
        }
    }

    fn servfail(&self, q: &Question<'_>) -> Answer {
        self.rcode_answer(q, ResponseCode::ServFail, AnswerKind::ServFail)
    }

    fn ipv4only_soa() -> Option<Record> {
        let apex = Name::from_ascii("ipv4only.arpa.").ok()?;
        let soa = SOA::new(
            Name::from_ascii("localhost.").ok()?,
            Name::from_ascii("nobody.invalid.").ok()?,
            1,
            3600,
            1200,
            604_800,
            IPV4ONLY_TTL,
        );
        Some(Record::from_rdata(apex, IPV4ONLY_TTL, RData::SOA(soa)))
    }

    /// ipv4only.arpa (RFC 8880 section 7.1), answered here and never forwarded.
    fn ipv4only(&self, q: &Question<'_>, exact: bool) -> Answer {
        let Some(name) = q.hickory_name() else {
            return self.servfail(q);
        };
        let rcode = if exact {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        let mut m = self.response(q, name.clone(), rcode);
        if exact && q.qtype == TYPE_A {
            for a in IPV4ONLY_ADDRS {
                m.add_answer(Record::from_rdata(
                    name.clone(),
                    IPV4ONLY_TTL,
                    RData::A(A(Ipv4Addr::from(a))),
                ));
            }
        } else if exact && q.qtype == TYPE_AAAA {
            for p in &self.cfg.prefixes {
                for a in IPV4ONLY_ADDRS {
                    let v6 = Ipv6Addr::from(p.embed(a));
                    m.add_answer(Record::from_rdata(
                        name.clone(),
                        IPV4ONLY_TTL,
                        RData::AAAA(AAAA(v6)),
                    ));
                }
            }
        }
        if m.answers.is_empty()
            && let Some(soa) = Self::ipv4only_soa()
        {
            m.add_authority(soa);
        }
        self.encode(&m, AnswerKind::Ipv4Only)
    }

    fn ipv4only_ptr(&self, q: &Question<'_>, name: Name, kind: AnswerKind) -> Option<Answer> {
        let target = Name::from_ascii("ipv4only.arpa.").ok()?;
        let mut m = self.response(q, name.clone(), ResponseCode::NoError);
        m.add_answer(Record::from_rdata(
            name,
            IPV4ONLY_TTL,
            RData::PTR(PTR(target)),
        ));
        Some(self.encode(&m, kind))
    }

    /// PTR for 170.0.0.192.in-addr.arpa and 171.0.0.192.in-addr.arpa.
    fn local_ipv4only_ptr(&self, q: &Question<'_>) -> Option<Answer> {
        if !IPV4ONLY_ADDRS.iter().any(|a| in_addr_arpa(*a) == q.lower) {
            return None;
        }
        self.ipv4only_ptr(q, q.hickory_name()?, AnswerKind::Ipv4Only)
    }

    /// PTR for an ip6.arpa name inside a prefix: CNAME to in-addr.arpa, plus the PTR behind it.
    async fn ptr6(&self, q: &Question<'_>, addr: [u8; 16]) -> Option<Answer> {
        let v4 = self.cfg.prefixes.iter().find_map(|p| p.extract(addr))?;
        let name = q.hickory_name()?;
        if IPV4ONLY_ADDRS.contains(&v4) {
            return self.ipv4only_ptr(q, name, AnswerKind::Ipv4Only);
        }
        let target_wire = in_addr_arpa(v4);
        let target = Name::from_bytes(&target_wire).ok()?;
        let r = self
            .upstreams
            .query(&target_wire, TYPE_PTR, CLASS_IN, q.cd, q.dnssec_ok)
            .await;
        let mut behind = Vec::new();
        let mut ttl = 60;
        if let Ok(b) = &r
            && let Ok(pm) = Message::from_vec(b)
        {
            let rc = wire::rcode(b);
            if rc == RCODE_NOERROR && !pm.answers.is_empty() {
                ttl = pm
                    .answers
                    .iter()
                    .map(|r| r.ttl)
                    .min()
                    .unwrap_or(NO_SOA_TTL)
                    .min(NO_SOA_TTL);
                behind = pm.answers;
            } else if rc == RCODE_NOERROR || rc == RCODE_NXDOMAIN {
                ttl = soa_negative_ttl(&pm).unwrap_or(NO_SOA_TTL).min(NO_SOA_TTL);
            }
        }
        let mut m = self.response(q, name.clone(), ResponseCode::NoError);
        m.add_answer(Record::from_rdata(name, ttl, RData::CNAME(CNAME(target))));
        if !q.dnssec_ok {
            behind.retain(|r| !is_rrsig(r));
        }
        m.add_answers(behind);
        Some(self.encode(&m, AnswerKind::PtrSynthesized))
    }

    /// AAAA with synthesis (spec points 2 to 7).
    async fn aaaa(&self, q: &Question<'_>) -> Answer {
        let up = self
            .upstreams
            .query(q.name, TYPE_AAAA, q.qclass, q.cd, q.dnssec_ok)
            .await;
        if q.dnssec_ok && q.cd {
            // The client validates: upstream data as it is, no synthesis (RFC 6147 5.5).
            return self.pass(q, up);
        }
        let mut soa_ttl = None;
        let mut signed = false;
        let mut aaaa_negative: Option<Message> = None;
        if let Ok(b) = &up {
            let rc = wire::rcode(b);
            if rc == RCODE_NXDOMAIN {
                return self.pass(q, up);
            }
            if rc == RCODE_NOERROR {
                match Message::from_vec(b) {
                    Ok(mut m) => {
                        let mut excluded = 0u64;
                        let mut usable = 0u64;
                        for r in &m.answers {
                            if let RData::AAAA(a) = &r.data {
                                if self.cfg.excluded(a.0.octets()) {
                                    excluded += 1;
                                } else {
                                    usable += 1;
                                }
                            }
                        }
                        if excluded == 0 && usable > 0 {
                            return self.pass(q, up);
                        }
                        if excluded > 0 {
                            Dns64Stats::add(&self.stats.excluded_removed, excluded);
                            let cfg = &self.cfg;
                            m.answers.retain(|r| match &r.data {
                                RData::AAAA(a) => !cfg.excluded(a.0.octets()),
                                _ => !(is_rrsig(r) && rrsig_covers(r) == Some(TYPE_AAAA)),
                            });
                            m.metadata.authentic_data = false;
                        }
                        if usable > 0 {
                            return self.encode(&m, AnswerKind::Plain);
                        }
                        soa_ttl = soa_negative_ttl(&m);
                        signed = m.answers.iter().chain(&m.authorities).any(is_rrsig);
                        aaaa_negative = Some(m);
                    }
                    Err(e) => {
                        log::debug!("dns64: undecodable upstream AAAA answer: {e}");
                        Dns64Stats::bump(&self.stats.upstream_errors);
                    }
                }
            }
        }
        let keep_signed = q.dnssec_ok && !self.cfg.break_dnssec;
        if keep_signed
            && signed
            && let Some(m) = &aaaa_negative
        {
            return self.encode(m, AnswerKind::Plain);
        }
        let ar = self
            .upstreams
            .query(q.name, TYPE_A, q.qclass, q.cd, q.dnssec_ok)
            .await;
        let Ok(ab) = ar else {
            return self.servfail(q);
        };
        // The A answer is what an A query would get: cache it for those too.
        if let Some(a) = Answer::from_wire(&ab, AnswerKind::Plain, self.cfg.cache_max_ttl) {
            self.cache
                .insert(&q.key(TYPE_A), Arc::new(a), Instant::now());
        }
        let Ok(am) = Message::from_vec(&ab) else {
            Dns64Stats::bump(&self.stats.upstream_errors);
            return self.servfail(q);
        };
        let Some(qname) = q.hickory_name() else {
            return self.servfail(q);
        };
        let a_records: Vec<(&Name, u32, [u8; 4])> = am
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some((&r.name, r.ttl, a.0.octets())),
                _ => None,
            })
            .collect();
        let chain = || {
            am.answers
                .iter()
                .filter(|r| !matches!(r.data, RData::A(_)) && !is_rrsig(r))
                .cloned()
        };
        if a_records.is_empty() {
            // No A: the A answer as it is (rcode, chain, authority), under the AAAA question.
            let mut m = self.response(q, qname, am.metadata.response_code);
            m.add_answers(chain());
            m.add_authorities(
                am.authorities
                    .iter()
                    .filter(|r| q.dnssec_ok || !is_rrsig(r))
                    .cloned(),
            );
            return self.encode(&m, AnswerKind::Plain);
        }
        if keep_signed && am.answers.iter().any(is_rrsig) {
            // Signed A data and a DNSSEC-aware client: synthesis would fail validation.
            return match &aaaa_negative {
                Some(m) => self.encode(m, AnswerKind::Plain),
                None => self.pass(q, up),
            };
        }
        let ttl_cap = soa_ttl.unwrap_or(NO_SOA_TTL);
        let mut m = self.response(q, qname, ResponseCode::NoError);
        m.add_answers(chain());
        let mut synthesized = 0;
        for (owner, ttl, v4) in a_records {
            for p in &self.cfg.prefixes {
                if !self.cfg.mappable(p, v4) {
                    continue;
                }
                let v6 = Ipv6Addr::from(p.embed(v4));
                m.add_answer(Record::from_rdata(
                    owner.clone(),
                    ttl.min(ttl_cap),
                    RData::AAAA(AAAA(v6)),
                ));
                synthesized += 1;
            }
        }
        if synthesized == 0 {
            // Nothing may be mapped: NODATA (with the AAAA answer's SOA when it had one).
            if let Some(n) = &aaaa_negative {
                m.add_authorities(n.authorities.iter().filter(|r| !is_rrsig(r)).cloned());
            }
            return self.encode(&m, AnswerKind::Plain);
        }
        self.encode(&m, AnswerKind::Synthesized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        let a: Ipv6Addr = "2001:db8:64::c000:20a".parse().expect("addr");
        let mut name = Vec::new();
        for b in a.octets().iter().rev() {
            for n in [b & 0xf, b >> 4] {
                name.push(1);
                name.push(format!("{n:x}").as_bytes()[0]);
            }
        }
        name.extend_from_slice(IP6_ARPA);
        assert_eq!(ip6_arpa_addr(&name), Some(a.octets()));
        assert_eq!(ip6_arpa_addr(&name[2..]), None);
        assert_eq!(
            in_addr_arpa([192, 0, 2, 10]),
            b"\x0210\x012\x010\x03192\x07in-addr\x04arpa\x00"
        );
    }

    #[test]
    fn ipv4only_names() {
        assert_eq!(under(IPV4ONLY_NAME, IPV4ONLY_NAME), Some(true));
        assert_eq!(
            under(b"\x01x\x08ipv4only\x04arpa\x00", IPV4ONLY_NAME),
            Some(false)
        );
        assert_eq!(under(b"\x09xipv4only\x04arpa\x00", IPV4ONLY_NAME), None);
        assert_eq!(under(b"\x04arpa\x00", IPV4ONLY_NAME), None);
    }
}
