//! Unit tests of the slow path's translation, parsers and reassembly.

use translator_common::checksum::{finish, sum_bytes};

use super::translate::*;
use super::*;

fn params() -> Params {
    Params {
        prefix: u128::from("2001:db8:64::".parse::<Ipv6Addr>().expect("prefix")),
        prefix_len: 96,
        ipv6_mtu: 1280,
        ipv4_mtu: 1500,
    }
}

fn full_checksum_ok(pseudo: &[u8], seg: &[u8]) -> bool {
    super::translate::l4_checksum(pseudo, seg) == 0
}

#[test]
fn icmp_echo_4to6_fragments_to_fit_1280() {
    let mut seg = vec![0u8; 3008];
    seg[0] = 0; // echo reply
    seg[4..6].copy_from_slice(&1024u16.to_be_bytes());
    for (i, b) in seg.iter_mut().enumerate().skip(8) {
        *b = i as u8;
    }
    let c = finish(sum_bytes(&seg));
    seg[2..4].copy_from_slice(&c.to_ne_bytes());
    let client: Ipv6Addr = "2001:db8:1::2".parse().expect("client");
    let out = whole_4to6(
        &params(),
        Ipv4Addr::new(192, 0, 2, 2),
        Ipv4Addr::new(192, 0, 2, 1),
        IPPROTO_ICMP,
        64,
        0,
        77,
        seg.clone(),
        (client, 4660),
    )
    .expect("translated");
    let Output::V6(frags) = out else {
        panic!("expected IPv6 output")
    };
    assert_eq!(frags.len(), 3);
    let mut joined = Vec::new();
    for (i, f) in frags.iter().enumerate() {
        assert!(f.len() <= 1280, "fragment {i} is {} bytes", f.len());
        assert_eq!(f[6], 44);
        assert_eq!(u32::from_be_bytes([f[44], f[45], f[46], f[47]]), 77);
        let word = be16(f, 42);
        assert_eq!(usize::from(word >> 3) * 8, joined.len());
        assert_eq!(word & 1 == 1, i < 2);
        joined.extend(&f[48..]);
    }
    assert_eq!(joined.len(), 3008);
    assert_eq!(joined[0], 129);
    assert_eq!(be16(&joined, 4), 4660);
    assert_eq!(&joined[8..], &seg[8..]);
    let src6: Ipv6Addr = "2001:db8:64::c000:202".parse().expect("src");
    assert!(full_checksum_ok(
        &pseudo6(src6, client, IPPROTO_ICMPV6, joined.len()),
        &joined
    ));
}

#[test]
fn icmpv6_echo_6to4_fragments_to_fit_mtu() {
    let client: Ipv6Addr = "2001:db8:1::2".parse().expect("client");
    let dst6: Ipv6Addr = "2001:db8:64::c000:202".parse().expect("dst");
    let mut seg = vec![0u8; 3008];
    seg[0] = 128;
    seg[4..6].copy_from_slice(&4660u16.to_be_bytes());
    let c = finish(sum_bytes(&pseudo6(client, dst6, IPPROTO_ICMPV6, seg.len())) + sum_bytes(&seg));
    seg[2..4].copy_from_slice(&c.to_ne_bytes());
    let out = whole_6to4(
        &params(),
        client,
        dst6,
        IPPROTO_ICMPV6,
        64,
        0,
        9,
        seg,
        (Ipv4Addr::new(192, 0, 2, 1), 1024),
    )
    .expect("translated");
    let Output::V4(frags) = out else {
        panic!("expected IPv4 output")
    };
    assert_eq!(frags.len(), 3);
    let mut joined = Vec::new();
    for (i, f) in frags.iter().enumerate() {
        assert!(f.len() <= 1500);
        assert!(fold_ok(&f[..20]), "header checksum of fragment {i}");
        assert_eq!(be16(f, 4), 9);
        let fw = be16(f, 6);
        assert_eq!(usize::from(fw & 0x1fff) * 8, joined.len());
        assert_eq!(fw & 0x2000 != 0, i < 2);
        assert_eq!(fw & 0x4000, 0);
        assert_eq!(f[8], 63);
        joined.extend(&f[20..]);
    }
    assert_eq!(joined[0], 8);
    assert_eq!(be16(&joined, 4), 1024);
    assert!(full_checksum_ok(&[], &joined));
}

fn fold_ok(h: &[u8]) -> bool {
    finish(sum_bytes(h)) == 0
}

/// A small deterministic generator for the randomized tests (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Random and mutated input through every parser of the slow path: errors are fine,
/// panics (out-of-bounds reads, overflows) are not.
#[test]
fn parsers_survive_random_input() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let p = params();
    let client: Ipv6Addr = "2001:db8:1::2".parse().expect("client");
    let dst6: Ipv6Addr = "2001:db8:64::c000:202".parse().expect("dst");
    for _ in 0..20_000 {
        let buf = rng.bytes(200);
        let nh = [0u8, 43, 44, 60, 6, 17, 58][(rng.next() % 7) as usize];
        let off = (rng.next() % 64) as usize;
        let _ = skip_extensions(&buf, nh, off, rng.next().is_multiple_of(2));
        let proto6 = [6u8, 17, 58, 0][(rng.next() % 4) as usize];
        let _ = whole_6to4(
            &p,
            client,
            dst6,
            proto6,
            64,
            0,
            1,
            buf.clone(),
            (Ipv4Addr::new(192, 0, 2, 1), 1024),
        );
        let proto4 = [6u8, 17, 1, 0][(rng.next() % 4) as usize];
        let _ = whole_4to6(
            &p,
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(192, 0, 2, 1),
            proto4,
            64,
            0,
            1,
            buf.clone(),
            (client, 40000),
        );
        let mut pieces = Pieces {
            first_seen: Instant::now(),
            parts: Vec::new(),
            proto: 17,
            ttl: 64,
            tos: 0,
            bytes: 0,
        };
        for _ in 0..(rng.next() % 6) {
            let off = (rng.next() % 9000) as usize & !7;
            pieces
                .parts
                .push((off, rng.bytes(64), rng.next().is_multiple_of(2), Vec::new()));
        }
        let _ = pieces.complete();
        let mtu = 68 + (rng.next() % 2000) as usize;
        let _ = fragment4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            17,
            64,
            0,
            1,
            0,
            false,
            &buf,
            mtu,
        );
        let _ = fragment6(client, dst6, 17, 64, 0, 1, 0, false, &buf, 1280 + mtu);
    }
}

#[test]
fn extension_headers_are_walked() {
    // Hop-by-hop (8 bytes), destination options (16 bytes), then UDP.
    let mut p = vec![0u8; 40];
    p.extend([60, 0, 1, 4, 0, 0, 0, 0]);
    p.extend([17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    p.extend([0u8; 8]);
    assert_eq!(skip_extensions(&p, 0, 40, true), Ok((17, 64)));
    // Routing header with segments left: refused.
    let mut r = vec![0u8; 40];
    r.extend([17, 0, 0, 1, 0, 0, 0, 0]);
    assert!(skip_extensions(&r, 43, 40, true).is_err());
    r[43] = 0;
    assert_eq!(skip_extensions(&r, 43, 40, true), Ok((17, 48)));
    // A fragment header stops the walk, or is refused inside a fragmentable part.
    assert_eq!(skip_extensions(&r, 44, 40, true), Ok((44, 40)));
    assert!(skip_extensions(&r, 44, 40, false).is_err());
    // Truncated.
    assert!(skip_extensions(&p[..50], 0, 40, true).is_err());
}

#[test]
fn reassembly_out_of_order_with_overlap() {
    let mut p = Pieces {
        first_seen: Instant::now(),
        parts: Vec::new(),
        proto: 17,
        ttl: 64,
        tos: 0,
        bytes: 0,
    };
    let data: Vec<u8> = (0..40u8).collect();
    p.parts.push((24, data[24..].to_vec(), false, Vec::new()));
    assert_eq!(p.complete(), None);
    p.parts.push((0, data[..16].to_vec(), true, Vec::new()));
    assert_eq!(p.complete(), None);
    p.parts.push((8, data[8..32].to_vec(), true, Vec::new()));
    assert_eq!(p.complete(), Some(data));
}

/// A checksum that was wrong stays wrong by the same amount (RFC 1624 update, as the data
/// plane does), for TCP, UDP and ICMP echo both ways; an IPv4 UDP datagram without a checksum
/// gets one computed.
#[test]
fn bad_checksums_stay_bad_by_the_same_amount() {
    let client: Ipv6Addr = "2001:db8:1::2".parse().expect("client");
    let dst6: Ipv6Addr = "2001:db8:64::c000:202".parse().expect("dst");
    let (pool, server) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    // The sum over pseudo-header and segment of a valid checksum is 0xffff (its complement 0);
    // skewed by one it is 0xfffe, and stays so after translation.
    let verify = |pseudo: &[u8], seg: &[u8]| super::translate::l4_checksum(pseudo, seg);
    for (proto6, at) in [
        (IPPROTO_TCP, 16usize),
        (IPPROTO_UDP, 6),
        (IPPROTO_ICMPV6, 2),
    ] {
        let mut seg = vec![0u8; 60];
        for (i, b) in seg.iter_mut().enumerate() {
            *b = (i * 13) as u8;
        }
        if proto6 == IPPROTO_ICMPV6 {
            seg[0] = 128;
            seg[1] = 0;
        }
        if proto6 == IPPROTO_UDP {
            seg[4..6].copy_from_slice(&60u16.to_be_bytes());
        }
        seg[at..at + 2].copy_from_slice(&[0, 0]);
        let good = finish(sum_bytes(&pseudo6(client, dst6, proto6, 60)) + sum_bytes(&seg));
        let bad = !((!good) + 1);
        seg[at..at + 2].copy_from_slice(&bad.to_ne_bytes());
        let in6 = verify(&pseudo6(client, dst6, proto6, 60), &seg);
        let Output::V4(out) = whole_6to4(
            &params(),
            client,
            dst6,
            proto6,
            64,
            0,
            1,
            seg.clone(),
            (pool, 1024),
        )
        .expect("translated") else {
            panic!("expected IPv4")
        };
        let proto4 = if proto6 == IPPROTO_ICMPV6 {
            IPPROTO_ICMP
        } else {
            proto6
        };
        let seg4 = out[0][20..].to_vec();
        let pseudo = if proto4 == IPPROTO_ICMP {
            Vec::new()
        } else {
            pseudo4(pool, server, proto4, 60)
        };
        assert_eq!(verify(&pseudo, &seg4), in6, "6->4 protocol {proto6}");
        assert_ne!(in6, 0, "the input was meant to be bad");
        let Output::V6(back) = whole_4to6(
            &params(),
            server,
            pool,
            proto4,
            64,
            0,
            1,
            seg4,
            (client, 40000),
        )
        .expect("translated") else {
            panic!("expected IPv6")
        };
        let src6 = Ipv6Addr::from(rfc6052::embed(params().prefix, 96, u32::from(server)));
        assert_eq!(
            verify(&pseudo6(src6, client, proto6, 60), &back[0][40..]),
            in6,
            "4->6 protocol {proto4}"
        );
    }
    // IPv4 UDP without a checksum: IPv6 gets a valid one.
    let mut seg = vec![0u8; 20];
    seg[4..6].copy_from_slice(&20u16.to_be_bytes());
    let Output::V6(out) = whole_4to6(
        &params(),
        server,
        pool,
        IPPROTO_UDP,
        64,
        0,
        1,
        seg,
        (client, 40000),
    )
    .expect("translated") else {
        panic!("expected IPv6")
    };
    let src6 = Ipv6Addr::from(rfc6052::embed(params().prefix, 96, u32::from(server)));
    assert_eq!(
        verify(&pseudo6(src6, client, IPPROTO_UDP, 20), &out[0][40..]),
        0
    );
}
