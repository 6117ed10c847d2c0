//! Router advertisements from the gateway (issue 11 part A), byte by byte: every
//! advertisement is captured from the wire in the client namespace and compared whole with an
//! independent encoding (`translator_tests::ra`, not the product's encoder), Ethernet and IPv6
//! headers and the ICMPv6 checksum included.
//!
//! - `advertisement_bytes_match_an_independent_encoder`: every PREF64 prefix length, the
//!   header fields, lifetimes (defaults, infinity, rounding to 8 s), RDNSS (listed and derived
//!   from `dns64.listen`), prefix information, MTU, DNSSL, SLLA; rdisc6's view; the 3 s
//!   spacing of multicast answers and the 0.5 s answer delay; a reload that withdraws entries
//!   and one that is refused.
//! - `bad_solicitations_are_refused_counted_and_survived`: wrong hop limit, wrong code, too
//!   short, zero option length, truncated option, SLLA from the unspecified address (crafted
//!   with scapy): no answer, one counter each, shown by `translator trace`, and the controller
//!   still answers a valid solicitation.
//!
//! Every namespace, process and file a test creates is removed by a guard, also when it fails.
//! Traffic goes only to addresses inside the test's namespaces. Needs root.

mod ra_common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use ra_common::*;
use translator_tests::ra::{Capture, Opt, Ra};
use translator_tests::{Gateway, Proc, TempDir, Topology, wait_until};

// ---------------------------------------------------------------------------------------------

/// One configuration of the byte-comparison test.
struct Case {
    /// `nat64.prefix`.
    prefix: &'static str,
    /// The `[ra]` table (and `[dns64]` when needed).
    toml: &'static str,
    /// What the advertisement must say, SLLA left out (added by the test).
    want: Ra,
}

fn cases() -> Vec<Case> {
    let ra = |hop_limit, managed, other, router_lifetime, options| Ra {
        hop_limit,
        managed,
        other,
        router_lifetime,
        options,
    };
    vec![
        Case {
            prefix: "2001:db8:64::/96",
            toml: "[ra]\nenabled = true\nprefixes = [\"2001:db8:1::/64\", \"2001:db8:2::/64\"]\n\
                   mtu = 1500\nrdnss = [\"2001:db8:1::53\", \"2001:db8:1::1\"]\n\
                   dnssl = [\"example.test\", \"corp.example\"]\n",
            want: ra(
                64,
                false,
                false,
                1800,
                vec![
                    Opt::Mtu(1500),
                    pio("2001:db8:1::", 2_592_000, 604_800),
                    pio("2001:db8:2::", 2_592_000, 604_800),
                    Opt::Rdnss {
                        lifetime: 1800,
                        servers: vec![ip("2001:db8:1::53"), ip("2001:db8:1::1")],
                    },
                    Opt::Dnssl {
                        lifetime: 1800,
                        names: vec!["example.test".into(), "corp.example".into()],
                    },
                    pref64(1800, "2001:db8:64::", 96),
                ],
            ),
        },
        Case {
            // Options only (router lifetime 0), M and O, hop limit 0 (unspecified), RDNSS
            // derived from dns64.listen, a PREF64 lifetime rounded up to 8 s.
            prefix: "2001:db8:64:1::/64",
            toml: "[dns64]\nenabled = true\nlisten = [\"[2001:db8:1::1]:53\"]\n\
                   upstreams = [\"192.0.2.2:53\"]\n\n[ra]\nenabled = true\nmanaged = true\n\
                   other_config = true\nrouter_lifetime = 0\nhop_limit = 0\n\
                   pref64_lifetime = 1001\n",
            want: ra(
                0,
                true,
                true,
                0,
                vec![
                    Opt::Rdnss {
                        lifetime: 1800,
                        servers: vec![ip("2001:db8:1::1")],
                    },
                    pref64(1008, "2001:db8:64:1::", 64),
                ],
            ),
        },
        Case {
            // Lifetimes that follow a short max_interval (3 x 30 s; PREF64 rounded up to 96).
            prefix: "2001:db8:64:200::/56",
            toml: "[ra]\nenabled = true\nmax_interval = 30\nprefixes = [\"2001:db8:1::/64\"]\n\
                   valid_lifetime = 86400\npreferred_lifetime = 14400\n\
                   rdnss = [\"2001:db8:1::53\"]\n",
            want: ra(
                64,
                false,
                false,
                90,
                vec![
                    pio("2001:db8:1::", 86_400, 14_400),
                    Opt::Rdnss {
                        lifetime: 90,
                        servers: vec![ip("2001:db8:1::53")],
                    },
                    pref64(96, "2001:db8:64:200::", 56),
                ],
            ),
        },
        Case {
            // The longest interval, infinite lifetimes.
            prefix: "2001:db8:65::/48",
            toml: "[ra]\nenabled = true\nmax_interval = 1800\nprefixes = [\"2001:db8:2::/64\"]\n\
                   valid_lifetime = 4294967295\npreferred_lifetime = 4294967295\n\
                   rdnss = [\"2001:db8:1::53\"]\nrdnss_lifetime = 4294967295\n\
                   dnssl = [\"example.test\"]\ndnssl_lifetime = 7200\n",
            want: ra(
                64,
                false,
                false,
                5400,
                vec![
                    pio("2001:db8:2::", u32::MAX, u32::MAX),
                    Opt::Rdnss {
                        lifetime: u32::MAX,
                        servers: vec![ip("2001:db8:1::53")],
                    },
                    Opt::Dnssl {
                        lifetime: 7200,
                        names: vec!["example.test".into()],
                    },
                    pref64(5400, "2001:db8:65::", 48),
                ],
            ),
        },
        Case {
            // The shortest interval, no RDNSS at all, the longest router lifetime.
            prefix: "2001:db8:6600::/40",
            toml: "[ra]\nenabled = true\nmax_interval = 4\nmin_interval = 3\n\
                   router_lifetime = 9000\nrdnss = []\n",
            want: ra(
                64,
                false,
                false,
                9000,
                vec![pref64(16, "2001:db8:6600::", 40)],
            ),
        },
        Case {
            // A jumbo MTU and the longest PREF64 lifetime.
            prefix: "3fff:64::/32",
            toml: "[ra]\nenabled = true\nmtu = 9000\npref64_lifetime = 65528\nrdnss = []\n",
            want: ra(
                64,
                false,
                false,
                1800,
                vec![Opt::Mtu(9000), pref64(65528, "3fff:64::", 32)],
            ),
        },
    ]
}

/// `rdisc6 -1 -n c0` in the client, whitespace collapsed per line.
fn rdisc6(topo: &Topology) -> Result<Vec<String>> {
    let out = topo.client.run_timeout(
        &["rdisc6", "-1", "-n", "-r", "5", "-w", "2000", "c0"],
        Duration::from_secs(30),
    )?;
    Ok(out
        .stdout_str()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect())
}

#[test]
fn advertisement_bytes_match_an_independent_encoder() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("ra1")?;
    let capture = Capture::start(&topo.client, "c0")?;
    let mut gw: Option<Gateway<'_>> = None;
    let mut link: Option<GwLink> = None;
    for (i, case) in cases().into_iter().enumerate() {
        let mut cfg = gateway_config(&topo, case.toml);
        cfg.prefix = case.prefix.to_owned();
        let seen = match gw.as_mut() {
            None => {
                let seen = capture.adverts().len();
                gw = Some(Gateway::start(&topo.gateway, cfg)?);
                seen
            }
            Some(g) => {
                // A new configuration for the same instance: stop, rewrite, start (the data
                // plane is adopted; the prefix may change on restart).
                g.stop()?;
                let seen = capture.adverts().len();
                cfg.instance = g.instance().to_owned();
                std::fs::write(g.config_path(), cfg.to_toml())?;
                g.launch()?;
                seen
            }
        };
        let g = gw.as_ref().context("started above")?;
        if link.is_none() {
            link = Some(GwLink::read(&topo)?);
        }
        let l = link.as_ref().context("read above")?;
        let mut want = case.want.clone();
        want.options.insert(0, Opt::Slla(l.mac));
        let got = capture
            .next_advert(seen, Duration::from_secs(10))
            .with_context(|| {
                format!(
                    "case {i} ({}): no advertisement within 10 s; log:\n{}",
                    case.prefix,
                    g.log()
                )
            })?;
        check_advert(
            &format!("case {i} ({}), first advertisement", case.prefix),
            &got,
            l,
            &want,
        )?;

        if i == 0 {
            first_case_checks(&topo, g, l, &capture, &want)?;
        }
    }
    Ok(())
}

/// The checks that need one configuration only: rdisc6, answer timing, reloads.
fn first_case_checks(
    topo: &Topology,
    gw: &Gateway<'_>,
    l: &GwLink,
    capture: &Capture,
    want: &Ra,
) -> Result<()> {
    // rdisc6 shows what it received (its own solicitation is answered by multicast).
    let lines = rdisc6(topo)?;
    let mac_upper = mac_text(l.mac).to_uppercase();
    for line in [
        "Hop limit : 64 ( 0x40)".to_owned(),
        "Stateful address conf. : No".to_owned(),
        "Stateful other conf. : No".to_owned(),
        "Router lifetime : 1800 (0x00000708) seconds".to_owned(),
        "Reachable time : unspecified (0x00000000)".to_owned(),
        format!("Source link-layer address: {mac_upper}"),
        "MTU : 1500 bytes (valid)".to_owned(),
        "Prefix : 2001:db8:1::/64".to_owned(),
        "Prefix : 2001:db8:2::/64".to_owned(),
        "On-link : Yes".to_owned(),
        "Autonomous address conf.: Yes".to_owned(),
        "Valid time : 2592000 (0x00278d00) seconds".to_owned(),
        "Pref. time : 604800 (0x00093a80) seconds".to_owned(),
        "Recursive DNS server : 2001:db8:1::53".to_owned(),
        "Recursive DNS server : 2001:db8:1::1".to_owned(),
        "DNS search list : example.test corp.example".to_owned(),
        "DNS search list lifetime: 1800 (0x00000708) seconds".to_owned(),
        format!("from {}", l.ll),
    ] {
        ensure!(
            lines.contains(&line),
            "rdisc6 did not print {line:?}:\n{}",
            lines.join("\n")
        );
    }
    ensure!(
        lines
            .iter()
            .any(|x| x.starts_with("DNS server")
                && x.ends_with("lifetime : 1800 (0x00000708) seconds")),
        "rdisc6 did not print the RDNSS lifetime:\n{}",
        lines.join("\n")
    );

    // A solicitation right after a multicast advertisement: answered 3 s after it (plus at
    // most 0.5 s), with the same bytes.
    std::thread::sleep(Duration::from_secs(4));
    let seen = capture.adverts().len();
    let last = capture
        .adverts()
        .last()
        .map(|f| f.at)
        .context("no advertisement so far")?;
    solicit(topo, false)?;
    let answer = capture
        .next_advert(seen, Duration::from_secs(6))
        .context("no answer to a solicitation within 6 s")?;
    check_advert("answer to a solicitation", &answer, l, want)?;
    let rs = capture
        .solicitations()
        .last()
        .map(|f| f.at)
        .context("the capture did not see the solicitation")?;
    let delay = answer.at.duration_since(rs);
    ensure!(
        delay <= Duration::from_millis(700),
        "a solicitation more than 3 s after the last advertisement was answered after {delay:?} \
         (at most 0.5 s)"
    );
    ensure!(
        answer.at.duration_since(last) >= Duration::from_millis(2980),
        "two multicast advertisements {:?} apart (at least 3 s)",
        answer.at.duration_since(last)
    );
    // A second one at once: not before 3 s after the answer.
    let seen = capture.adverts().len();
    solicit(topo, true)?;
    let second = capture
        .next_advert(seen, Duration::from_secs(6))
        .context("no answer to the second solicitation within 6 s")?;
    let gap = second.at.duration_since(answer.at);
    ensure!(
        gap >= Duration::from_millis(2980) && gap <= Duration::from_millis(3800),
        "answers {gap:?} apart; expected 3 to 3.5 s (MIN_DELAY_BETWEEN_RAS plus the random delay)"
    );
    check_advert("answer to a solicitation from ::", &second, l, want)?;

    // A reload that drops a prefix, an RDNSS address and a search domain: the next
    // advertisement has the new values and withdraws the old ones with lifetime 0.
    let mut cfg = gateway_config(
        topo,
        "[ra]\nenabled = true\nprefixes = [\"2001:db8:1::/64\"]\nmtu = 1500\n\
         rdnss = [\"2001:db8:1::53\"]\ndnssl = [\"example.test\"]\n",
    );
    cfg.prefix = "2001:db8:64::/96".into();
    cfg.instance = gw.instance().to_owned();
    std::fs::write(gw.config_path(), cfg.to_toml())?;
    let seen = capture.adverts().len();
    let out = gw.cli(&["reload"])?;
    ensure!(
        out.stdout_str().contains("reloaded: ra"),
        "reload said: {}",
        out.stdout_str()
    );
    let reloaded = Ra {
        options: vec![
            Opt::Slla(l.mac),
            Opt::Mtu(1500),
            pio("2001:db8:1::", 2_592_000, 604_800),
            Opt::Rdnss {
                lifetime: 1800,
                servers: vec![ip("2001:db8:1::53")],
            },
            Opt::Dnssl {
                lifetime: 1800,
                names: vec!["example.test".into()],
            },
            pref64(1800, "2001:db8:64::", 96),
            // Withdrawn.
            pio("2001:db8:2::", 0, 0),
            Opt::Rdnss {
                lifetime: 0,
                servers: vec![ip("2001:db8:1::1")],
            },
            Opt::Dnssl {
                lifetime: 0,
                names: vec!["corp.example".into()],
            },
        ],
        ..want.clone()
    };
    let after = capture
        .next_advert(seen, Duration::from_secs(6))
        .context("no advertisement within 6 s of the reload")?;
    check_advert("first advertisement after the reload", &after, l, &reloaded)?;

    // A reload with an invalid [ra] is refused with the setting's name, and nothing changes.
    let mut bad = cfg.clone();
    bad.extra = bad.extra.replace("[ra]\n", "[ra]\nmax_interval = 2000\n");
    std::fs::write(gw.config_path(), bad.to_toml())?;
    let mut c = gw.command();
    c.args(["reload", "--instance", gw.instance()]);
    let out = translator_tests::cmd::run(&mut c, Duration::from_secs(30))?;
    ensure!(
        !out.status.success()
            && out
                .stderr_str()
                .contains("ra.max_interval: 2000 is outside 4..1800 seconds"),
        "an invalid reload: {} {}",
        out.status,
        out.stderr_str()
    );
    std::thread::sleep(Duration::from_millis(3200));
    let seen = capture.adverts().len();
    solicit(topo, false)?;
    let still = capture
        .next_advert(seen, Duration::from_secs(6))
        .context("no answer after the refused reload")?;
    check_advert(
        "answer after the refused reload (withdrawals still sent)",
        &still,
        l,
        &reloaded,
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[test]
fn bad_solicitations_are_refused_counted_and_survived() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("ra2")?;
    let capture = Capture::start(&topo.client, "c0")?;
    let cfg = gateway_config(
        &topo,
        "[ra]\nenabled = true\nmax_interval = 1800\nprefixes = [\"2001:db8:1::/64\"]\n",
    );
    let mut gw = Gateway::start(&topo.gateway, cfg)?;
    let l = GwLink::read(&topo)?;
    let first = capture
        .next_advert(0, Duration::from_secs(10))
        .context("no first advertisement")?;

    // A tracer, to see the refusals as they happen.
    let scratch = TempDir::new("ra-trace")?;
    let mut trace_cmd = gw.command();
    trace_cmd.args([
        "trace",
        "--instance",
        gw.instance(),
        "--json",
        "--seconds",
        "30",
    ]);
    let tracer = Proc::spawn(&mut trace_cmd, &scratch.join("trace.log"))?;
    let sock = Path::new("/run/translator")
        .join(gw.instance())
        .join(format!("ra-trace-{}.sock", tracer.pid()));
    ensure!(
        wait_until(Duration::from_secs(10), || sock.exists()),
        "the tracer did not bind {}: {}",
        sock.display(),
        tracer.log()
    );

    // After the 3 s spacing, and long before the next unsolicited advertisement (16 s).
    let quiet = first.at + Duration::from_millis(3500);
    if let Some(wait) = quiet.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let before = ra_stats(&gw)?;
    let seen = capture.adverts().len();
    let mac = mac_text(mac_of(&topo.client, "c0")?);
    let ll = link_local(&topo.client, "c0")?;
    scapy(
        &topo.client,
        &format!(
            "e = Ether(src='{mac}', dst='33:33:00:00:00:02')
def v6(src='{ll}', hlim=255, **k):
    return IPv6(src=src, dst='ff02::2', hlim=hlim, **k)
short = v6(nh=58)/Raw(b'\\x85\\x00\\x00\\x00')
c = in6_chksum(58, short[Raw], bytes(short[Raw]))
frames = [
    e/v6(hlim=64)/ICMPv6ND_RS()/ICMPv6NDOptSrcLLAddr(lladdr='{mac}'),
    e/v6()/ICMPv6ND_RS(code=1)/ICMPv6NDOptSrcLLAddr(lladdr='{mac}'),
    e/v6(nh=58)/Raw(b'\\x85\\x00' + struct.pack('!H', c)),
    e/v6()/ICMPv6ND_RS()/Raw(b'\\x01\\x00' + bytes(6)),
    e/v6()/ICMPv6ND_RS()/Raw(b'\\x01\\x02' + b'\\xaa' * 6),
    e/v6(src='::')/ICMPv6ND_RS()/ICMPv6NDOptSrcLLAddr(lladdr='{mac}'),
]
sendp(frames, iface='c0', inter=0.05)"
        ),
    )?;
    std::thread::sleep(Duration::from_millis(1500));
    ensure!(
        capture.adverts().len() == seen,
        "invalid solicitations were answered: {} advertisement(s) after them",
        capture.adverts().len() - seen
    );
    ensure!(gw.is_running(), "the controller died: {}", gw.log());

    // One counter each, and the total.
    let reasons = [
        "rs-refused-hop-limit",
        "rs-refused-code",
        "rs-refused-too-short",
        "rs-refused-option-length",
        "rs-refused-truncated-option",
        "rs-refused-source-slla",
    ];
    let mut after = serde_json::Value::Null;
    let counted = wait_until(Duration::from_secs(10), || {
        after = ra_stats(&gw).unwrap_or_default();
        counter(&after, "rs-refused") >= counter(&before, "rs-refused") + 6
    });
    ensure!(
        counted,
        "rs-refused did not grow by 6: before {before}, after {after}"
    );
    for r in ["rs-refused"].iter().chain(&reasons) {
        let d = counter(&after, r) - counter(&before, r);
        let want = if *r == "rs-refused" { 6 } else { 1 };
        ensure!(
            d == want,
            "{r} grew by {d}, expected {want}: before {before}, after {after}"
        );
    }
    ensure!(
        counter(&after, "rs-received") >= counter(&before, "rs-received") + 6,
        "rs-received: before {before}, after {after}"
    );

    // The tracer printed each refusal with its reason.
    let mut refusals = Vec::new();
    let traced = wait_until(Duration::from_secs(5), || {
        refusals = tracer
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["origin"] == "controller" && v["what"] == "refused")
            .map(|v| v["detail"].as_str().unwrap_or_default().to_owned())
            .collect();
        refusals.len() >= 6
    });
    ensure!(
        traced,
        "the tracer showed {refusals:?}; its output:\n{}",
        tracer.log()
    );
    for (i, want) in [
        "hop limit 64, must be 255",
        "ICMP code 1, must be 0",
        "4 bytes, shorter than the 8 a solicitation needs",
        "option at byte 8 has length 0",
        "option at byte 8 is truncated (16 bytes announced, 8 left)",
        "source address unspecified but a source link-layer address option is present",
    ]
    .iter()
    .enumerate()
    {
        ensure!(
            refusals.get(i).map(String::as_str) == Some(*want),
            "refusal {i}: {:?}, expected {want:?} (all: {refusals:?})",
            refusals.get(i)
        );
    }
    drop(tracer);

    // Still serving: a valid solicitation gets an answer with the right bytes.
    let seen = capture.adverts().len();
    solicit(&topo, false)?;
    let answer = capture
        .next_advert(seen, Duration::from_secs(6))
        .context("no answer to a valid solicitation after the invalid ones")?;
    let want = Ra {
        hop_limit: 64,
        managed: false,
        other: false,
        router_lifetime: 5400,
        options: vec![
            Opt::Slla(l.mac),
            pio("2001:db8:1::", 2_592_000, 604_800),
            pref64(5400, "2001:db8:64::", 96),
        ],
    };
    check_advert("answer after the invalid solicitations", &answer, &l, &want)?;
    let mut stats = serde_json::Value::Null;
    ensure!(
        wait_until(Duration::from_secs(10), || {
            stats = ra_stats(&gw).unwrap_or_default();
            counter(&stats, "rs-answered") > counter(&after, "rs-answered")
        }),
        "rs-answered did not grow: {stats}"
    );
    ensure!(gw.is_running(), "the controller died");
    Ok(())
}
