//! Packet fixtures for the CLAT's TC programs (`clat_egress`, `clat_ingress`), run on skbs
//! through `BPF_PROG_TEST_RUN` (`SCHED_CLS`).
//!
//! Each case gives an input frame, the program, the expected TC verdict, the whole expected
//! output frame and the counter that must move by one (or none). Expected frames are built with
//! this crate's own packet builder and full checksums, from RFC 7915 with the CLAT's stateless
//! mapping (RFC 6877): the host's 192.0.0.1 <-> the CLAT's IPv6 address, every other IPv4
//! address <-> the PLAT prefix 2001:db8:64::/96; the hop limit is copied, not decremented.
//!
//! The programs run in a namespace made for the test (its interfaces give the indexes the
//! settings name; the redirects themselves are not carried out by a test run).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd as _;

use anyhow::{Context as _, Result, bail};
use translator::{
    clat::dataplane::{self as clat_dp, Dataplane, EGRESS_PROGRAM, INGRESS_PROGRAM},
    testrun,
};
use translator_common::{maps::ClatConfig, rfc6052};
use translator_tests::{NetNs, fixture::fixture_net, packets::*, require_root};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const V4_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x02];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x03];
const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x04];

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("fixture IPv6 address")
}
fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("fixture IPv4 address")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prog {
    Egress,
    Ingress,
}

struct Case {
    name: String,
    prog: Prog,
    input: Vec<u8>,
    action: u32,
    /// `None`: the frame must come out unchanged.
    output: Option<Vec<u8>>,
    /// The counter that must grow by one; `None`: no counter may move.
    counter: Option<&'static str>,
    /// IPv6 -> IPv4 without DF gets a random identification: take it from the output.
    random_id: bool,
}

fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| {
            c.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The IPv4 frame with identification `id` (and the header checksum for it).
fn with_id(mut frame: Vec<u8>, id: u16) -> Vec<u8> {
    if frame.len() >= 34 {
        frame[18..20].copy_from_slice(&id.to_be_bytes());
        frame[24..26].copy_from_slice(&[0, 0]);
        let c = csum(&frame[14..34]);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
    }
    frame
}

fn counters(pins: &std::path::Path) -> Result<std::collections::BTreeMap<&'static str, u64>> {
    let (events, drops) = clat_dp::counters(pins)?;
    Ok(events
        .iter()
        .map(|(e, n)| (e.name(), *n))
        .chain(drops.iter().map(|(r, n)| (r.name(), *n)))
        .collect())
}

fn settings(uplink: u32, v4if: u32, prefix_len: u8) -> ClatConfig {
    let prefix = u128::from(v6("2001:db8:64::"));
    ClatConfig {
        prefix: rfc6052::raw6(prefix),
        mask: rfc6052::raw6(rfc6052::mask(96)),
        prefix_len,
        clat6: rfc6052::raw6(u128::from(v6("2001:db8:1::c1a7"))),
        ipv4: rfc6052::raw4(u32::from(v4("192.0.0.1"))),
        error_src4: rfc6052::raw4(u32::from(v4("192.0.0.8"))),
        uplink_ifindex: uplink,
        v4_ifindex: v4if,
        v4_mac: V4_MAC,
        peer_mac: PEER_MAC,
        mtu6: 1500,
        ..Default::default()
    }
}

fn run_cases(ns: &NetNs, cases: &[Case], off: bool) -> Result<()> {
    let pins = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/translator-clat-fx-{}-{off}",
        std::process::id()
    ));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(pins.clone());
    ns.in_ns(|| -> Result<()> {
        translator::netns::ensure_bpffs()?;
        let mut dp = Dataplane::load(&pins)?;
        let uplink = translator::netns::ifindex("v6a").context("v6a")?;
        let v4if = translator::netns::ifindex("v4a").context("v4a")?;
        dp.set(&settings(uplink, v4if, if off { 0 } else { 96 }))?;
        let egress = dp.program(EGRESS_PROGRAM)?;
        let ingress = dp.program(INGRESS_PROGRAM)?;
        let mut failures = Vec::new();
        for case in cases {
            let before = counters(&pins)?;
            let (fd, ifindex) = match case.prog {
                Prog::Egress => (&egress, v4if),
                Prog::Ingress => (&ingress, uplink),
            };
            let out = testrun::run_skb(fd.as_fd(), &case.input, ifindex, 1)
                .with_context(|| format!("{}: BPF_PROG_TEST_RUN", case.name))?;
            let after = counters(&pins)?;
            let expected = match &case.output {
                Some(p) if case.random_id && out.packet.len() >= 20 => with_id(
                    p.clone(),
                    u16::from_be_bytes([out.packet[18], out.packet[19]]),
                ),
                Some(p) => p.clone(),
                None => case.input.clone(),
            };
            let mut problems = Vec::new();
            if out.action != case.action {
                problems.push(format!("action {} (expected {})", out.action, case.action));
            }
            if out.packet != expected {
                problems.push(format!(
                    "output frame differs\n  got:\n{}\n  expected:\n{}",
                    hex(&out.packet),
                    hex(&expected)
                ));
            }
            for (name, n) in &after {
                let moved = n - before.get(name).copied().unwrap_or(0);
                let want = u64::from(case.counter == Some(*name));
                // Byte counters and the fragment event move along with the translations.
                let companion = name.starts_with("bytes-")
                    || (*name == "fragment-translated" && case.counter.is_some())
                    || (name.starts_with("translated-")
                        && case.counter == Some("fragment-translated"));
                if moved != want && !(companion && want == 0) {
                    problems.push(format!("counter {name} moved by {moved} (expected {want})"));
                }
            }
            if !problems.is_empty() {
                failures.push(format!("case {:?}: {}", case.name, problems.join("; ")));
            }
        }
        if !failures.is_empty() {
            bail!(
                "{} CLAT fixture case(s) failed:\n{}",
                failures.len(),
                failures.join("\n\n")
            );
        }
        println!("{} CLAT fixture cases passed", cases.len());
        Ok(())
    })?
}

#[test]
fn clat_fixtures() -> Result<()> {
    require_root()?;
    let ns = fixture_net()?;
    let host = v4("192.0.0.1");
    let clat6 = v6("2001:db8:1::c1a7");
    let server = v4("192.0.2.2");
    let server6 = v6("2001:db8:64::c000:202");
    let router = v6("2001:db8:1::1");
    let data = b"clat fixture payload";
    let h: IpAddr = host.into();
    let s4: IpAddr = server.into();
    let c6: IpAddr = clat6.into();
    let s6: IpAddr = server6.into();
    let from_host = |ip: &[u8]| eth(PEER_MAC, V4_MAC, 0x0800, ip);
    let to_uplink = |ip: &[u8]| eth([0; 6], [0; 6], 0x86dd, ip);
    let from_uplink = |ip: &[u8]| eth(UPLINK_MAC, ROUTER_MAC, 0x86dd, ip);
    let to_host = |ip: &[u8]| eth(V4_MAC, PEER_MAC, 0x0800, ip);
    let punted = |mut f: Vec<u8>| {
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f
    };
    let mut cases = Vec::new();

    // ---- The host's IPv4, out through the CLAT.
    cases.push(Case {
        name: "udp 4->6: the CLAT address, the prefix, TTL copied, TOS to traffic class".into(),
        prog: Prog::Egress,
        input: from_host(&ipv4(
            host,
            server,
            17,
            64,
            0x28,
            1,
            true,
            &udp(h, s4, 40000, 7777, data),
        )),
        action: TC_ACT_REDIRECT,
        output: Some(to_uplink(&ipv6(
            clat6,
            server6,
            17,
            64,
            0x28,
            &udp(c6, s6, 40000, 7777, data),
        ))),
        counter: Some("translated-4to6"),
        random_id: false,
    });
    cases.push(Case {
        name: "tcp syn 4->6".into(),
        prog: Prog::Egress,
        input: from_host(&ipv4(
            host,
            server,
            6,
            63,
            0,
            2,
            true,
            &tcp(h, s4, 40001, 80, SYN, 1000, 0),
        )),
        action: TC_ACT_REDIRECT,
        output: Some(to_uplink(&ipv6(
            clat6,
            server6,
            6,
            63,
            0,
            &tcp(c6, s6, 40001, 80, SYN, 1000, 0),
        ))),
        counter: Some("translated-4to6"),
        random_id: false,
    });
    cases.push(Case {
        name: "icmp echo request 4->6".into(),
        prog: Prog::Egress,
        input: from_host(&ipv4(
            host,
            server,
            1,
            64,
            0,
            3,
            true,
            &icmp4_echo(8, 0x77, 1, data),
        )),
        action: TC_ACT_REDIRECT,
        output: Some(to_uplink(&ipv6(
            clat6,
            server6,
            58,
            64,
            0,
            &icmp6_echo(clat6, server6, 128, 0x77, 1, data),
        ))),
        counter: Some("translated-4to6"),
        random_id: false,
    });
    // The host answers a UDP datagram it received through the CLAT with port unreachable.
    let quoted4 = ipv4(
        server,
        host,
        17,
        61,
        0,
        0,
        false,
        &udp(s4, h, 53, 40000, b"reply"),
    );
    let quoted6 = ipv6(server6, clat6, 17, 61, 0, &udp(s6, c6, 53, 40000, b"reply"));
    cases.push(Case {
        name: "icmp port unreachable from the host -> icmpv6 port unreachable".into(),
        prog: Prog::Egress,
        input: from_host(&ipv4(
            host,
            server,
            1,
            64,
            0,
            4,
            false,
            &icmp4_err(3, 3, 0, &quoted4),
        )),
        action: TC_ACT_REDIRECT,
        output: Some(to_uplink(&ipv6(
            clat6,
            server6,
            58,
            64,
            0,
            &icmp6_err(clat6, server6, 1, 4, 0, &quoted6),
        ))),
        counter: Some("icmp-error-translated"),
        random_id: false,
    });
    cases.push(Case {
        name: "a later fragment 4->6 gets a fragment header with the IPv4 identification".into(),
        prog: Prog::Egress,
        input: from_host(&frag4(host, server, 17, 64, 0x1234, 16, false, &[0xab; 24])),
        action: TC_ACT_REDIRECT,
        output: Some(to_uplink(&frag6(
            clat6,
            server6,
            17,
            64,
            0x1234,
            16,
            false,
            &[0xab; 24],
        ))),
        counter: Some("fragment-translated"),
        random_id: false,
    });
    let big = udp(h, s4, 40000, 7777, &[7u8; 1464]);
    let big_df_clear = from_host(&ipv4(host, server, 17, 64, 0, 5, false, &big));
    cases.push(Case {
        name: "DF clear and too big for the uplink once translated: to the slow path".into(),
        prog: Prog::Egress,
        input: big_df_clear.clone(),
        action: TC_ACT_REDIRECT,
        output: Some(punted(big_df_clear)),
        counter: Some("slow-path"),
        random_id: false,
    });
    let mut options = ipv4(host, server, 17, 64, 0, 6, true, &[]);
    options[0] = 0x46;
    options.extend([1, 1, 1, 0]); // NOP NOP NOP EOL
    options.extend(udp(h, s4, 40000, 7777, data));
    let len = options.len() as u16;
    options[2..4].copy_from_slice(&len.to_be_bytes());
    options[10..12].copy_from_slice(&[0, 0]);
    let c = csum(&options[..24]);
    options[10..12].copy_from_slice(&c.to_be_bytes());
    let options = from_host(&options);
    cases.push(Case {
        name: "IPv4 options: to the slow path".into(),
        prog: Prog::Egress,
        input: options.clone(),
        action: TC_ACT_REDIRECT,
        output: Some(punted(options)),
        counter: Some("slow-path"),
        random_id: false,
    });
    cases.push(Case {
        name: "a source other than the host's CLAT address is dropped".into(),
        prog: Prog::Egress,
        input: from_host(&ipv4(
            v4("10.0.0.1"),
            server,
            17,
            64,
            0,
            7,
            true,
            &udp(v4("10.0.0.1").into(), s4, 1, 2, data),
        )),
        action: TC_ACT_SHOT,
        output: None,
        counter: Some("client-not-allowed"),
        random_id: false,
    });
    for (what, dst) in [
        ("multicast", "224.0.0.251"),
        ("broadcast", "255.255.255.255"),
        ("the CLAT's own /29", "192.0.0.2"),
    ] {
        let d = v4(dst);
        cases.push(Case {
            name: format!("a {what} destination is not sent to the PLAT"),
            prog: Prog::Egress,
            input: from_host(&ipv4(
                host,
                d,
                17,
                1,
                0,
                8,
                false,
                &udp(h, d.into(), 5353, 5353, data),
            )),
            action: TC_ACT_SHOT,
            output: None,
            counter: Some("destination-not-allowed"),
            random_id: false,
        });
    }
    let mut arp = vec![0u8, 1, 8, 0, 6, 4, 0, 1];
    arp.extend(V4_MAC);
    arp.extend(host.octets());
    arp.extend([0; 6]);
    arp.extend(v4("192.0.0.2").octets());
    cases.push(Case {
        name: "ARP passes".into(),
        prog: Prog::Egress,
        input: eth([0xff; 6], V4_MAC, 0x0806, &arp),
        action: TC_ACT_OK,
        output: None,
        counter: None,
        random_id: false,
    });

    // ---- IPv6 on the uplink, in to the host.
    cases.push(Case {
        name: "udp 6->4 to the host: MACs of the CLAT's interface, TTL copied".into(),
        prog: Prog::Ingress,
        input: from_uplink(&ipv6(
            server6,
            clat6,
            17,
            60,
            0,
            &udp(s6, c6, 7777, 40000, data),
        )),
        action: TC_ACT_REDIRECT,
        output: Some(to_host(&ipv4(
            server,
            host,
            17,
            60,
            0,
            0,
            false,
            &udp(s4, h, 7777, 40000, data),
        ))),
        counter: Some("translated-6to4"),
        random_id: true,
    });
    cases.push(Case {
        name: "icmpv6 echo reply 6->4".into(),
        prog: Prog::Ingress,
        input: from_uplink(&ipv6(
            server6,
            clat6,
            58,
            60,
            0,
            &icmp6_echo(server6, clat6, 129, 0x77, 1, data),
        )),
        action: TC_ACT_REDIRECT,
        output: Some(to_host(&ipv4(
            server,
            host,
            1,
            60,
            0,
            0,
            false,
            &icmp4_echo(0, 0x77, 1, data),
        ))),
        counter: Some("translated-6to4"),
        random_id: true,
    });
    // The CLAT's own packet, quoted by a router that is not under the prefix.
    let sent6 = ipv6(clat6, server6, 17, 63, 0, &udp(c6, s6, 40000, 7777, data));
    let sent4 = ipv4(
        host,
        server,
        17,
        63,
        0,
        0,
        false,
        &udp(h, s4, 40000, 7777, data),
    );
    cases.push(Case {
        name: "packet too big from a router outside the prefix -> fragmentation needed from \
               192.0.0.8, MTU - 20"
            .into(),
        prog: Prog::Ingress,
        input: from_uplink(&ipv6(
            router,
            clat6,
            58,
            64,
            0,
            &icmp6_err(router, clat6, 2, 0, 1400, &sent6),
        )),
        action: TC_ACT_REDIRECT,
        output: Some(to_host(&ipv4(
            v4("192.0.0.8"),
            host,
            1,
            64,
            0,
            0,
            false,
            &icmp4_err(3, 4, 1380, &sent4),
        ))),
        counter: Some("icmp-error-translated"),
        random_id: false,
    });
    cases.push(Case {
        name: "port unreachable from the server (under the prefix) keeps its IPv4 source".into(),
        prog: Prog::Ingress,
        input: from_uplink(&ipv6(
            server6,
            clat6,
            58,
            64,
            0,
            &icmp6_err(server6, clat6, 1, 4, 0, &sent6),
        )),
        action: TC_ACT_REDIRECT,
        output: Some(to_host(&ipv4(
            server,
            host,
            1,
            64,
            0,
            0,
            false,
            &icmp4_err(3, 3, 0, &sent4),
        ))),
        counter: Some("icmp-error-translated"),
        random_id: false,
    });
    cases.push(Case {
        name: "a later IPv6 fragment 6->4".into(),
        prog: Prog::Ingress,
        input: from_uplink(&frag6(server6, clat6, 17, 60, 0x99, 24, false, &[0xcd; 32])),
        action: TC_ACT_REDIRECT,
        output: Some(to_host(&frag4(
            server,
            host,
            17,
            60,
            0x99,
            24,
            false,
            &[0xcd; 32],
        ))),
        counter: Some("fragment-translated"),
        random_id: false,
    });
    // What is not the CLAT's passes to the host's IPv6 stack untouched.
    let mut ns_msg = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    ns_msg.extend(clat6.octets());
    let solicited = v6("ff02::1:ffa7:c1a7");
    let ns_msg = with_checksum(
        ns_msg.clone(),
        2,
        &pseudo(router.into(), solicited.into(), 58, 24),
    );
    cases.push(Case {
        name: "neighbor solicitation for the CLAT address passes (the kernel answers)".into(),
        prog: Prog::Ingress,
        input: from_uplink(&ipv6(router, solicited, 58, 255, 0, &ns_msg)),
        action: TC_ACT_OK,
        output: None,
        counter: None,
        random_id: false,
    });
    let host6 = v6("2001:db8:1::2");
    cases.push(Case {
        name: "traffic to the host's own IPv6 address passes".into(),
        prog: Prog::Ingress,
        input: from_uplink(&ipv6(
            server6,
            host6,
            17,
            60,
            0,
            &udp(s6, host6.into(), 7777, 40000, data),
        )),
        action: TC_ACT_OK,
        output: None,
        counter: None,
        random_id: false,
    });
    let outside = v6("2001:db8:99::1");
    cases.push(Case {
        name: "to the CLAT address from outside the prefix passes".into(),
        prog: Prog::Ingress,
        input: from_uplink(&ipv6(
            outside,
            clat6,
            17,
            60,
            0,
            &udp(outside.into(), c6, 7777, 40000, data),
        )),
        action: TC_ACT_OK,
        output: None,
        counter: None,
        random_id: false,
    });
    let mut with_ext = vec![17u8, 0, 1, 4, 0, 0, 0, 0]; // destination options, PadN
    with_ext.extend(udp(s6, c6, 7777, 40000, data));
    let with_ext = from_uplink(&ipv6(server6, clat6, 60, 60, 0, &with_ext));
    cases.push(Case {
        name: "extension headers: to the slow path".into(),
        prog: Prog::Ingress,
        input: with_ext.clone(),
        action: TC_ACT_REDIRECT,
        output: Some(punted(with_ext)),
        counter: Some("slow-path"),
        random_id: false,
    });
    run_cases(&ns, &cases, false)?;

    // Off (no prefix, or native IPv4): the host's IPv4 is dropped (no route), the uplink's
    // IPv6 passes untouched.
    let off = vec![
        Case {
            name: "off: the host's IPv4 is dropped".into(),
            prog: Prog::Egress,
            input: from_host(&ipv4(
                host,
                server,
                17,
                64,
                0,
                1,
                true,
                &udp(h, s4, 40000, 7777, data),
            )),
            action: TC_ACT_SHOT,
            output: None,
            counter: Some("no-route"),
            random_id: false,
        },
        Case {
            name: "off: the uplink's IPv6 passes".into(),
            prog: Prog::Ingress,
            input: from_uplink(&ipv6(
                server6,
                clat6,
                17,
                60,
                0,
                &udp(s6, c6, 7777, 40000, data),
            )),
            action: TC_ACT_OK,
            output: None,
            counter: None,
            random_id: false,
        },
    ];
    run_cases(&ns, &off, true)
}
