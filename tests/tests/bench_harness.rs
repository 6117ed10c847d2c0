//! The benchmark harness (`bench_harness` in translator-ebpf/src/baseline.rs) measures what the
//! benchmarks claim only if it hands the program under test the same frame at every repetition
//! of a `BPF_PROG_TEST_RUN`. These tests check that with real packets: after many repetitions
//! the output equals one plain run (a forwarder that decrements the hop limit, the translator
//! shrinking IPv6 into IPv4 and growing IPv4 into IPv6), and the per-repetition port really
//! changes. They also check that the unpinned load the benchmarks use leaves nothing in bpffs.

mod fixture_instance;

use std::os::fd::AsFd as _;

use anyhow::{Result, bail};
use fixture_instance::{
    CLIENT, POOL, SERVER4, SERVER6, XDP_REDIRECT, XDP_TX, with_fixture_instance,
};
use translator::testrun::{self, Harness, Vary, without_ipv4_id as without_id};
use translator_tests::{
    fixture::{MAC_CLIENT, MAC_GW4, MAC_GW6, MAC_SERVER},
    packets::*,
    require_root,
};

fn leftover_pins() -> Vec<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("translator-unpinned"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn harness_restores_the_frame_before_every_repetition() -> Result<()> {
    require_root()?;
    let settings = r#"clients = ["2001:db8:1::/64"]
[pool]
addresses = ["192.0.2.1"]
"#;
    with_fixture_instance("harness", settings, |fx| {
        let (v6if, v4if) = (fx.v6if, fx.v4if);
        let mut h = Harness::new(1)?;
        if !leftover_pins().is_empty() {
            bail!("load_unpinned left {:?} in /sys/fs/bpf", leftover_pins());
        }

        // The forwarder decrements the TTL: restored input means one decrement, not 1000.
        let seg = udp(POOL.into(), SERVER4.into(), 40000, 9, b"harness");
        let fwd4 = eth(
            MAC_GW6,
            MAC_CLIENT,
            0x0800,
            &ipv4(POOL, SERVER4, 17, 64, 0, 1, true, &seg),
        );
        let fwd = h.program("baseline_forward")?;
        let plain = testrun::run(fwd.as_fd(), &fwd4, v6if, 1)?;
        let via = h.run(&fwd, &fwd4, None, v6if, 1000)?;
        assert_eq!(plain.action, XDP_REDIRECT);
        assert_eq!(via.action, plain.action);
        assert_eq!(
            via.packet, plain.packet,
            "forwarder output after 1000 repetitions"
        );
        assert_eq!(via.packet[14 + 8], 63, "TTL decremented once");

        // Per-repetition ports: repetition n (from 0) gets 1000 + n % 10; after 25 runs the
        // last one (n = 24) has source port 1004 (the per-CPU count starts at 0 for a fresh
        // object).
        let vary = Vary {
            lo_off: 34,
            lo_base: 1000,
            lo_mod: 10,
            hi_off: 0,
            hi_base: 0,
            hi_len: 2,
        };
        let via = h.run(&fwd, &fwd4, Some(vary), v6if, 25)?;
        assert_eq!(u16::from_be_bytes([via.packet[34], via.packet[35]]), 1004);

        // The translator: IPv6 -> IPv4 shrinks the frame, IPv4 -> IPv6 grows it.
        let tr = fx.prog.try_clone()?;
        let seg = udp(CLIENT.into(), SERVER6.into(), 40000, 9, b"harness");
        let u6 = eth(
            MAC_GW6,
            MAC_CLIENT,
            0x86dd,
            &ipv6(CLIENT, SERVER6, 17, 64, 0, &seg),
        );
        let first = fx.run(&u6, v6if)?;
        assert_eq!(
            first.action, XDP_REDIRECT,
            "first packet creates the session"
        );
        let pool_port = u16::from_be_bytes([first.packet[34], first.packet[35]]);
        let plain = fx.run(&u6, v6if)?;
        let via = h.run(&tr, &u6, None, v6if, 500)?;
        assert_eq!(via.action, XDP_REDIRECT);
        assert_eq!(
            without_id(via.packet),
            without_id(plain.packet),
            "6->4 output"
        );

        let seg = udp(SERVER4.into(), POOL.into(), 9, pool_port, b"harness");
        let u4 = eth(
            MAC_GW4,
            MAC_SERVER,
            0x0800,
            &ipv4(SERVER4, POOL, 17, 64, 0, 1, true, &seg),
        );
        let plain = fx.run(&u4, v4if)?;
        let via = h.run(&tr, &u4, None, v4if, 500)?;
        assert_eq!(plain.action, XDP_REDIRECT);
        assert_eq!(via.action, plain.action);
        assert_eq!(via.packet, plain.packet, "4->6 output");
        assert_eq!(via.packet.len(), u4.len() + 20);

        // The harness alone (tail call into a program that returns XDP_TX).
        let ret = h.program("bench_return")?;
        let via = h.run(&ret, &u4, None, v4if, 10)?;
        assert_eq!(via.action, XDP_TX);
        assert_eq!(via.packet, u4);
        Ok(())
    })
}
