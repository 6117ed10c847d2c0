//! Packet fixtures for the conformance fixes of issue 12, run against both entry points (XDP
//! and TC) like `dataplane.rs`, whole frames compared, expected frames built with the test
//! crate's own packet builder:
//! - ICMPv4 errors made from ICMPv6 ones are at most 576 bytes (RFC 1812 section 4.3.2.3,
//!   RFC 7915 section 5.2), also when the quoted packet is a fragment; ICMPv6 errors made from
//!   ICMPv4 ones at most 1280 (RFC 4443 section 2.4); quoted first fragments translated both
//!   ways;
//! - atomic fragments (RFC 6946, RFC 8021) translated as whole packets, the identification
//!   from the fragment header (RFC 7915 section 5.1.1), ICMPv6 errors in them too;
//! - a bad checksum stays bad by the same amount (RFC 1624 incremental updates), echo and
//!   errors alike;
//! - hairpinned ICMP echo, and ICMPv6 errors about hairpinned packets back through both
//!   mappings (RFC 6146 section 3.8).
//!
//! A second test runs one corrupted echo through the data plane and through the slow path's
//! translation and compares the bytes.

mod fixture_cases;
mod fixture_instance;

use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Result, ensure};
use fixture_cases::{Case, Expect4, Side, Target, run_cases, v4, v6};
use translator_tests::{
    fixture::{MAC_CLIENT, MAC_GW4, MAC_GW6, MAC_SERVER, MAC_STATIC, fixture_net},
    packets::*,
    require_root,
};

const CONFIG: &str = r#"
instance = "INSTANCE"
[interfaces]
ipv6 = "v6a"
ipv4 = "v4a"
[nat64]
prefix = "2001:db8:64::/96"
clients = ["2001:db8:1::/64"]
[pool]
addresses = ["192.0.2.1", "198.51.100.1"]
block_size = 64
max_blocks_per_client = 16
# Client B (2001:db8:1::10) is reachable at 198.51.100.1 (UDP 5000, ICMP identifier 3333);
# client A (2001:db8:1::2) has fixed mappings on 192.0.2.1 (UDP 40001 -> 6001, ICMP 1111 ->
# 3333), so that the hairpinned packets are known in advance.
[[static]]
protocol = "udp"
ipv6 = "2001:db8:1::10"
ipv6_port = 5000
ipv4 = "198.51.100.1"
ipv4_port = 5000
[[static]]
protocol = "udp"
ipv6 = "2001:db8:1::2"
ipv6_port = 40001
ipv4 = "192.0.2.1"
ipv4_port = 6001
[[static]]
protocol = "icmp"
ipv6 = "2001:db8:1::2"
ipv6_port = 1111
ipv4 = "192.0.2.1"
ipv4_port = 3333
[[static]]
protocol = "icmp"
ipv6 = "2001:db8:1::10"
ipv6_port = 2222
ipv4 = "198.51.100.1"
ipv4_port = 3333
"#;

/// A checksum field (as in the packet, big-endian) made wrong by one: the ones-complement sum
/// it stands for grows by one. An incremental update keeps that error; a checksum computed from
/// scratch would lose it.
fn skew(field: u16) -> u16 {
    let s = u32::from(!field) + 1;
    !(((s & 0xffff) + (s >> 16)) as u16)
}

/// `seg` with the checksum at `at` skewed.
fn skewed(mut seg: Vec<u8>, at: usize) -> Vec<u8> {
    let f = u16::from_be_bytes([seg[at], seg[at + 1]]);
    seg[at..at + 2].copy_from_slice(&skew(f).to_be_bytes());
    seg
}

/// Bytes 0, 1, 2, ... for payloads.
fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn frame6(dst: [u8; 6], src: [u8; 6], pkt: &[u8]) -> Vec<u8> {
    eth(dst, src, 0x86dd, pkt)
}

fn frame4(dst: [u8; 6], src: [u8; 6], pkt: &[u8]) -> Vec<u8> {
    eth(dst, src, 0x0800, pkt)
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<(Case, Option<Expect4>)> {
    let client = v6("2001:db8:1::2"); // client A
    let b = v6("2001:db8:1::10"); // client B
    let server6 = v6("2001:db8:64::c000:202");
    let pool = v4("192.0.2.1");
    let pool_b = v4("198.51.100.1");
    let pool6 = v6("2001:db8:64::c000:201"); // A's pool address inside the prefix
    let pool_b6 = v6("2001:db8:64::c633:6401"); // B's
    let server = v4("192.0.2.2");
    let data = b"conformance".to_vec();
    let (cport, pport) = (40000u16, 1024u16);
    let c6: IpAddr = client.into();
    let s6: IpAddr = server6.into();
    let p4: IpAddr = pool.into();
    let s4: IpAddr = server.into();

    let mut cases: Vec<(Case, Option<Expect4>)> = Vec::new();
    let mut push = |c: Case, e: Option<Expect4>| cases.push((c, e));
    let plain = |name, side, input, action, output, counter| Case {
        name,
        side,
        input,
        action,
        output: Some(output),
        counter,
        random_id: false,
    };

    // A UDP flow for the errors below to be about: client:40000 <-> server:53 via pool:1024.
    let d = data.clone();
    push(
        Case {
            name: "udp 6->4 first packet creates the session",
            side: Side::V6,
            input: frame6(
                MAC_GW6,
                MAC_CLIENT,
                &ipv6(client, server6, 17, 64, 0, &udp(c6, s6, cport, 53, &data)),
            ),
            action: XDP_REDIRECT,
            output: None,
            counter: "session-created",
            random_id: true,
        },
        Some(Box::new(move |id| {
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    17,
                    63,
                    0,
                    id,
                    false,
                    &udp(p4, s4, pport, 53, &d),
                ),
            )
        })),
    );

    // ---------------------------------------------------------------------------------------
    // 1. Length limits of translated errors.

    // A 1300-byte ICMPv6 port unreachable: its ICMPv4 error is cut to 576 bytes.
    let big = bytes(1204);
    let reply6 = ipv6(server6, client, 17, 63, 0, &udp(s6, c6, 53, cport, &big));
    let err6 = ipv6(
        client,
        server6,
        58,
        64,
        0,
        &icmp6_err(client, server6, 1, 4, 0, &reply6),
    );
    assert_eq!(err6.len(), 1300);
    let quoted4 = ipv4(
        server,
        pool,
        17,
        63,
        0,
        0,
        false,
        &udp(s4, p4, 53, pport, &big),
    );
    let cut4 = &quoted4[..576 - 28];
    push(
        plain(
            "1300-byte icmpv6 port unreachable -> 576-byte icmpv4 port unreachable",
            Side::V6,
            frame6(MAC_GW6, MAC_CLIENT, &err6),
            XDP_REDIRECT,
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(pool, server, 1, 63, 0, 0, false, &icmp4_err(3, 3, 0, cut4)),
            ),
            "icmp-error-translated",
        ),
        None,
    );
    // The same with a corrupted checksum: cut and translated, still wrong by one.
    let mut err6_bad = err6.clone();
    let f = u16::from_be_bytes([err6_bad[42], err6_bad[43]]);
    err6_bad[42..44].copy_from_slice(&skew(f).to_be_bytes());
    push(
        plain(
            "1300-byte icmpv6 error with a bad checksum -> 576-byte icmpv4 error, as bad",
            Side::V6,
            frame6(MAC_GW6, MAC_CLIENT, &err6_bad),
            XDP_REDIRECT,
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    1,
                    63,
                    0,
                    0,
                    false,
                    &skewed(icmp4_err(3, 3, 0, cut4), 2),
                ),
            ),
            "icmp-error-translated",
        ),
        None,
    );
    // The quoted packet a first fragment (M set): the quoted IPv4 header takes the fragment
    // header's identification (low 16 bits) and MF; still cut to 576.
    let whole6 = udp(s6, c6, 53, cport, &bytes(2000));
    let whole4 = udp(s4, p4, 53, pport, &bytes(2000));
    let first6 = frag6(
        server6,
        client,
        17,
        63,
        0xdead_beef,
        0,
        true,
        &whole6[..1200],
    );
    let first4 = frag4(server, pool, 17, 63, 0xbeef, 0, true, &whole4[..1200]);
    push(
        plain(
            "icmpv6 error quoting a first fragment -> icmpv4 error quoting an ipv4 fragment, 576 bytes",
            Side::V6,
            frame6(
                MAC_GW6,
                MAC_CLIENT,
                &ipv6(
                    client,
                    server6,
                    58,
                    64,
                    0,
                    &icmp6_err(client, server6, 1, 4, 0, &first6),
                ),
            ),
            XDP_REDIRECT,
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    1,
                    63,
                    0,
                    0,
                    false,
                    &icmp4_err(3, 3, 0, &first4[..576 - 28]),
                ),
            ),
            "icmp-error-translated",
        ),
        None,
    );
    // The other way: a 1428-byte ICMPv4 error becomes a 1280-byte ICMPv6 error.
    let big3 = bytes(1372);
    let sent4 = ipv4(
        pool,
        server,
        17,
        63,
        0,
        0x77,
        false,
        &udp(p4, s4, pport, 53, &big3),
    );
    let sent6 = ipv6(client, server6, 17, 63, 0, &udp(c6, s6, cport, 53, &big3));
    let err4 = ipv4(
        server,
        pool,
        1,
        64,
        0,
        30,
        false,
        &icmp4_err(3, 3, 0, &sent4),
    );
    assert_eq!(err4.len(), 1428);
    push(
        plain(
            "1428-byte icmpv4 port unreachable -> 1280-byte icmpv6 port unreachable",
            Side::V4,
            frame4(MAC_GW4, MAC_SERVER, &err4),
            XDP_REDIRECT,
            frame6(
                MAC_CLIENT,
                MAC_GW6,
                &ipv6(
                    server6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_err(server6, client, 1, 4, 0, &sent6[..1280 - 48]),
                ),
            ),
            "icmp-error-translated",
        ),
        None,
    );
    // An ICMPv4 error quoting a first fragment: the quoted IPv6 packet gets a fragment header
    // with the IPv4 identification and M set.
    let whole4b = udp(p4, s4, pport, 53, &bytes(500));
    let whole6b = udp(c6, s6, cport, 53, &bytes(500));
    push(
        plain(
            "icmpv4 error quoting a first fragment -> icmpv6 error quoting a fragment header",
            Side::V4,
            frame4(
                MAC_GW4,
                MAC_SERVER,
                &ipv4(
                    server,
                    pool,
                    1,
                    64,
                    0,
                    31,
                    false,
                    &icmp4_err(
                        3,
                        3,
                        0,
                        &frag4(pool, server, 17, 63, 0x4242, 0, true, &whole4b[..64]),
                    ),
                ),
            ),
            XDP_REDIRECT,
            frame6(
                MAC_CLIENT,
                MAC_GW6,
                &ipv6(
                    server6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_err(
                        server6,
                        client,
                        1,
                        4,
                        0,
                        &frag6(client, server6, 17, 63, 0x4242, 0, true, &whole6b[..64]),
                    ),
                ),
            ),
            "icmp-error-translated",
        ),
        None,
    );

    // ---------------------------------------------------------------------------------------
    // 2. Atomic fragments: whole packets, identification from the fragment header.

    push(
        plain(
            "udp in an atomic fragment 6->4: a whole packet, id from the fragment header",
            Side::V6,
            frame6(
                MAC_GW6,
                MAC_CLIENT,
                &frag6(
                    client,
                    server6,
                    17,
                    64,
                    0xabcd_1234,
                    0,
                    false,
                    &udp(c6, s6, cport, 53, &data),
                ),
            ),
            XDP_REDIRECT,
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    17,
                    63,
                    0,
                    0x1234,
                    false,
                    &udp(p4, s4, pport, 53, &data),
                ),
            ),
            "translated-6to4",
        ),
        None,
    );
    let (echo_id, pool_id) = (0x4320u16, 1024u16);
    push(
        plain(
            "icmpv6 echo in an atomic fragment 6->4: translated in the data plane",
            Side::V6,
            frame6(
                MAC_GW6,
                MAC_CLIENT,
                &frag6(
                    client,
                    server6,
                    58,
                    64,
                    0x5555_6666,
                    0,
                    false,
                    &icmp6_echo(client, server6, 128, echo_id, 9, &data),
                ),
            ),
            XDP_REDIRECT,
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    1,
                    63,
                    0,
                    0x6666,
                    false,
                    &icmp4_echo(8, pool_id, 9, &data),
                ),
            ),
            "session-created",
        ),
        None,
    );
    let reply6s = ipv6(server6, client, 17, 63, 0, &udp(s6, c6, 53, cport, &data));
    let quoted4s = ipv4(
        server,
        pool,
        17,
        63,
        0,
        0,
        false,
        &udp(s4, p4, 53, pport, &data),
    );
    push(
        plain(
            "icmpv6 error in an atomic fragment -> icmpv4 error, id from the fragment header",
            Side::V6,
            frame6(
                MAC_GW6,
                MAC_CLIENT,
                &frag6(
                    client,
                    server6,
                    58,
                    64,
                    0x0102_0304,
                    0,
                    false,
                    &icmp6_err(client, server6, 1, 4, 0, &reply6s),
                ),
            ),
            XDP_REDIRECT,
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    1,
                    63,
                    0,
                    0x0304,
                    false,
                    &icmp4_err(3, 3, 0, &quoted4s),
                ),
            ),
            "icmp-error-translated",
        ),
        None,
    );
    let hp_atomic = frag6(
        client,
        pool_b6,
        17,
        64,
        0x77,
        0,
        false,
        &udp(c6, pool_b6.into(), 40001, 5000, &data),
    );
    push(
        plain(
            "hairpinned atomic fragment -> slow path",
            Side::V6,
            frame6(MAC_GW6, MAC_CLIENT, &hp_atomic),
            XDP_PASS,
            eth(MAC_GW6, MAC_CLIENT, 0x88b5, &hp_atomic),
            "slow-path",
        ),
        None,
    );

    // ---------------------------------------------------------------------------------------
    // 3. A bad checksum stays bad by the same amount.

    let d = data.clone();
    push(
        Case {
            name: "icmpv6 echo with a bad checksum -> icmpv4 echo, as bad",
            side: Side::V6,
            input: frame6(
                MAC_GW6,
                MAC_CLIENT,
                &ipv6(
                    client,
                    server6,
                    58,
                    64,
                    0,
                    &skewed(icmp6_echo(client, server6, 128, echo_id, 10, &data), 2),
                ),
            ),
            action: XDP_REDIRECT,
            output: None,
            counter: "translated-6to4",
            random_id: true,
        },
        Some(Box::new(move |id| {
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    1,
                    63,
                    0,
                    id,
                    false,
                    &skewed(icmp4_echo(8, pool_id, 10, &d), 2),
                ),
            )
        })),
    );
    push(
        plain(
            "icmpv4 echo reply with a bad checksum -> icmpv6 echo reply, as bad",
            Side::V4,
            frame4(
                MAC_GW4,
                MAC_SERVER,
                &ipv4(
                    server,
                    pool,
                    1,
                    64,
                    0,
                    40,
                    false,
                    &skewed(icmp4_echo(0, pool_id, 10, &data), 2),
                ),
            ),
            XDP_REDIRECT,
            frame6(
                MAC_CLIENT,
                MAC_GW6,
                &ipv6(
                    server6,
                    client,
                    58,
                    63,
                    0,
                    &skewed(icmp6_echo(server6, client, 129, echo_id, 10, &data), 2),
                ),
            ),
            "translated-4to6",
        ),
        None,
    );
    let d = data.clone();
    push(
        Case {
            name: "udp 6->4 with a bad checksum -> as bad",
            side: Side::V6,
            input: frame6(
                MAC_GW6,
                MAC_CLIENT,
                &ipv6(
                    client,
                    server6,
                    17,
                    64,
                    0,
                    &skewed(udp(c6, s6, cport, 53, &data), 6),
                ),
            ),
            action: XDP_REDIRECT,
            output: None,
            counter: "translated-6to4",
            random_id: true,
        },
        Some(Box::new(move |id| {
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    17,
                    63,
                    0,
                    id,
                    false,
                    &skewed(udp(p4, s4, pport, 53, &d), 6),
                ),
            )
        })),
    );
    let sent4s = ipv4(
        pool,
        server,
        17,
        63,
        0,
        0x99,
        false,
        &udp(p4, s4, pport, 53, &data),
    );
    let sent6s = ipv6(client, server6, 17, 63, 0, &udp(c6, s6, cport, 53, &data));
    push(
        plain(
            "icmpv4 error with a bad checksum -> icmpv6 error, as bad",
            Side::V4,
            frame4(
                MAC_GW4,
                MAC_SERVER,
                &ipv4(
                    server,
                    pool,
                    1,
                    64,
                    0,
                    41,
                    false,
                    &skewed(icmp4_err(3, 3, 0, &sent4s), 2),
                ),
            ),
            XDP_REDIRECT,
            frame6(
                MAC_CLIENT,
                MAC_GW6,
                &ipv6(
                    server6,
                    client,
                    58,
                    63,
                    0,
                    &skewed(icmp6_err(server6, client, 1, 4, 0, &sent6s), 2),
                ),
            ),
            "icmp-error-translated",
        ),
        None,
    );
    push(
        plain(
            "icmpv6 error with a bad checksum -> icmpv4 error, as bad",
            Side::V6,
            frame6(
                MAC_GW6,
                MAC_CLIENT,
                &ipv6(
                    client,
                    server6,
                    58,
                    64,
                    0,
                    &skewed(icmp6_err(client, server6, 1, 4, 0, &reply6s), 2),
                ),
            ),
            XDP_REDIRECT,
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    1,
                    63,
                    0,
                    0,
                    false,
                    &skewed(icmp4_err(3, 3, 0, &quoted4s), 2),
                ),
            ),
            "icmp-error-translated",
        ),
        None,
    );

    // ---------------------------------------------------------------------------------------
    // 4. and 7. Hairpinning: A reaches B through B's mapping; echo, and B's errors back to A.

    let a_sent = ipv6(
        client,
        pool_b6,
        17,
        64,
        0,
        &udp(c6, pool_b6.into(), 40001, 5000, &data),
    );
    let b_got = ipv6(
        pool6,
        b,
        17,
        63,
        0,
        &udp(pool6.into(), b.into(), 6001, 5000, &data),
    );
    push(
        plain(
            "hairpinned udp: A -> B's mapping, B sees A's mapping",
            Side::V6,
            frame6(MAC_GW6, MAC_CLIENT, &a_sent),
            XDP_TX,
            frame6(MAC_STATIC, MAC_GW6, &b_got),
            "hairpinned",
        ),
        None,
    );
    // What A's packet looked like when A sent it, with the hop limit the error quotes.
    let a_quoted = ipv6(
        client,
        pool_b6,
        17,
        63,
        0,
        &udp(c6, pool_b6.into(), 40001, 5000, &data),
    );
    for (name, ty, code, rest) in [
        (
            "icmpv6 port unreachable from B about a hairpinned packet -> back to A",
            1u8,
            4u8,
            0u32,
        ),
        (
            "icmpv6 packet too big from B about a hairpinned packet -> back to A, same MTU",
            2,
            0,
            1400,
        ),
    ] {
        push(
            plain(
                name,
                Side::V6,
                frame6(
                    MAC_GW6,
                    MAC_STATIC,
                    &ipv6(
                        b,
                        pool6,
                        58,
                        64,
                        0,
                        &icmp6_err(b, pool6, ty, code, rest, &b_got),
                    ),
                ),
                XDP_TX,
                frame6(
                    MAC_CLIENT,
                    MAC_GW6,
                    &ipv6(
                        pool_b6,
                        client,
                        58,
                        63,
                        0,
                        &icmp6_err(pool_b6, client, ty, code, rest, &a_quoted),
                    ),
                ),
                "icmp-error-translated",
            ),
            None,
        );
    }
    push(
        plain(
            "hairpinned echo request: A (id 1111) -> B's mapping (id 3333), B sees id 2222",
            Side::V6,
            frame6(
                MAC_GW6,
                MAC_CLIENT,
                &ipv6(
                    client,
                    pool_b6,
                    58,
                    64,
                    0,
                    &icmp6_echo(client, pool_b6, 128, 1111, 1, &data),
                ),
            ),
            XDP_TX,
            frame6(
                MAC_STATIC,
                MAC_GW6,
                &ipv6(
                    pool6,
                    b,
                    58,
                    63,
                    0,
                    &icmp6_echo(pool6, b, 128, 2222, 1, &data),
                ),
            ),
            "hairpinned",
        ),
        None,
    );
    push(
        plain(
            "hairpinned echo reply: B (id 2222) -> back to A with id 1111",
            Side::V6,
            frame6(
                MAC_GW6,
                MAC_STATIC,
                &ipv6(
                    b,
                    pool6,
                    58,
                    64,
                    0,
                    &icmp6_echo(b, pool6, 129, 2222, 1, &data),
                ),
            ),
            XDP_TX,
            frame6(
                MAC_CLIENT,
                MAC_GW6,
                &ipv6(
                    pool_b6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_echo(pool_b6, client, 129, 1111, 1, &data),
                ),
            ),
            "hairpinned",
        ),
        None,
    );

    // ---------------------------------------------------------------------------------------
    // 6. TCP: only a SYN opens a session; inbound SYNs nothing lets in are held.

    let server2 = v4("192.0.2.3");
    let (tport, tpool) = (41000u16, 1024u16); // the client's first TCP binding
    let s2: IpAddr = server2.into();
    let pb4: IpAddr = pool_b.into();
    push(
        Case {
            name: "tcp 6->4 ack without a session: dropped, only a syn opens one",
            side: Side::V6,
            input: frame6(
                MAC_GW6,
                MAC_CLIENT,
                &ipv6(
                    client,
                    server6,
                    6,
                    64,
                    0,
                    &tcp(c6, s6, tport, 80, ACK, 1, 1),
                ),
            ),
            action: XDP_DROP,
            output: None,
            counter: "tcp-not-syn",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "tcp 6->4 syn opens the session (v6 init)",
            side: Side::V6,
            input: frame6(
                MAC_GW6,
                MAC_CLIENT,
                &ipv6(
                    client,
                    server6,
                    6,
                    64,
                    0,
                    &tcp(c6, s6, tport, 80, SYN, 100, 0),
                ),
            ),
            action: XDP_REDIRECT,
            output: None,
            counter: "session-created",
            random_id: true,
        },
        Some(Box::new(move |id| {
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    6,
                    63,
                    0,
                    id,
                    false,
                    &tcp(p4, s4, tpool, 80, SYN, 100, 0),
                ),
            )
        })),
    );
    push(
        plain(
            "tcp 4->6 syn-ack on it (established)",
            Side::V4,
            frame4(
                MAC_GW4,
                MAC_SERVER,
                &ipv4(
                    server,
                    pool,
                    6,
                    64,
                    0,
                    50,
                    true,
                    &tcp(s4, p4, 80, tpool, SYN | ACK, 500, 101),
                ),
            ),
            XDP_REDIRECT,
            frame6(
                MAC_CLIENT,
                MAC_GW6,
                &ipv6(
                    server6,
                    client,
                    6,
                    63,
                    0,
                    &tcp(s6, c6, 80, tport, SYN | ACK, 500, 101),
                ),
            ),
            "translated-4to6",
        ),
        None,
    );
    push(
        Case {
            name: "tcp 4->6 syn from a host the client never contacted (filtered): held",
            side: Side::V4,
            input: frame4(
                MAC_GW4,
                MAC_SERVER,
                &ipv4(
                    server2,
                    pool,
                    6,
                    64,
                    0,
                    51,
                    true,
                    &tcp(s2, p4, 443, tpool, SYN, 7, 0),
                ),
            ),
            action: XDP_DROP,
            output: None,
            counter: "inbound-syn-held",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "tcp 4->6 syn to a pool port nothing is bound to: held",
            side: Side::V4,
            input: frame4(
                MAC_GW4,
                MAC_SERVER,
                &ipv4(
                    server,
                    pool_b,
                    6,
                    64,
                    0,
                    52,
                    true,
                    &tcp(s4, pb4, 50001, 7000, SYN, 9, 0),
                ),
            ),
            action: XDP_DROP,
            output: None,
            counter: "inbound-syn-held",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "tcp 4->6 ack to a pool port nothing is bound to: no session",
            side: Side::V4,
            input: frame4(
                MAC_GW4,
                MAC_SERVER,
                &ipv4(
                    server,
                    pool_b,
                    6,
                    64,
                    0,
                    53,
                    true,
                    &tcp(s4, pb4, 50001, 7000, ACK, 9, 1),
                ),
            ),
            action: XDP_DROP,
            output: None,
            counter: "no-session",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "tcp 6->4 syn to the held syn's source: the held syn is forgotten",
            side: Side::V6,
            input: frame6(
                MAC_GW6,
                MAC_CLIENT,
                &ipv6(
                    client,
                    server6,
                    6,
                    64,
                    0,
                    &tcp(c6, s6, 41002, 50001, SYN, 300, 0),
                ),
            ),
            action: XDP_REDIRECT,
            output: None,
            counter: "inbound-syn-cancelled",
            random_id: true,
        },
        Some(Box::new(move |id| {
            frame4(
                MAC_SERVER,
                MAC_GW4,
                &ipv4(
                    pool,
                    server,
                    6,
                    63,
                    0,
                    id,
                    false,
                    &tcp(p4, s4, 1025, 50001, SYN, 300, 0),
                ),
            )
        })),
    );
    cases
}

/// The well-known prefix: a non-global IPv4 address must never appear under it (RFC 6052
/// section 3.1), neither as the destination of a client's packet nor as the source of what comes
/// from the IPv4 side (a new inbound session, an ICMPv4 error from a router).
const WKP_CONFIG: &str = r#"
instance = "INSTANCE"
[interfaces]
ipv6 = "v6a"
ipv4 = "v4a"
[nat64]
prefix = "64:ff9b::/96"
clients = ["2001:db8:1::/64"]
[pool]
addresses = ["192.0.2.1"]
[[static]]
protocol = "udp"
ipv6 = "2001:db8:1::10"
ipv6_port = 53
ipv4 = "192.0.2.1"
ipv4_port = 5353
"#;

fn wkp_cases() -> Vec<(Case, Option<Expect4>)> {
    let client = v6("2001:db8:1::2");
    let b = v6("2001:db8:1::10");
    let pool = v4("192.0.2.1");
    let p4: IpAddr = pool.into();
    let data = b"wkp".to_vec();
    let global = v4("8.8.8.8");
    let global6 = v6("64:ff9b::808:808");
    let mut cases: Vec<(Case, Option<Expect4>)> = Vec::new();
    let drop = |name, side, input, counter| Case {
        name,
        side,
        input,
        action: XDP_DROP,
        output: None,
        counter,
        random_id: false,
    };
    cases.push((
        drop(
            "client to 10.1.2.3 under 64:ff9b::/96: dropped",
            Side::V6,
            frame6(
                MAC_GW6,
                MAC_CLIENT,
                &ipv6(
                    client,
                    v6("64:ff9b::a01:203"),
                    17,
                    64,
                    0,
                    &udp(
                        client.into(),
                        v6("64:ff9b::a01:203").into(),
                        40000,
                        53,
                        &data,
                    ),
                ),
            ),
            "destination-not-allowed",
        ),
        None,
    ));
    for src in ["10.1.2.3", "198.18.0.1", "192.168.1.1"] {
        let s = v4(src);
        cases.push((
            drop(
                fixture_cases::leak(format!(
                    "{src} to a static mapping under 64:ff9b::/96: dropped"
                )),
                Side::V4,
                frame4(
                    MAC_GW4,
                    MAC_SERVER,
                    &ipv4(
                        s,
                        pool,
                        17,
                        64,
                        0,
                        1,
                        false,
                        &udp(s.into(), p4, 53, 5353, &data),
                    ),
                ),
                "source-not-allowed",
            ),
            None,
        ));
    }
    let quoted = ipv4(
        pool,
        global,
        17,
        63,
        0,
        0,
        false,
        &udp(p4, global.into(), 5353, 53, &data),
    );
    cases.push((
        drop(
            "icmpv4 error from a router at 10.0.0.254 under 64:ff9b::/96: dropped",
            Side::V4,
            frame4(
                MAC_GW4,
                MAC_SERVER,
                &ipv4(
                    v4("10.0.0.254"),
                    pool,
                    1,
                    64,
                    0,
                    2,
                    false,
                    &icmp4_err(11, 0, 0, &quoted),
                ),
            ),
            "source-not-allowed",
        ),
        None,
    ));
    cases.push((
        Case {
            name: "8.8.8.8 to the static mapping: translated from 64:ff9b::808:808",
            side: Side::V4,
            input: frame4(
                MAC_GW4,
                MAC_SERVER,
                &ipv4(
                    global,
                    pool,
                    17,
                    64,
                    0,
                    3,
                    false,
                    &udp(global.into(), p4, 53, 5353, &data),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(frame6(
                MAC_STATIC,
                MAC_GW6,
                &ipv6(
                    global6,
                    b,
                    17,
                    63,
                    0,
                    &udp(global6.into(), b.into(), 53, 53, &data),
                ),
            )),
            counter: "session-created",
            random_id: false,
        },
        None,
    ));
    cases
}

#[test]
fn well_known_prefix_fixtures() -> Result<()> {
    require_root()?;
    let ns = fixture_net()?;
    let cases = wkp_cases();
    run_cases(&ns, Target::Xdp, WKP_CONFIG, &cases)?;
    run_cases(&ns, Target::Tc, WKP_CONFIG, &cases)
}

#[test]
fn conformance_fixtures() -> Result<()> {
    require_root()?;
    let ns = fixture_net()?;
    let cases = cases();
    run_cases(&ns, Target::Xdp, CONFIG, &cases)?;
    run_cases(&ns, Target::Tc, CONFIG, &cases)
}

/// One rule for checksums in both paths: an ICMPv6 echo with a corrupted checksum gives the
/// same ICMPv4 message through the data plane (XDP program) and through the slow path's
/// translation (which handles fragmented echoes), wrong by the same amount as it came.
#[test]
fn slow_path_and_data_plane_give_the_same_bytes() -> Result<()> {
    require_root()?;
    let client: Ipv6Addr = fixture_instance::CLIENT;
    let server6 = fixture_instance::SERVER6;
    let pool = fixture_instance::POOL;
    let settings = "clients = [\"2001:db8:1::/64\"]\n[pool]\naddresses = [\"192.0.2.1\"]\n";
    fixture_instance::with_fixture_instance("cksum", settings, |fx| {
        let echo = skewed(icmp6_echo(client, server6, 128, 0x0606, 3, &bytes(200)), 2);
        let frame = frame6(
            MAC_GW6,
            MAC_CLIENT,
            &ipv6(client, server6, 58, 64, 0, &echo),
        );
        let out = fx.run(&frame, fx.v6if)?;
        ensure!(
            out.action == XDP_REDIRECT && out.packet.len() == 14 + 20 + echo.len(),
            "the data plane did not translate the echo: action {}, {} bytes",
            out.action,
            out.packet.len()
        );
        let fast = out.packet[34..].to_vec();
        let pool_id = u16::from_be_bytes([fast[4], fast[5]]);
        let params = translator::slowpath::Params {
            prefix: u128::from(fixture_instance::SERVER6) & !0xffff_ffff,
            prefix_len: 96,
            ipv6_mtu: 1280,
            ipv4_mtu: 1500,
        };
        let slow = match translator::slowpath::whole_6to4(
            &params,
            client,
            server6,
            58,
            64,
            0,
            0,
            echo.clone(),
            (pool, pool_id),
        )
        .map_err(anyhow::Error::msg)?
        {
            translator::slowpath::Output::V4(p) if p.len() == 1 => p[0][20..].to_vec(),
            other => anyhow::bail!("the slow path gave {other:?}"),
        };
        ensure!(
            fast == slow,
            "the two paths differ:\n  data plane {:02x?}\n  slow path  {:02x?}",
            &fast[..16],
            &slow[..16]
        );
        let expected = skewed(icmp4_echo(8, pool_id, 3, &bytes(200)), 2);
        ensure!(
            fast == expected,
            "the translated echo is not the expected one (wrong by one, as it came)"
        );
        Ok(())
    })
}
