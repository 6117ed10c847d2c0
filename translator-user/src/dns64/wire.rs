//! The few raw wire-format operations on the hot path: reading a client query's header,
//! question and OPT record without building a message, holding an answer as encoded bytes
//! whose TTLs can be aged in place, and writing it back for one client (ID, flags, question
//! case, OPT hop by hop, truncation). Building and reading whole messages goes through
//! hickory-proto (see `resolve.rs`).

use hickory_proto::op::Message;

/// Header flag bits (bytes 2..4 as a big-endian u16).
pub(crate) const QR: u16 = 0x8000;
pub(crate) const TC: u16 = 0x0200;
pub(crate) const RD: u16 = 0x0100;
pub(crate) const RA: u16 = 0x0080;
pub(crate) const AD: u16 = 0x0020;
pub(crate) const CD: u16 = 0x0010;

pub(crate) const RCODE_NOERROR: u8 = 0;
pub(crate) const RCODE_FORMERR: u8 = 1;
pub(crate) const RCODE_SERVFAIL: u8 = 2;
pub(crate) const RCODE_NXDOMAIN: u8 = 3;
pub(crate) const RCODE_NOTIMP: u8 = 4;
pub(crate) const RCODE_REFUSED: u8 = 5;
/// Extended RCODE 16 (BADVERS): upper 8 bits 1, lower 4 bits 0.
pub(crate) const EXT_BADVERS: u8 = 1;

pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_SOA: u16 = 6;
pub(crate) const TYPE_PTR: u16 = 12;
pub(crate) const TYPE_AAAA: u16 = 28;
pub(crate) const TYPE_OPT: u16 = 41;
pub(crate) const TYPE_RRSIG: u16 = 46;
pub(crate) const TYPE_IXFR: u16 = 251;
pub(crate) const TYPE_AXFR: u16 = 252;
pub(crate) const CLASS_IN: u16 = 1;

/// Longest cache key: a 255-byte name plus type, class and flags.
pub(crate) const KEY_MAX: usize = 255 + 5;

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        *b.get(i + 3)?,
    ]))
}

fn put_u16(b: &mut [u8], i: usize, v: u16) {
    if let Some(s) = b.get_mut(i..i + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// EDNS(0) information of a client query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientEdns {
    pub(crate) payload: u16,
    pub(crate) version: u8,
    pub(crate) dnssec_ok: bool,
}

/// A client query, read in place.
#[derive(Debug, Clone)]
pub(crate) struct QueryView {
    pub(crate) id: u16,
    pub(crate) flags: u16,
    /// End of the question (name, type, class), i.e. 12 + question length.
    pub(crate) question_end: usize,
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
    pub(crate) edns: Option<ClientEdns>,
    /// Lower-cased name in wire form, type, class, DO and CD bits.
    pub(crate) key: [u8; KEY_MAX],
    pub(crate) key_len: usize,
}

impl QueryView {
    pub(crate) fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }
    /// The question name in wire form, lower case.
    pub(crate) fn name_lower(&self) -> &[u8] {
        &self.key[..self.key_len - 5]
    }
    pub(crate) fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }
    pub(crate) fn cd(&self) -> bool {
        self.flags & CD != 0
    }
}

/// Why a query cannot be served normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// Not answerable (too short, or a response): drop silently.
    Drop,
    /// Answer with this RCODE and no question, echoing ID, opcode and RD.
    Rcode(u8),
}

/// Reads a client query. Only standard queries with exactly one uncompressed question and no
/// answer or authority records are accepted.
pub(crate) fn parse_query(b: &[u8]) -> Result<QueryView, QueryError> {
    if b.len() < 12 {
        return Err(QueryError::Drop);
    }
    let id = u16_at(b, 0).ok_or(QueryError::Drop)?;
    let flags = u16_at(b, 2).ok_or(QueryError::Drop)?;
    if flags & QR != 0 {
        return Err(QueryError::Drop);
    }
    let _ = id;
    if (flags >> 11) & 0xf != 0 {
        return Err(QueryError::Rcode(RCODE_NOTIMP));
    }
    let formerr = QueryError::Rcode(RCODE_FORMERR);
    let qd = u16_at(b, 4).ok_or(formerr)?;
    let an = u16_at(b, 6).ok_or(formerr)?;
    let ns = u16_at(b, 8).ok_or(formerr)?;
    let ar = u16_at(b, 10).ok_or(formerr)?;
    if qd != 1 || an != 0 || ns != 0 {
        return Err(formerr);
    }
    let mut key = [0u8; KEY_MAX];
    let mut i = 12;
    loop {
        let l = *b.get(i).ok_or(formerr)? as usize;
        if l & 0xc0 != 0 {
            return Err(formerr);
        }
        let end = i + 1 + l;
        let klen = end - 12;
        if klen > 255 || end > b.len() {
            return Err(formerr);
        }
        for (k, c) in key[i - 12..klen].iter_mut().zip(&b[i..end]) {
            *k = c.to_ascii_lowercase();
        }
        i = end;
        if l == 0 {
            break;
        }
    }
    let name_len = i - 12;
    let qtype = u16_at(b, i).ok_or(formerr)?;
    let qclass = u16_at(b, i + 2).ok_or(formerr)?;
    let question_end = i + 4;
    let mut edns = None;
    let mut p = question_end;
    for _ in 0..ar {
        let start = p;
        // Owner name: labels or a pointer.
        loop {
            let l = *b.get(p).ok_or(formerr)? as usize;
            if l & 0xc0 == 0xc0 {
                p += 2;
                break;
            }
            if l & 0xc0 != 0 {
                return Err(formerr);
            }
            p += 1 + l;
            if l == 0 {
                break;
            }
        }
        let rtype = u16_at(b, p).ok_or(formerr)?;
        let class = u16_at(b, p + 2).ok_or(formerr)?;
        let ttl = u32_at(b, p + 4).ok_or(formerr)?;
        let rdlen = u16_at(b, p + 8).ok_or(formerr)? as usize;
        p += 10 + rdlen;
        if p > b.len() {
            return Err(formerr);
        }
        if rtype == TYPE_OPT {
            if edns.is_some() || b.get(start) != Some(&0) || p - rdlen - 10 != start + 1 {
                return Err(formerr);
            }
            edns = Some(ClientEdns {
                payload: class.max(512),
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            });
        }
    }
    let mut flag_byte = 0u8;
    if edns.is_some_and(|e| e.dnssec_ok) {
        flag_byte |= 1;
    }
    if flags & CD != 0 {
        flag_byte |= 2;
    }
    key[name_len..name_len + 2].copy_from_slice(&qtype.to_be_bytes());
    key[name_len + 2..name_len + 4].copy_from_slice(&qclass.to_be_bytes());
    key[name_len + 4] = flag_byte;
    Ok(QueryView {
        id,
        flags,
        question_end,
        qtype,
        qclass,
        edns,
        key,
        key_len: name_len + 5,
    })
}

/// Writes a bare error answer (no question) for a query that could not be read.
pub(crate) fn error_reply(query: &[u8], rcode: u8, out: &mut Vec<u8>) {
    out.clear();
    let id = u16_at(query, 0).unwrap_or(0);
    let flags = u16_at(query, 2).unwrap_or(0);
    let f = QR | (flags & (0x7800 | RD | CD)) | RA | u16::from(rcode & 0xf);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&f.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
}

/// An answer as encoded bytes, ready to be written to any client that asked the same
/// question: ID zero, no OPT record, TTLs as received at `created`.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) wire: Box<[u8]>,
    pub(crate) question_end: usize,
    /// Offsets of every TTL field (OPT excluded).
    pub(crate) ttl_offsets: Box<[u32]>,
    /// How long this answer may be cached, if at all.
    pub(crate) cache_ttl: Option<u32>,
    /// What kind of answer this is, for the counters bumped each time it is sent.
    pub(crate) kind: AnswerKind,
}

/// What an answer counts as when it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum AnswerKind {
    #[default]
    Plain,
    Synthesized,
    PtrSynthesized,
    Ipv4Only,
    ServFail,
}

/// Facts about an encoded response, found by walking it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Walk {
    pub(crate) ttl_offsets: Vec<u32>,
    pub(crate) question_end: usize,
    /// Byte range of the OPT record, if any.
    pub(crate) opt: Option<(usize, usize)>,
    /// Whether the OPT record is the last record.
    pub(crate) opt_last: bool,
    pub(crate) min_ttl: Option<u32>,
    pub(crate) soa_negative_ttl: Option<u32>,
    pub(crate) answer_count: u16,
    pub(crate) signed: bool,
}

fn skip_name(b: &[u8], mut p: usize) -> Option<usize> {
    let mut n = 0;
    loop {
        let l = *b.get(p)? as usize;
        if l & 0xc0 == 0xc0 {
            b.get(p + 1)?;
            return Some(p + 2);
        }
        if l & 0xc0 != 0 {
            return None;
        }
        p += 1 + l;
        n += 1 + l;
        if l == 0 {
            return (n <= 255).then_some(p);
        }
    }
}

/// Walks an encoded response with exactly one question.
pub(crate) fn walk(b: &[u8]) -> Option<Walk> {
    if u16_at(b, 4)? != 1 {
        return None;
    }
    let an = u16_at(b, 6)?;
    let ns = u16_at(b, 8)?;
    let ar = u16_at(b, 10)?;
    let mut p = skip_name(b, 12)? + 4;
    if p > b.len() {
        return None;
    }
    let mut w = Walk {
        question_end: p,
        answer_count: an,
        ..Walk::default()
    };
    let total = u32::from(an) + u32::from(ns) + u32::from(ar);
    for idx in 0..total {
        let start = p;
        p = skip_name(b, p)?;
        let rtype = u16_at(b, p)?;
        let ttl = u32_at(b, p + 4)?;
        let rdlen = u16_at(b, p + 8)? as usize;
        let ttl_off = p + 4;
        let rdata = p + 10;
        p = rdata + rdlen;
        if p > b.len() {
            return None;
        }
        if rtype == TYPE_OPT {
            if w.opt.is_some() {
                return None;
            }
            w.opt = Some((start, p));
            w.opt_last = idx + 1 == total;
            continue;
        }
        w.ttl_offsets.push(u32::try_from(ttl_off).ok()?);
        let in_an_ns = idx < u32::from(an) + u32::from(ns);
        if in_an_ns {
            w.min_ttl = Some(w.min_ttl.map_or(ttl, |m| m.min(ttl)));
            if rtype == TYPE_RRSIG {
                w.signed = true;
            }
            if rtype == TYPE_SOA && idx >= u32::from(an) && rdlen >= 20 {
                let minimum = u32_at(b, p - 4)?;
                let neg = ttl.min(minimum);
                w.soa_negative_ttl = Some(w.soa_negative_ttl.map_or(neg, |m| m.min(neg)));
            }
        }
    }
    Some(w)
}

/// The RCODE (low 4 bits) of an encoded message.
pub(crate) fn rcode(b: &[u8]) -> u8 {
    b.get(3).map_or(RCODE_SERVFAIL, |f| f & 0xf)
}

impl Answer {
    /// Makes an answer from an encoded response (ours or an upstream's). The OPT record is
    /// dropped (EDNS is hop by hop). `None` when the bytes cannot be walked.
    pub(crate) fn from_wire(b: &[u8], kind: AnswerKind, max_ttl: u32) -> Option<Self> {
        let w = walk(b)?;
        let mut wire: Vec<u8> = match w.opt {
            None => b.to_vec(),
            Some((s, e)) if w.opt_last => {
                let mut v = b[..s].to_vec();
                v.extend_from_slice(&b[e..]);
                let ar = u16_at(&v, 10)?.checked_sub(1)?;
                put_u16(&mut v, 10, ar);
                v
            }
            Some(_) => {
                // OPT in the middle: later names may point past it; re-encode without it.
                let mut m = Message::from_vec(b).ok()?;
                m.edns = None;
                m.additionals
                    .retain(|r| u16::from(r.record_type()) != TYPE_OPT);
                let v = m.to_vec().ok()?;
                return Self::from_wire(&v, kind, max_ttl);
            }
        };
        put_u16(&mut wire, 0, 0);
        let rc = rcode(&wire);
        let cache_ttl = if rc == RCODE_NOERROR || rc == RCODE_NXDOMAIN {
            let t = if w.answer_count > 0 {
                w.min_ttl
            } else {
                w.soa_negative_ttl
            };
            t.filter(|&t| t > 0).map(|t| t.min(max_ttl))
        } else {
            None
        };
        Some(Self {
            wire: wire.into_boxed_slice(),
            question_end: w.question_end,
            ttl_offsets: w.ttl_offsets.into_boxed_slice(),
            cache_ttl,
            kind,
        })
    }

    /// Encodes a message built with hickory-proto.
    pub(crate) fn from_message(m: &Message, kind: AnswerKind, max_ttl: u32) -> Option<Self> {
        let v = m.to_vec().ok()?;
        Self::from_wire(&v, kind, max_ttl)
    }

    /// Writes this answer for one client into `out`. `elapsed` seconds are taken off every
    /// TTL. `limit` is the most bytes the client can take (UDP), beyond which the answer is
    /// cut to the question with TC set. Returns whether it was truncated.
    pub(crate) fn render(
        &self,
        q: &QueryView,
        query: &[u8],
        elapsed: u32,
        limit: usize,
        our_payload: u16,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        out.extend_from_slice(&self.wire);
        put_u16(out, 0, q.id);
        let stored = u16_at(&self.wire, 2).unwrap_or(0);
        let mut f = QR | RA | (q.flags & (RD | CD)) | (stored & 0x000f);
        if stored & AD != 0 && (q.dnssec_ok() || q.flags & AD != 0) {
            f |= AD;
        }
        put_u16(out, 2, f);
        // The client's question, with its letter case.
        if self.question_end == q.question_end
            && let (Some(dst), Some(src)) = (
                out.get_mut(12..self.question_end),
                query.get(12..q.question_end),
            )
        {
            dst.copy_from_slice(src);
        }
        if elapsed > 0 {
            for &off in self.ttl_offsets.iter() {
                let i = off as usize;
                if let Some(t) = u32_at(out, i) {
                    out[i..i + 4].copy_from_slice(&t.saturating_sub(elapsed).to_be_bytes());
                }
            }
        }
        let opt_len = if q.edns.is_some() { 11 } else { 0 };
        let truncated = out.len() + opt_len > limit;
        if truncated {
            out.truncate(self.question_end);
            out[6..12].fill(0);
            put_u16(out, 2, f | TC);
        }
        if let Some(e) = q.edns {
            push_opt(out, our_payload, 0, e.dnssec_ok);
        }
        truncated
    }
}

/// Appends an OPT record and counts it in ARCOUNT.
pub(crate) fn push_opt(out: &mut Vec<u8>, payload: u16, ext_rcode: u8, dnssec_ok: bool) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&payload.to_be_bytes());
    out.push(ext_rcode);
    out.push(0);
    out.extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    let ar = u16_at(out, 10).unwrap_or(0).saturating_add(1);
    put_u16(out, 10, ar);
}

/// Writes an upstream query for the client's question (`name` in wire form as the client
/// sent it) with RD set, CD and DO as given, EDNS payload `payload` (no OPT when `None`).
pub(crate) fn upstream_query(
    id: u16,
    name: &[u8],
    qtype: u16,
    qclass: u16,
    cd: bool,
    dnssec_ok: bool,
    payload: Option<u16>,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + name.len() + 4 + 11);
    v.extend_from_slice(&id.to_be_bytes());
    let f = RD | if cd { CD } else { 0 };
    v.extend_from_slice(&f.to_be_bytes());
    v.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(name);
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&qclass.to_be_bytes());
    if let Some(p) = payload {
        push_opt(&mut v, p, 0, dnssec_ok);
    }
    v
}

/// Whether `resp` is the answer to `query` (same ID, a response, same question ignoring
/// letter case).
pub(crate) fn matches_query(query: &[u8], resp: &[u8]) -> bool {
    if resp.len() < 12 || resp.get(..2) != query.get(..2) {
        return false;
    }
    let Some(f) = u16_at(resp, 2) else {
        return false;
    };
    if f & QR == 0 || (f >> 11) & 0xf != 0 || u16_at(resp, 4) != Some(1) {
        return false;
    }
    let Some(qend) = skip_name(query, 12).map(|p| p + 4) else {
        return false;
    };
    match (resp.get(12..qend), query.get(12..qend)) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// Whether the header has TC set.
pub(crate) fn truncated(b: &[u8]) -> bool {
    u16_at(b, 2).is_some_and(|f| f & TC != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, edns: bool) -> Vec<u8> {
        let mut v = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(name);
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        if edns {
            push_opt(&mut v, 4096, 0, true);
        }
        v
    }

    #[test]
    fn parses_queries() {
        let q = query(b"\x03WwW\x07example\x00", TYPE_AAAA, true);
        let v = parse_query(&q).expect("valid query");
        assert_eq!(v.id, 0x1234);
        assert_eq!(v.qtype, TYPE_AAAA);
        assert_eq!(v.name_lower(), b"\x03www\x07example\x00");
        assert_eq!(v.edns.map(|e| (e.payload, e.dnssec_ok)), Some((4096, true)));
        assert!(v.dnssec_ok());
    }

    #[test]
    fn rejects_malformed() {
        let good = query(b"\x01a\x00", TYPE_A, false);
        assert_eq!(parse_query(&good[..5]).err(), Some(QueryError::Drop));
        for cut in 12..good.len() {
            assert_eq!(
                parse_query(&good[..cut]).err(),
                Some(QueryError::Rcode(RCODE_FORMERR)),
                "cut {cut}"
            );
        }
        let mut two = good.clone();
        two[5] = 2;
        assert_eq!(
            parse_query(&two).err(),
            Some(QueryError::Rcode(RCODE_FORMERR))
        );
        let mut resp = good.clone();
        resp[2] |= 0x80;
        assert_eq!(parse_query(&resp).err(), Some(QueryError::Drop));
        let mut ar = good.clone();
        ar[11] = 3;
        assert_eq!(
            parse_query(&ar).err(),
            Some(QueryError::Rcode(RCODE_FORMERR))
        );
        let mut ptr = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert_eq!(
            parse_query(&ptr).err(),
            Some(QueryError::Rcode(RCODE_FORMERR))
        );
        ptr[2] = 0x28; // opcode 5 (UPDATE)
        assert_eq!(
            parse_query(&ptr).err(),
            Some(QueryError::Rcode(RCODE_NOTIMP))
        );
        // A 300-byte name.
        let mut long = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            long.push(60);
            long.extend_from_slice(&[b'a'; 60]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(
            parse_query(&long).err(),
            Some(QueryError::Rcode(RCODE_FORMERR))
        );
    }

    /// An answer with `n` A records of TTL 300 for the question of `query(b"\x01a\x00", A)`.
    fn answer(n: usize) -> Answer {
        let mut v = vec![0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        for i in 0..n {
            v.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, i as u8]);
        }
        let an = u16::try_from(n).expect("count");
        put_u16(&mut v, 6, an);
        push_opt(&mut v, 1232, 0, false);
        let a = Answer::from_wire(&v, AnswerKind::Plain, 86_400).expect("walks");
        assert_eq!(a.cache_ttl, Some(300));
        assert_eq!(a.ttl_offsets.len(), n);
        a
    }

    #[test]
    fn renders_for_each_client() {
        let a = answer(3);
        let mut q = query(b"\x01A\x00", TYPE_A, false);
        q[3] |= 0x10; // CD
        let v = parse_query(&q).expect("query");
        let mut out = Vec::new();
        assert!(!a.render(&v, &q, 7, 512, 1232, &mut out));
        assert_eq!(&out[..2], &[0x12, 0x34], "client ID");
        assert_eq!(out[12..15], *b"\x01A\x00", "client letter case");
        assert_eq!(u16_at(&out, 2), Some(QR | RD | RA | CD), "flags");
        assert_eq!(
            u16_at(&out, 10),
            Some(0),
            "OPT dropped for a client without EDNS"
        );
        for &off in a.ttl_offsets.iter() {
            assert_eq!(u32_at(&out, off as usize), Some(293), "aged TTL");
        }
        // With EDNS: our OPT appended.
        let qe = query(b"\x01a\x00", TYPE_A, true);
        let ve = parse_query(&qe).expect("query");
        a.render(&ve, &qe, 0, 1232, 1232, &mut out);
        assert_eq!(u16_at(&out, 10), Some(1));
        assert_eq!(u16_at(&out, out.len() - 8), Some(1232), "our payload size");
        // Too big for 512 bytes: header and question, TC set.
        let big = answer(40);
        assert!(big.render(&v, &q, 0, 512, 1232, &mut out));
        assert_eq!(out.len(), 12 + 7);
        assert!(u16_at(&out, 2).is_some_and(|f| f & TC != 0));
        assert_eq!(&out[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn negative_answers_cache_for_the_soa_minimum() {
        let mut v = vec![0, 0, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0];
        v.extend_from_slice(b"\x01a\x00\x00\x1c\x00\x01");
        // SOA, TTL 900, MINIMUM 120: root names, serial/refresh/retry/expire/minimum.
        v.extend_from_slice(&[0xc0, 14, 0, 6, 0, 1, 0, 0, 3, 132, 0, 22, 0, 0]);
        for x in [1u32, 3600, 600, 86_400, 120] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        let a = Answer::from_wire(&v, AnswerKind::Plain, 86_400).expect("walks");
        assert_eq!(a.cache_ttl, Some(120));
        let capped = Answer::from_wire(&v, AnswerKind::Plain, 60).expect("walks");
        assert_eq!(capped.cache_ttl, Some(60));
        // SERVFAIL is never cached.
        v[3] = 0x82;
        assert_eq!(
            Answer::from_wire(&v, AnswerKind::Plain, 86_400)
                .expect("walks")
                .cache_ttl,
            None
        );
    }
}
