//! Data-plane packet fixtures run through `BPF_PROG_TEST_RUN`, against both entry points: the
//! XDP program (on a frame) and the TC program (on an skb), each on a fresh instance.
//!
//! Each case gives an input frame, the interface it arrives on, the expected verdict (as an XDP
//! action; the TC program's is derived from it), the expected output frame byte for byte, and
//! the counter that must move by one. Expected frames
//! are built here from RFC 7915 / RFC 6146 rules with this file's own packet builder and full
//! checksum computation (never from the data plane's output, and without the translator's
//! checksum code). Cases run in order on one loaded program: later cases use the sessions
//! earlier cases created (a reply after a request), as real traffic does.
//!
//! The program runs in a namespace made for the test with two veth pairs, fixed MAC addresses
//! and permanent neighbour entries, so the route lookups the program does give known answers.
//! The table harness is `fixture_cases`; `dataplane_conformance.rs` has the cases of issue 12.

mod fixture_cases;

use anyhow::Result;
use fixture_cases::{Case, Expect4, Side, Target, leak, run_cases, v4, v6};
use translator_tests::{
    fixture::{MAC_CLIENT, MAC_GW4, MAC_GW6, MAC_SERVER, MAC_SERVER2, MAC_STATIC, fixture_net},
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
addresses = ["192.0.2.1"]
block_size = 64
max_blocks_per_client = 16
[[static]]
protocol = "tcp"
ipv6 = "2001:db8:1::10"
ipv6_port = 80
ipv4 = "192.0.2.1"
ipv4_port = 8080
"#;

/// ICMP error type, code, and the translation: type, code, rest word (None: dropped).
type TableRow = (u8, u8, Option<(u8, u8, u32)>);

#[test]
fn dataplane_fixtures() -> Result<()> {
    require_root()?;
    let ns = fixture_net()?;

    let client = v6("2001:db8:1::2");
    let stranger = v6("2001:db8:2::2");
    let server6 = v6("2001:db8:64::c000:202"); // 192.0.2.2 under the prefix
    let server2_6 = v6("2001:db8:64::c000:203");
    let static6 = v6("2001:db8:1::10");
    let pool = v4("192.0.2.1");
    let server = v4("192.0.2.2");
    let server2 = v4("192.0.2.3");
    let data = b"fixture payload";
    // The first block handed out is 1024..1088 (blocks of 64 from 1024, FIFO); ports keep the
    // parity of the client's port.
    let (cport, pport) = (40000u16, 1024u16);

    let mut cases: Vec<(Case, Option<Expect4>)> = Vec::new();
    let mut push = |c: Case, e: Option<Expect4>| cases.push((c, e));

    // UDP out: new session, DF clear (small), random ID, TTL - 1, tclass -> TOS.
    let u6 = udp(client.into(), server6.into(), cport, 53, data);
    push(
        Case {
            name: "udp 6->4 first packet creates the session",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(client, server6, 17, 64, 0x28, &u6),
            ),
            action: XDP_REDIRECT,
            output: None,
            counter: "session-created",
            random_id: true,
        },
        Some(Box::new(move |id| {
            let u4 = udp(pool.into(), server.into(), pport, 53, data);
            eth(
                MAC_SERVER,
                MAC_GW4,
                0x0800,
                &ipv4(pool, server, 17, 63, 0x28, id, false, &u4),
            )
        })),
    );
    // UDP back.
    let r4 = udp(server.into(), pool.into(), 53, pport, b"reply");
    push(
        Case {
            name: "udp 4->6 reply on the session",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(server, pool, 17, 64, 0, 7, true, &r4),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    server6,
                    client,
                    17,
                    63,
                    0,
                    &udp(server6.into(), client.into(), 53, cport, b"reply"),
                ),
            )),
            counter: "translated-4to6",
            random_id: false,
        },
        None,
    );
    // Same client port, other destination: endpoint-independent mapping keeps the pool port.
    let u6b = udp(client.into(), server2_6.into(), cport, 123, data);
    push(
        Case {
            name: "udp 6->4 second destination reuses the mapping",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(client, server2_6, 17, 64, 0, &u6b),
            ),
            action: XDP_REDIRECT,
            output: None,
            counter: "session-created",
            random_id: true,
        },
        Some(Box::new(move |id| {
            let u4 = udp(pool.into(), server2.into(), pport, 123, data);
            eth(
                MAC_SERVER2,
                MAC_GW4,
                0x0800,
                &ipv4(pool, server2, 17, 63, 0, id, false, &u4),
            )
        })),
    );
    // Address-dependent filtering: another port of a contacted host is let in...
    let r4b = udp(server.into(), pool.into(), 5353, pport, b"other port");
    push(
        Case {
            name: "udp 4->6 from another port of a contacted host (address-dependent filtering)",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(server, pool, 17, 64, 0, 8, false, &r4b),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    server6,
                    client,
                    17,
                    63,
                    0,
                    &udp(server6.into(), client.into(), 5353, cport, b"other port"),
                ),
            )),
            counter: "session-created",
            random_id: false,
        },
        None,
    );
    // ...a host the client never contacted is not.
    let stranger4 = v4("192.0.2.9");
    let r4c = udp(stranger4.into(), pool.into(), 53, pport, b"unsolicited");
    push(
        Case {
            name: "udp 4->6 from an uncontacted host is filtered",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(stranger4, pool, 17, 64, 0, 9, false, &r4c),
            ),
            action: XDP_DROP,
            output: None,
            counter: "no-session",
            random_id: false,
        },
        None,
    );
    // IPv4 UDP without checksum: the IPv6 side gets a computed one.
    let r4z = udp_nocsum(53, pport, b"no checksum here");
    push(
        Case {
            name: "udp 4->6 zero checksum is computed",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(server, pool, 17, 64, 0, 10, false, &r4z),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    server6,
                    client,
                    17,
                    63,
                    0,
                    &udp(
                        server6.into(),
                        client.into(),
                        53,
                        cport,
                        b"no checksum here",
                    ),
                ),
            )),
            counter: "translated-4to6",
            random_id: false,
        },
        None,
    );
    // TCP SYN out and SYN-ACK back; large enough for DF (> 1260 bytes after translation).
    let tport = 51001u16; // odd: the pool port is odd too (parity kept)
    let syn = tcp(client.into(), server6.into(), tport, 80, SYN, 1000, 0);
    let mut big = syn.clone();
    big.extend(vec![0xab; 1300]);
    // Recompute the SYN's checksum over the padded segment (data after the header).
    let big = {
        let mut seg = big;
        seg[16..18].copy_from_slice(&[0, 0]);
        let len = seg.len();
        with_checksum(seg, 16, &pseudo(client.into(), server6.into(), 6, len))
    };
    push(
        Case {
            name: "tcp 6->4 SYN with data, large: DF set, ID 0",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(client, server6, 6, 64, 0, &big),
            ),
            action: XDP_REDIRECT,
            output: None,
            counter: "session-created",
            random_id: false,
        },
        Some(Box::new(move |_| {
            let mut seg = tcp(pool.into(), server.into(), 1025, 80, SYN, 1000, 0);
            seg.extend(vec![0xab; 1300]);
            seg[16..18].copy_from_slice(&[0, 0]);
            let len = seg.len();
            let seg = with_checksum(seg, 16, &pseudo(pool.into(), server.into(), 6, len));
            eth(
                MAC_SERVER,
                MAC_GW4,
                0x0800,
                &ipv4(pool, server, 6, 63, 0, 0, true, &seg),
            )
        })),
    );
    let synack = tcp(server.into(), pool.into(), 80, 1025, SYN | ACK, 5000, 1001);
    push(
        Case {
            name: "tcp 4->6 SYN-ACK",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(server, pool, 6, 64, 0x10, 11, true, &synack),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    server6,
                    client,
                    6,
                    63,
                    0x10,
                    &tcp(
                        server6.into(),
                        client.into(),
                        80,
                        tport,
                        SYN | ACK,
                        5000,
                        1001,
                    ),
                ),
            )),
            counter: "translated-4to6",
            random_id: false,
        },
        None,
    );
    // ICMP echo: identifier as the port; types 128 <-> 8, 0 <-> 129; pseudo-header removed/added.
    let (icmp_id, pool_id) = (0x1234u16, 1024u16); // each protocol has its own blocks
    let req6 = icmp6_echo(client, server6, 128, icmp_id, 1, data);
    push(
        Case {
            name: "icmp echo request 6->4",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(client, server6, 58, 64, 0, &req6),
            ),
            action: XDP_REDIRECT,
            output: None,
            counter: "session-created",
            random_id: true,
        },
        Some(Box::new(move |id| {
            eth(
                MAC_SERVER,
                MAC_GW4,
                0x0800,
                &ipv4(
                    pool,
                    server,
                    1,
                    63,
                    0,
                    id,
                    false,
                    &icmp4_echo(8, pool_id, 1, data),
                ),
            )
        })),
    );
    push(
        Case {
            name: "icmp echo reply 4->6",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    server,
                    pool,
                    1,
                    64,
                    0,
                    12,
                    false,
                    &icmp4_echo(0, pool_id, 1, data),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    server6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_echo(server6, client, 129, icmp_id, 1, data),
                ),
            )),
            counter: "translated-4to6",
            random_id: false,
        },
        None,
    );
    // Static mapping: inbound without prior traffic.
    let syn_in = tcp(server.into(), pool.into(), 50000, 8080, SYN, 77, 0);
    push(
        Case {
            name: "tcp 4->6 to a static mapping",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(server, pool, 6, 64, 0, 13, true, &syn_in),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_STATIC,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    server6,
                    static6,
                    6,
                    63,
                    0,
                    &tcp(server6.into(), static6.into(), 50000, 80, SYN, 77, 0),
                ),
            )),
            counter: "session-created",
            random_id: false,
        },
        None,
    );
    // Hop limit / TTL 1: dropped, answered with Time Exceeded (RFC 4443 / RFC 792) quoting the
    // packet, from the gateway's IPv6 address / the pool address, back out where it came from.
    let gw6 = v6("2001:db8:1::1");
    let ttl1_v6 = ipv6(client, server6, 17, 1, 0, &u6);
    push(
        Case {
            name: "ipv6 hop limit 1: time exceeded",
            side: Side::V6,
            input: eth(MAC_GW6, MAC_CLIENT, 0x86dd, &ttl1_v6),
            action: XDP_TX,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    gw6,
                    client,
                    58,
                    64,
                    0,
                    &icmp6_err(gw6, client, 3, 0, 0, &ttl1_v6),
                ),
            )),
            counter: "hop-limit-exceeded",
            random_id: false,
        },
        None,
    );
    let ttl1_v4 = ipv4(server, pool, 17, 1, 0, 14, false, &r4);
    push(
        Case {
            name: "ipv4 ttl 1: time exceeded",
            side: Side::V4,
            input: eth(MAC_GW4, MAC_SERVER, 0x0800, &ttl1_v4),
            action: XDP_TX,
            output: Some(eth(
                MAC_SERVER,
                MAC_GW4,
                0x0800,
                &ipv4(
                    pool,
                    server,
                    1,
                    64,
                    0,
                    0,
                    false,
                    &icmp4_err(11, 0, 0, &ttl1_v4),
                ),
            )),
            counter: "hop-limit-exceeded",
            random_id: false,
        },
        None,
    );
    // ICMP errors translated with the packet they quote (RFC 7915 4.2/4.3, 5.2/5.3).
    let sent4 = ipv4(
        pool,
        server,
        17,
        63,
        0,
        0x99,
        false,
        &udp(pool.into(), server.into(), pport, 53, data),
    );
    let quoted6 = ipv6(
        client,
        server6,
        17,
        63,
        0,
        &udp(client.into(), server6.into(), cport, 53, data),
    );
    push(
        Case {
            name: "icmpv4 port unreachable -> icmpv6 port unreachable",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    server,
                    pool,
                    1,
                    64,
                    0,
                    20,
                    false,
                    &icmp4_err(3, 3, 0, &sent4),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    server6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_err(server6, client, 1, 4, 0, &quoted6),
                ),
            )),
            counter: "icmp-error-translated",
            random_id: false,
        },
        None,
    );
    let router = v4("192.0.2.254");
    let router6 = v6("2001:db8:64::c000:2fe");
    push(
        Case {
            name: "icmpv4 time exceeded from a router -> icmpv6 time exceeded (traceroute)",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    router,
                    pool,
                    1,
                    64,
                    0,
                    21,
                    false,
                    &icmp4_err(11, 0, 0, &sent4),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    router6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_err(router6, client, 3, 0, 0, &quoted6),
                ),
            )),
            counter: "icmp-error-translated",
            random_id: false,
        },
        None,
    );
    // RFC 4884: the original datagram padded to 128 bytes (length 32 words), then an extension
    // structure (header and one object). Time exceeded carries it over: the translated
    // original datagram (148 bytes) is zero-padded to 152 (19 words of 64 bits), then the
    // extension follows unchanged. Packet too big has no length field: the extension is cut.
    let mut padded4 = sent4.clone();
    padded4.resize(128, 0);
    let ext = [0x20u8, 0, 0x12, 0x34, 0, 8, 1, 1, 0xde, 0xad, 0xbe, 0xef];
    let mut with_ext = padded4.clone();
    with_ext.extend(ext);
    let mut padded6 = quoted6.clone();
    padded6.resize(quoted6.len() + (128 - sent4.len()), 0);
    let mut ext6 = padded6.clone();
    ext6.extend([0u8; 4]);
    ext6.extend(ext);
    push(
        Case {
            name: "icmpv4 time exceeded with RFC 4884 extensions: carried over, length 19",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    router,
                    pool,
                    1,
                    64,
                    0,
                    25,
                    false,
                    &icmp4_err(11, 0, 32 << 16, &with_ext),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    router6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_err(router6, client, 3, 0, 19 << 24, &ext6),
                ),
            )),
            counter: "icmp-error-translated",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "icmpv4 fragmentation needed with RFC 4884 extensions: extensions cut off",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    router,
                    pool,
                    1,
                    64,
                    0,
                    26,
                    false,
                    &icmp4_err(3, 4, (32 << 16) | 1400, &with_ext),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    router6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_err(router6, client, 2, 0, 1420, &padded6),
                ),
            )),
            counter: "icmp-error-translated",
            random_id: false,
        },
        None,
    );
    let syn4 = ipv4(
        pool,
        server,
        6,
        63,
        0,
        0,
        true,
        &tcp(pool.into(), server.into(), 1025, 80, SYN, 1000, 0),
    );
    let syn6 = ipv6(
        client,
        server6,
        6,
        63,
        0,
        &tcp(client.into(), server6.into(), tport, 80, SYN, 1000, 0),
    );
    push(
        Case {
            name: "icmpv4 fragmentation needed (MTU 1400) -> packet too big (MTU 1420)",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    server,
                    pool,
                    1,
                    64,
                    0,
                    22,
                    false,
                    &icmp4_err(3, 4, 1400, &syn4),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    server6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_err(server6, client, 2, 0, 1420, &syn6),
                ),
            )),
            counter: "icmp-error-translated",
            random_id: false,
        },
        None,
    );
    let got6 = ipv6(
        server6,
        client,
        17,
        63,
        0,
        &udp(server6.into(), client.into(), 53, cport, b"reply"),
    );
    let got4 = ipv4(
        server,
        pool,
        17,
        63,
        0,
        0,
        false,
        &udp(server.into(), pool.into(), 53, pport, b"reply"),
    );
    push(
        Case {
            name: "icmpv6 port unreachable from the client -> icmpv4 port unreachable",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(
                    client,
                    server6,
                    58,
                    64,
                    0,
                    &icmp6_err(client, server6, 1, 4, 0, &got6),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_SERVER,
                MAC_GW4,
                0x0800,
                &ipv4(pool, server, 1, 63, 0, 0, false, &icmp4_err(3, 3, 0, &got4)),
            )),
            counter: "icmp-error-translated",
            random_id: false,
        },
        None,
    );
    // RFC 4884 the other way: 128 bytes of original datagram (16 words of 64 bits) and an
    // extension; in ICMPv4 the datagram is 108 bytes, zero-padded to 128 (32 words of 32 bits).
    let mut got6_128 = got6.clone();
    got6_128.resize(128, 0);
    let mut in6 = got6_128.clone();
    in6.extend(ext);
    let mut out4 = got4.clone();
    out4.resize(128, 0);
    out4.extend(ext);
    push(
        Case {
            name: "icmpv6 port unreachable with RFC 4884 extensions: carried over, length 32",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(
                    client,
                    server6,
                    58,
                    64,
                    0,
                    &icmp6_err(client, server6, 1, 4, 16 << 24, &in6),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_SERVER,
                MAC_GW4,
                0x0800,
                &ipv4(
                    pool,
                    server,
                    1,
                    63,
                    0,
                    0,
                    false,
                    &icmp4_err(3, 3, 32 << 16, &out4),
                ),
            )),
            counter: "icmp-error-translated",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "icmpv6 parameter problem pointer 7 (hop limit) -> icmpv4 pointer 8 (ttl)",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(
                    client,
                    server6,
                    58,
                    64,
                    0,
                    &icmp6_err(client, server6, 4, 0, 7, &got6),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_SERVER,
                MAC_GW4,
                0x0800,
                &ipv4(
                    pool,
                    server,
                    1,
                    63,
                    0,
                    0,
                    false,
                    &icmp4_err(12, 0, 8 << 24, &got4),
                ),
            )),
            counter: "icmp-error-translated",
            random_id: false,
        },
        None,
    );
    // Every ICMPv4 error type/code of RFC 7915 section 4.2, written out here from the RFC
    // (not from the translator's tables): Some((type, code, rest)) or None for "dropped".
    // Rest: the ICMPv6 "rest of header" word for a zero ICMPv4 rest word.
    let v4_table: Vec<TableRow> = {
        let mut t = Vec::new();
        for code in 0..=16u8 {
            let m = match code {
                0 | 1 | 5 | 6 | 7 | 8 | 11 | 12 => Some((1, 0, 0)),
                2 => Some((4, 1, 6)),
                3 => Some((1, 4, 0)),
                9 | 10 | 13 | 15 => Some((1, 1, 0)),
                _ => None, // 4 (fragmentation needed) has its own cases below; 14, 16: dropped
            };
            if code != 4 {
                t.push((3, code, m));
            }
        }
        t.push((11, 0, Some((3, 0, 0))));
        t.push((11, 1, Some((3, 1, 0))));
        t.push((12, 1, None));
        for ty in [4u8, 5, 6, 9, 10, 13, 14, 15, 16, 17, 18, 30, 40] {
            t.push((ty, 0, None));
        }
        t
    };
    for (ty, code, mapped) in v4_table {
        let input = eth(
            MAC_GW4,
            MAC_SERVER,
            0x0800,
            &ipv4(
                router,
                pool,
                1,
                64,
                0,
                30,
                false,
                &icmp4_err(ty, code, 0, &sent4),
            ),
        );
        let (action, output, counter) = match mapped {
            Some((ty6, code6, rest)) => (
                XDP_REDIRECT,
                Some(eth(
                    MAC_CLIENT,
                    MAC_GW6,
                    0x86dd,
                    &ipv6(
                        router6,
                        client,
                        58,
                        63,
                        0,
                        &icmp6_err(router6, client, ty6, code6, rest, &quoted6),
                    ),
                )),
                "icmp-error-translated",
            ),
            None => (XDP_DROP, None, "unsupported-icmp"),
        };
        push(
            Case {
                name: leak(format!("icmpv4 type {ty} code {code}")),
                side: Side::V4,
                input,
                action,
                output,
                counter,
                random_id: false,
            },
            None,
        );
    }
    // Fragmentation needed -> packet too big: MTU + 20, the RFC 1191 plateau below the quoted
    // packet's length when the router said 0, never below 1280.
    for (mtu4, mtu6) in [
        (0u32, 1280u32),
        (576, 1280),
        (1259, 1280),
        (1260, 1280),
        (1261, 1281),
        (1480, 1500),
        (65535, 65555),
    ] {
        push(
            Case {
                name: leak(format!(
                    "icmpv4 fragmentation needed, mtu {mtu4} -> packet too big {mtu6}"
                )),
                side: Side::V4,
                input: eth(
                    MAC_GW4,
                    MAC_SERVER,
                    0x0800,
                    &ipv4(
                        router,
                        pool,
                        1,
                        64,
                        0,
                        31,
                        false,
                        &icmp4_err(3, 4, mtu4, &sent4),
                    ),
                ),
                action: XDP_REDIRECT,
                output: Some(eth(
                    MAC_CLIENT,
                    MAC_GW6,
                    0x86dd,
                    &ipv6(
                        router6,
                        client,
                        58,
                        63,
                        0,
                        &icmp6_err(router6, client, 2, 0, mtu6, &quoted6),
                    ),
                )),
                counter: "icmp-error-translated",
                random_id: false,
            },
            None,
        );
    }
    // Parameter problem pointers, IPv4 -> IPv6 (RFC 7915 figure 3).
    for (ptr4, ptr6) in [
        (0u32, Some(0u32)),
        (1, Some(1)),
        (2, Some(4)),
        (3, Some(4)),
        (4, None),
        (5, None),
        (6, None),
        (7, None),
        (8, Some(7)),
        (9, Some(6)),
        (10, None),
        (11, None),
        (12, Some(8)),
        (13, Some(8)),
        (14, Some(8)),
        (15, Some(8)),
        (16, Some(24)),
        (17, Some(24)),
        (18, Some(24)),
        (19, Some(24)),
        (20, None),
    ] {
        for code in [0u8, 2] {
            let input = eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    router,
                    pool,
                    1,
                    64,
                    0,
                    32,
                    false,
                    &icmp4_err(12, code, ptr4 << 24, &sent4),
                ),
            );
            let (action, output, counter) = match ptr6 {
                Some(p6) => (
                    XDP_REDIRECT,
                    Some(eth(
                        MAC_CLIENT,
                        MAC_GW6,
                        0x86dd,
                        &ipv6(
                            router6,
                            client,
                            58,
                            63,
                            0,
                            &icmp6_err(router6, client, 4, 0, p6, &quoted6),
                        ),
                    )),
                    "icmp-error-translated",
                ),
                None => (XDP_DROP, None, "unsupported-icmp"),
            };
            push(
                Case {
                    name: leak(format!(
                        "icmpv4 parameter problem code {code} pointer {ptr4}"
                    )),
                    side: Side::V4,
                    input,
                    action,
                    output,
                    counter,
                    random_id: false,
                },
                None,
            );
        }
    }
    // Every ICMPv6 error type/code of RFC 7915 section 5.2.
    let v6_table: Vec<TableRow> = vec![
        (1, 0, Some((3, 1, 0))),
        (1, 1, Some((3, 10, 0))),
        (1, 2, Some((3, 1, 0))),
        (1, 3, Some((3, 1, 0))),
        (1, 4, Some((3, 3, 0))),
        (1, 5, None),
        (1, 6, None),
        (1, 7, None),
        (3, 0, Some((11, 0, 0))),
        (3, 1, Some((11, 1, 0))),
        (4, 1, Some((3, 2, 0))),
        (4, 2, None),
        (4, 3, None),
        (0, 0, None),
        (100, 0, None),
        (127, 0, None),
    ];
    for (ty, code, mapped) in v6_table {
        let input = eth(
            MAC_GW6,
            MAC_CLIENT,
            0x86dd,
            &ipv6(
                client,
                server6,
                58,
                64,
                0,
                &icmp6_err(client, server6, ty, code, 0, &got6),
            ),
        );
        let (action, output, counter) = match mapped {
            Some((ty4, code4, rest)) => (
                XDP_REDIRECT,
                Some(eth(
                    MAC_SERVER,
                    MAC_GW4,
                    0x0800,
                    &ipv4(
                        pool,
                        server,
                        1,
                        63,
                        0,
                        0,
                        false,
                        &icmp4_err(ty4, code4, rest, &got4),
                    ),
                )),
                "icmp-error-translated",
            ),
            None => (XDP_DROP, None, "unsupported-icmp"),
        };
        push(
            Case {
                name: leak(format!("icmpv6 type {ty} code {code}")),
                side: Side::V6,
                input,
                action,
                output,
                counter,
                random_id: false,
            },
            None,
        );
    }
    // Packet too big -> fragmentation needed: MTU - 20, capped to 16 bits.
    for (mtu6, mtu4) in [
        (1280u32, 1260u32),
        (1500, 1480),
        (9000, 8980),
        (70000, 65535),
    ] {
        push(
            Case {
                name: leak(format!(
                    "icmpv6 packet too big {mtu6} -> fragmentation needed {mtu4}"
                )),
                side: Side::V6,
                input: eth(
                    MAC_GW6,
                    MAC_CLIENT,
                    0x86dd,
                    &ipv6(
                        client,
                        server6,
                        58,
                        64,
                        0,
                        &icmp6_err(client, server6, 2, 0, mtu6, &got6),
                    ),
                ),
                action: XDP_REDIRECT,
                output: Some(eth(
                    MAC_SERVER,
                    MAC_GW4,
                    0x0800,
                    &ipv4(
                        pool,
                        server,
                        1,
                        63,
                        0,
                        0,
                        false,
                        &icmp4_err(3, 4, mtu4, &got4),
                    ),
                )),
                counter: "icmp-error-translated",
                random_id: false,
            },
            None,
        );
    }
    // Parameter problem pointers, IPv6 -> IPv4 (RFC 7915 figure 6).
    for ptr6 in 0u32..=41 {
        let ptr4: Option<u32> = match ptr6 {
            0 => Some(0),
            1 => Some(1),
            4 | 5 => Some(2),
            6 => Some(9),
            7 => Some(8),
            8..=23 => Some(12),
            24..=39 => Some(16),
            _ => None,
        };
        let input = eth(
            MAC_GW6,
            MAC_CLIENT,
            0x86dd,
            &ipv6(
                client,
                server6,
                58,
                64,
                0,
                &icmp6_err(client, server6, 4, 0, ptr6, &got6),
            ),
        );
        let (action, output, counter) = match ptr4 {
            Some(p4) => (
                XDP_REDIRECT,
                Some(eth(
                    MAC_SERVER,
                    MAC_GW4,
                    0x0800,
                    &ipv4(
                        pool,
                        server,
                        1,
                        63,
                        0,
                        0,
                        false,
                        &icmp4_err(12, 0, p4 << 24, &got4),
                    ),
                )),
                "icmp-error-translated",
            ),
            None => (XDP_DROP, None, "unsupported-icmp"),
        };
        push(
            Case {
                name: leak(format!("icmpv6 parameter problem pointer {ptr6}")),
                side: Side::V6,
                input,
                action,
                output,
                counter,
                random_id: false,
            },
            None,
        );
    }
    // A quoted TCP segment and a quoted ICMP echo (ports and identifier translated, their
    // checksums too).
    let echo_sent4 = ipv4(
        pool,
        server,
        1,
        63,
        0,
        0,
        false,
        &icmp4_echo(8, pool_id, 1, data),
    );
    let echo_quoted6 = ipv6(
        client,
        server6,
        58,
        63,
        0,
        &icmp6_echo(client, server6, 128, icmp_id, 1, data),
    );
    push(
        Case {
            name: "icmpv4 host unreachable quoting an echo request",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    router,
                    pool,
                    1,
                    64,
                    0,
                    33,
                    false,
                    &icmp4_err(3, 1, 0, &echo_sent4),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    router6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_err(router6, client, 1, 0, 0, &echo_quoted6),
                ),
            )),
            counter: "icmp-error-translated",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "icmpv4 port unreachable quoting a tcp segment",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    router,
                    pool,
                    1,
                    64,
                    0,
                    34,
                    false,
                    &icmp4_err(3, 3, 0, &syn4),
                ),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &ipv6(
                    router6,
                    client,
                    58,
                    63,
                    0,
                    &icmp6_err(router6, client, 1, 4, 0, &syn6),
                ),
            )),
            counter: "icmp-error-translated",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "icmpv4 source quench is not translated",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    server,
                    pool,
                    1,
                    64,
                    0,
                    23,
                    false,
                    &icmp4_err(4, 0, 0, &sent4),
                ),
            ),
            action: XDP_DROP,
            output: None,
            counter: "unsupported-icmp",
            random_id: false,
        },
        None,
    );
    let nobody4 = ipv4(
        pool,
        server,
        17,
        63,
        0,
        0,
        false,
        &udp(pool.into(), server.into(), 2000, 53, data),
    );
    push(
        Case {
            name: "icmpv4 error quoting no session",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    server,
                    pool,
                    1,
                    64,
                    0,
                    24,
                    false,
                    &icmp4_err(3, 3, 0, &nobody4),
                ),
            ),
            action: XDP_DROP,
            output: None,
            counter: "no-session",
            random_id: false,
        },
        None,
    );
    // Traffic that is not ours passes untouched.
    let other6 = v6("2001:db8:99::1");
    push(
        Case {
            name: "ipv6 outside the prefix passes",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(
                    client,
                    other6,
                    17,
                    64,
                    0,
                    &udp(client.into(), other6.into(), 1, 2, data),
                ),
            ),
            action: XDP_PASS,
            output: None,
            counter: "passed",
            random_id: false,
        },
        None,
    );
    let other4 = v4("192.0.2.77");
    push(
        Case {
            name: "ipv4 to a non-pool address passes",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    server,
                    other4,
                    17,
                    64,
                    0,
                    15,
                    false,
                    &udp(server.into(), other4.into(), 1, 2, data),
                ),
            ),
            action: XDP_PASS,
            output: None,
            counter: "passed",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "arp passes",
            side: Side::V4,
            input: eth(
                [0xff; 6],
                MAC_SERVER,
                0x0806,
                &[
                    0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 4, 192, 0, 2, 2, 0, 0, 0, 0, 0, 0, 192,
                    0, 2, 1,
                ],
            ),
            action: XDP_PASS,
            output: None,
            counter: "passed",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "ssh to the gateway's own pool address (nothing bound) passes",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &ipv4(
                    server,
                    pool,
                    6,
                    64,
                    0,
                    16,
                    true,
                    &tcp(server.into(), pool.into(), 40022, 22, SYN, 1, 0),
                ),
            ),
            action: XDP_PASS,
            output: None,
            counter: "passed",
            random_id: false,
        },
        None,
    );
    // Refused and malformed input: counted drops, never a crash.
    push(
        Case {
            name: "client outside the allowed prefixes",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(
                    stranger,
                    server6,
                    17,
                    64,
                    0,
                    &udp(stranger.into(), server6.into(), 1000, 53, data),
                ),
            ),
            action: XDP_DROP,
            output: None,
            counter: "client-not-allowed",
            random_id: false,
        },
        None,
    );
    let mut zero = u6.clone();
    zero[6..8].copy_from_slice(&[0, 0]);
    push(
        Case {
            name: "ipv6 udp with zero checksum",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(client, server6, 17, 64, 0, &zero),
            ),
            action: XDP_DROP,
            output: None,
            counter: "zero-udp-checksum-ipv6",
            random_id: false,
        },
        None,
    );
    let full6 = eth(
        MAC_GW6,
        MAC_CLIENT,
        0x86dd,
        &ipv6(client, server6, 17, 64, 0, &u6),
    );
    push(
        Case {
            name: "ipv6 header cut short",
            side: Side::V6,
            input: full6[..14 + 30].to_vec(),
            action: XDP_DROP,
            output: None,
            counter: "truncated",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "ipv6 payload shorter than its length field",
            side: Side::V6,
            input: full6[..full6.len() - 4].to_vec(),
            action: XDP_DROP,
            output: None,
            counter: "truncated",
            random_id: false,
        },
        None,
    );
    let mut badsum = ipv4(server, pool, 17, 64, 0, 17, false, &r4);
    badsum[10] ^= 0xff;
    push(
        Case {
            name: "ipv4 header checksum wrong",
            side: Side::V4,
            input: eth(MAC_GW4, MAC_SERVER, 0x0800, &badsum),
            action: XDP_DROP,
            output: None,
            counter: "bad-ipv4-checksum",
            random_id: false,
        },
        None,
    );
    let mut ihl4 = ipv4(server, pool, 17, 64, 0, 18, false, &r4);
    ihl4[0] = 0x44;
    push(
        Case {
            name: "ipv4 ihl below 5",
            side: Side::V4,
            input: eth(MAC_GW4, MAC_SERVER, 0x0800, &ihl4),
            action: XDP_DROP,
            output: None,
            counter: "malformed",
            random_id: false,
        },
        None,
    );
    // Fragments (RFC 7915 4.1 / 5.1.1): a UDP datagram of 64 data bytes split after 32 bytes
    // of UDP (8 header + 24 data). The UDP checksum covers the whole datagram.
    let big: Vec<u8> = (0u8..64).collect();
    let whole4 = udp(server.into(), pool.into(), 53, pport, &big);
    let whole6 = udp(server6.into(), client.into(), 53, cport, &big);
    let (split, fid4) = (32usize, 0x4321u16);
    push(
        Case {
            name: "ipv4 first fragment -> ipv6 fragment header (M=1, id copied)",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &frag4(server, pool, 17, 64, fid4, 0, true, &whole4[..split]),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &frag6(
                    server6,
                    client,
                    17,
                    63,
                    u32::from(fid4),
                    0,
                    true,
                    &whole6[..split],
                ),
            )),
            counter: "fragment-translated",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "ipv4 last fragment -> ipv6 fragment (offset, M=0)",
            side: Side::V4,
            input: eth(
                MAC_GW4,
                MAC_SERVER,
                0x0800,
                &frag4(server, pool, 17, 64, fid4, split, false, &whole4[split..]),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_CLIENT,
                MAC_GW6,
                0x86dd,
                &frag6(
                    server6,
                    client,
                    17,
                    63,
                    u32::from(fid4),
                    split,
                    false,
                    &whole6[split..],
                ),
            )),
            counter: "fragment-translated",
            random_id: false,
        },
        None,
    );
    let out6 = udp(client.into(), server6.into(), cport, 53, &big);
    let out4 = udp(pool.into(), server.into(), pport, 53, &big);
    let fid6 = 0x1234_5678u32;
    push(
        Case {
            name: "ipv6 first fragment -> ipv4 fragment (low 16 bits of the id, DF clear, MF)",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &frag6(client, server6, 17, 64, fid6, 0, true, &out6[..split]),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_SERVER,
                MAC_GW4,
                0x0800,
                &frag4(pool, server, 17, 63, 0x5678, 0, true, &out4[..split]),
            )),
            counter: "fragment-translated",
            random_id: false,
        },
        None,
    );
    push(
        Case {
            name: "ipv6 last fragment -> ipv4 fragment",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &frag6(client, server6, 17, 64, fid6, split, false, &out6[split..]),
            ),
            action: XDP_REDIRECT,
            output: Some(eth(
                MAC_SERVER,
                MAC_GW4,
                0x0800,
                &frag4(pool, server, 17, 63, 0x5678, split, false, &out4[split..]),
            )),
            counter: "fragment-translated",
            random_id: false,
        },
        None,
    );
    // First, middle and last fragments of one datagram (IPv4 -> IPv6), 3 pieces.
    let big3: Vec<u8> = (0u8..80).collect();
    let w4 = udp(server.into(), pool.into(), 53, pport, &big3);
    let w6 = udp(server6.into(), client.into(), 53, cport, &big3);
    let fid3 = 0x2468u16;
    for (name, from, to, more) in [
        ("ipv4 first of three fragments", 0usize, 32usize, true),
        ("ipv4 middle fragment", 32, 64, true),
        ("ipv4 last of three fragments", 64, w4.len(), false),
    ] {
        push(
            Case {
                name,
                side: Side::V4,
                input: eth(
                    MAC_GW4,
                    MAC_SERVER,
                    0x0800,
                    &frag4(server, pool, 17, 64, fid3, from, more, &w4[from..to]),
                ),
                action: XDP_REDIRECT,
                output: Some(eth(
                    MAC_CLIENT,
                    MAC_GW6,
                    0x86dd,
                    &frag6(
                        server6,
                        client,
                        17,
                        63,
                        u32::from(fid3),
                        from,
                        more,
                        &w6[from..to],
                    ),
                )),
                counter: "fragment-translated",
                random_id: false,
            },
            None,
        );
    }
    // Destination options and a routing header with no segments left: slow path too.
    for (nh, name) in [
        (60u8, "ipv6 destination options header -> slow path"),
        (43, "ipv6 routing header -> slow path"),
    ] {
        let mut ext = vec![17u8, 0, 0, 0, 0, 0, 0, 0];
        ext.extend(udp(client.into(), server6.into(), cport, 53, data));
        let pkt = ipv6(client, server6, nh, 64, 0, &ext);
        push(
            Case {
                name,
                side: Side::V6,
                input: eth(MAC_GW6, MAC_CLIENT, 0x86dd, &pkt),
                action: XDP_PASS,
                output: Some(eth(MAC_GW6, MAC_CLIENT, 0x88b5, &pkt)),
                counter: "slow-path",
                random_id: false,
            },
            None,
        );
    }
    // A later fragment whose first fragment was not seen, and fragmented ICMP, go to the slow
    // path: ethertype 0x88b5, the packet otherwise untouched, handed to the kernel.
    let orphan = frag4(server, pool, 17, 64, 0x7777, split, false, &whole4[split..]);
    let mut orphan_out = eth(MAC_GW4, MAC_SERVER, 0x88b5, &orphan);
    orphan_out.truncate(14 + orphan.len());
    push(
        Case {
            name: "ipv4 fragment without its first fragment -> slow path",
            side: Side::V4,
            input: eth(MAC_GW4, MAC_SERVER, 0x0800, &orphan),
            action: XDP_PASS,
            output: Some(orphan_out),
            counter: "slow-path",
            random_id: false,
        },
        None,
    );
    let echo_big = icmp6_echo(client, server6, 128, icmp_id, 2, &big);
    let icmp_frag = frag6(client, server6, 58, 64, 0x99, 0, true, &echo_big[..split]);
    push(
        Case {
            name: "fragmented icmpv6 echo -> slow path",
            side: Side::V6,
            input: eth(MAC_GW6, MAC_CLIENT, 0x86dd, &icmp_frag),
            action: XDP_PASS,
            output: Some(eth(MAC_GW6, MAC_CLIENT, 0x88b5, &icmp_frag)),
            counter: "slow-path",
            random_id: false,
        },
        None,
    );
    // Extension headers RFC 7915 lets a translator skip, and IPv4 options, go to the slow
    // path (which walks the chain / skips the options and translates the whole packet).
    let mut hbh = vec![17u8, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend(udp(client.into(), server6.into(), cport, 53, data));
    let hbh_pkt = ipv6(client, server6, 0, 64, 0, &hbh);
    push(
        Case {
            name: "ipv6 hop-by-hop options header -> slow path",
            side: Side::V6,
            input: eth(MAC_GW6, MAC_CLIENT, 0x86dd, &hbh_pkt),
            action: XDP_PASS,
            output: Some(eth(MAC_GW6, MAC_CLIENT, 0x88b5, &hbh_pkt)),
            counter: "slow-path",
            random_id: false,
        },
        None,
    );
    let mut esp = vec![0u8; 16];
    esp[3] = 1;
    push(
        Case {
            name: "ipv6 esp is not translated",
            side: Side::V6,
            input: eth(
                MAC_GW6,
                MAC_CLIENT,
                0x86dd,
                &ipv6(client, server6, 50, 64, 0, &esp),
            ),
            action: XDP_DROP,
            output: None,
            counter: "ipv6-extension-header",
            random_id: false,
        },
        None,
    );
    let with_opts = {
        // IHL 6: one 4-byte option (NOP, NOP, NOP, EOL).
        let mut p = ipv4(server, pool, 17, 64, 0, 26, false, &r4);
        p.splice(20..20, [1, 1, 1, 0]);
        p[0] = 0x46;
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p[10..12].copy_from_slice(&[0, 0]);
        let c = csum(&p[..24]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    };
    push(
        Case {
            name: "ipv4 with options -> slow path",
            side: Side::V4,
            input: eth(MAC_GW4, MAC_SERVER, 0x0800, &with_opts),
            action: XDP_PASS,
            output: Some(eth(MAC_GW4, MAC_SERVER, 0x88b5, &with_opts)),
            counter: "slow-path",
            random_id: false,
        },
        None,
    );
    let nocsum_frag = frag4(
        server,
        pool,
        17,
        64,
        0x5555,
        0,
        true,
        &udp_nocsum(53, pport, &big)[..split],
    );
    push(
        Case {
            name: "fragmented ipv4 udp without checksum is dropped",
            side: Side::V4,
            input: eth(MAC_GW4, MAC_SERVER, 0x0800, &nocsum_frag),
            action: XDP_DROP,
            output: None,
            counter: "fragment",
            random_id: false,
        },
        None,
    );
    run_cases(&ns, Target::Xdp, CONFIG, &cases)?;
    run_cases(&ns, Target::Tc, CONFIG, &cases)
}
