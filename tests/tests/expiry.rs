//! The controller's expiry pass on real, loaded maps: batch reads and deletes
//! (`dataplane::batch`) across their chunk boundaries, and one pass over a table of fresh,
//! expired and half sessions, bindings and permits, compared entry by entry with what must
//! remain, with the gauges the pass counted against a separate count.

mod fixture_instance;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use aya::maps::IterableMap;
use fixture_instance::{BASE, with_fixture_instance};
use translator::{clock::monotonic_ns, config::Config, dataplane::batch, sessions};
use translator_common::{
    IPPROTO_TCP, IPPROTO_UDP,
    maps::{
        BINDING_STATIC, BindingKey4, BindingKey6, BindingValue4, BindingValue6, FilterKey,
        SessionKey4, SessionKey6, SessionValue4, SessionValue6,
    },
    tcp,
};
use translator_tests::require_root;

/// Short UDP and transitory timeouts (20 s), so that the timestamps of expired entries need
/// only a minute of uptime behind them.
const SETTINGS: &str = "clients = [\"2001:db8:1::/48\"]\n[pool]\naddresses = [\"192.0.2.1\"]\n\
                        [limits]\nsessions = 20000\n[timeouts]\nudp = 20\ntcp_transitory = 20\n\
                        enforce_rfc_minimums = false\n";

/// Session `i`: client 2001:db8:1::(i / 1000 + 2), client port, remote 192.0.2.2 port 80, pool
/// port 1024 + i.
fn session(
    i: u32,
    proto: u8,
    state: u8,
    last_seen: u64,
) -> (SessionKey6, SessionValue6, SessionValue4) {
    let client = [
        0x2001_0db8u32.to_be(),
        1u32.to_be(),
        0,
        (i / 1000 + 2).to_be(),
    ];
    let k6 = SessionKey6 {
        client,
        remote: u32::from_be_bytes([192, 0, 2, 2]).to_be(),
        client_port_be: (10_000 + (i % 1000) as u16).to_be(),
        remote_port_be: 80u16.to_be(),
        proto,
        _pad: [0; 3],
    };
    let v6 = SessionValue6 {
        pool: u32::from_be_bytes([192, 0, 2, 1]).to_be(),
        pool_port_be: (1024 + i as u16).to_be(),
        flags: 0,
        state,
        last_seen,
    };
    let v4 = SessionValue4 {
        client,
        client_port_be: k6.client_port_be,
        flags: 0,
        state,
        _pad: [0; 4],
        last_seen,
    };
    (k6, v6, v4)
}

/// Now (CLOCK_MONOTONIC ns) and `d` before it; an error when the machine has been up less
/// than `d`, since the clock starts at boot.
fn now_and_ago(d: Duration) -> Result<(u64, u64)> {
    let now = monotonic_ns();
    let back = d.as_nanos() as u64;
    ensure!(
        now > back,
        "the machine has been up less than {d:?}; the test needs timestamps that far back"
    );
    Ok((now, now - back))
}

fn keys6(maps: &translator::dataplane::Maps) -> Result<Vec<SessionKey6>> {
    let mut out = Vec::new();
    batch::for_each(
        IterableMap::map(&maps.sessions6),
        |k: &SessionKey6, _: &SessionValue6| out.push(*k),
    )
    .context("batch lookup of SESSIONS6")?;
    Ok(out)
}

/// Every entry once, whatever the size against the 4096-entry chunk; a batch delete of half
/// of them with keys already gone among them deletes exactly the present ones.
#[test]
fn batch_reads_and_deletes_cross_chunk_boundaries() -> Result<()> {
    require_root()?;
    with_fixture_instance("batch", SETTINGS, |fx| {
        let now = monotonic_ns();
        for n in [0u32, 1, 4095, 4096, 4097, 12_000] {
            let all: Vec<SessionKey6> = (0..n)
                .map(|i| {
                    let (k, v, _) = session(i, IPPROTO_UDP, 0, now);
                    fx.maps.sessions6.insert(k, v, 0).map(|()| k)
                })
                .collect::<Result<_, _>>()?;
            let seen = keys6(&fx.maps)?;
            let distinct: BTreeSet<_> = seen.iter().map(|k| format!("{k:?}")).collect();
            ensure!(
                seen.len() == n as usize && distinct.len() == n as usize,
                "{n} entries: the batch walk returned {} ({} distinct)",
                seen.len(),
                distinct.len()
            );
            // Every other key, plus keys that were never there, interleaved.
            let mut doomed = Vec::new();
            for (i, k) in all.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
                doomed.push(*k);
                if i % 6 == 0 {
                    doomed.push(session(50_000 + i as u32, IPPROTO_UDP, 0, now).0);
                }
            }
            let deleted = batch::delete(IterableMap::map(&fx.maps.sessions6), &doomed)?;
            let left = keys6(&fx.maps)?;
            ensure!(
                deleted == n.div_ceil(2) as usize && left.len() == (n / 2) as usize,
                "{n} entries: deleting {} keys ({} present) deleted {deleted}, left {}",
                doomed.len(),
                n.div_ceil(2),
                left.len()
            );
            ensure!(
                left.iter()
                    .all(|k| all.iter().position(|a| a == k).is_some_and(|p| p % 2 == 1)),
                "{n} entries: a key that was not deleted is missing, or a deleted one is back"
            );
            batch::delete(IterableMap::map(&fx.maps.sessions6), &left)?;
        }
        Ok(())
    })
}

/// One pass over: fresh and expired UDP sessions, established TCP sessions idle past the
/// transitory timeout but within the established one, IPv4 halves without an IPv6 half (old
/// and fresh), a dynamic binding without sessions (old), a static one, one with a session, and
/// a permit without a session. Exactly the expired sessions, the idle binding and the stale
/// permit go, and the orphan sweep after it takes the old half; the counts the pass left are those a separate count finds.
#[test]
fn an_expiry_pass_removes_exactly_what_expired() -> Result<()> {
    require_root()?;
    let cfg = Config::parse(&format!("{BASE}{SETTINGS}"))?;
    with_fixture_instance("expiry", SETTINGS, |fx| {
        let (now, _) = now_and_ago(Duration::from_secs(120))?;
        let ago = |d: Duration| now.saturating_sub(d.as_nanos() as u64);
        let (udp_to, trans) = (cfg.timeouts.udp, cfg.timeouts.tcp_transitory);
        let mut keep6 = BTreeSet::new();
        let mut keep4 = BTreeSet::new();
        let mut expired = BTreeSet::new();
        let mut put = |i: u32, proto: u8, state: u8, last: u64, keep: bool| -> Result<()> {
            let (k6, v6, v4) = session(i, proto, state, last);
            let k4 = k6.reverse(&v6);
            fx.maps.sessions6.insert(k6, v6, 0)?;
            fx.maps.sessions4.insert(k4, v4, 0)?;
            if keep {
                keep6.insert(format!("{k6:?}"));
                keep4.insert(format!("{k4:?}"));
            } else {
                expired.insert(format!("{k6:?}"));
            }
            Ok(())
        };
        // (sessions, protocol, state, idle for, kept)
        let idle = Duration::from_secs(5);
        for (range, proto, state, idle_for, keep) in [
            (0..3000, IPPROTO_UDP, 0, Duration::from_secs(1), true),
            (3000..5000, IPPROTO_UDP, 0, udp_to + idle, false),
            (
                5000..5100,
                IPPROTO_TCP,
                tcp::ESTABLISHED,
                trans + idle,
                true,
            ),
            (5100..5150, IPPROTO_TCP, tcp::V6_INIT, trans + idle, false),
        ] {
            for i in range {
                put(i, proto, state, ago(idle_for), keep)?;
            }
        }
        // IPv4 halves alone: an old one (a create that lost a race) and a fresh one (its IPv6
        // half may be on its way).
        for (i, last, keep) in [
            (6000, ago(Duration::from_secs(60)), false),
            (6001, now, true),
        ] {
            let (k6, v6, v4) = session(i, IPPROTO_UDP, 0, last);
            let k4 = k6.reverse(&v6);
            fx.maps.sessions4.insert(k4, v4, 0)?;
            if keep {
                keep4.insert(format!("{k4:?}"));
            }
        }
        // Bindings: client port 10000 of client ::2 has fresh sessions; ::9 has none.
        let binding = |host: u32, port: u16, flags: u8, last_used: u64| {
            let client = [0x2001_0db8u32.to_be(), 1u32.to_be(), 0, host.to_be()];
            (
                BindingKey6 {
                    client,
                    client_port_be: port.to_be(),
                    proto: IPPROTO_UDP,
                    _pad: 0,
                },
                BindingValue6 {
                    pool: u32::from_be_bytes([192, 0, 2, 1]).to_be(),
                    pool_port_be: (40_000 + port).to_be(),
                    flags,
                    _pad: 0,
                    last_used,
                },
            )
        };
        let old = ago(Duration::from_secs(60));
        let bindings = [
            (binding(2, 10_000, 0, old), true),
            (binding(9, 1, 0, old), false),
            (binding(9, 2, BINDING_STATIC, old), true),
        ];
        for ((k, v), _) in &bindings {
            fx.maps.bindings6.insert(*k, *v, 0)?;
            let k4 = BindingKey4 {
                pool: v.pool,
                pool_port_be: v.pool_port_be,
                proto: k.proto,
                _pad: 0,
            };
            let v4 = BindingValue4 {
                client: k.client,
                client_port_be: k.client_port_be,
                flags: v.flags,
                _pad: 0,
            };
            fx.maps.bindings4.insert(k4, v4, 0)?;
        }
        // A permit of a live session, and one of nothing.
        let (k6, v6, _) = session(0, IPPROTO_UDP, 0, now);
        let live_permit = FilterKey {
            pool: v6.pool,
            remote: k6.remote,
            pool_port_be: v6.pool_port_be,
            proto: IPPROTO_UDP,
            _pad: 0,
        };
        let stale_permit = FilterKey {
            pool_port_be: 65_000u16.to_be(),
            ..live_permit
        };
        fx.maps.filters.insert(live_permit, old, 0)?;
        fx.maps.filters.insert(stale_permit, old, 0)?;

        let pass = sessions::expire(&mut fx.maps, &cfg);
        let orphans = sessions::sweep_orphans(&mut fx.maps);
        ensure!(
            orphans == 1,
            "the sweep removed {orphans} half sessions, expected the old one"
        );

        let gone: BTreeSet<String> = pass.expired.iter().map(|(k, _)| format!("{k:?}")).collect();
        ensure!(
            pass.sessions == expired.len() && gone == expired,
            "the pass expired {} sessions, expected the {} idle past their timeout",
            pass.sessions,
            expired.len()
        );
        let left6: BTreeSet<String> = keys6(&fx.maps)?.iter().map(|k| format!("{k:?}")).collect();
        let mut left4 = BTreeSet::new();
        batch::for_each(
            IterableMap::map(&fx.maps.sessions4),
            |k: &SessionKey4, _: &SessionValue4| {
                left4.insert(format!("{k:?}"));
            },
        )?;
        ensure!(
            left6 == keep6,
            "SESSIONS6 after the pass: {} entries, expected {}",
            left6.len(),
            keep6.len()
        );
        ensure!(
            left4 == keep4,
            "SESSIONS4 after the pass: {} entries, expected {}",
            left4.len(),
            keep4.len()
        );
        for ((k, _), keep) in &bindings {
            ensure!(
                fx.maps.bindings6.get(k, 0).is_ok() == *keep,
                "binding {k:?}: kept {}, expected {keep}",
                !keep
            );
        }
        ensure!(
            pass.bindings == 1 && pass.filters == 1,
            "the pass removed {} bindings and {} permits, expected 1 and 1",
            pass.bindings,
            pass.filters
        );
        ensure!(
            fx.maps.filters.get(&live_permit, 0).is_ok()
                && fx.maps.filters.get(&stale_permit, 0).is_err(),
            "the live session's permit must stay and the other go"
        );
        let counted = sessions::count(&fx.maps);
        ensure!(
            pass.left == counted,
            "the pass left {:?}, a count finds {counted:?}",
            pass.left
        );
        let count = |p: &str, s: &str| {
            counted
                .sessions
                .iter()
                .find(|(cp, cs, _)| cp.name() == p && cs.name() == s)
                .map_or(0, |(_, _, n)| *n)
        };
        ensure!(
            count("udp", "udp") == 3000
                && count("tcp", "established") == 100
                && counted.bindings == 2,
            "counted {counted:?}"
        );
        Ok(())
    })
}

/// A session only the IPv4 side keeps busy stays: a remote host's packet restarts the lifetime
/// in the `SESSIONS6` entry too, the one the pass reads. Real packets through the XDP program:
/// the client's first packet opens the session, both entries are then made older than the UDP
/// timeout, a reply from the server comes in, and the pass keeps the session; without the reply
/// (a second session aged the same way) it goes.
#[test]
fn a_session_kept_busy_from_the_ipv4_side_does_not_expire() -> Result<()> {
    use fixture_instance::{CLIENT, POOL, SERVER4, XDP_REDIRECT};
    use translator_tests::{
        fixture::{MAC_GW4, MAC_SERVER},
        packets::*,
    };
    require_root()?;
    let cfg = Config::parse(&format!("{BASE}{SETTINGS}"))?;
    with_fixture_instance("expiry-v4", SETTINGS, |fx| {
        for sport in [40_000, 40_001] {
            let frame = fixture_instance::udp_to_server(CLIENT, sport, 53, b"q");
            let out = fx.run(&frame, fx.v6if)?;
            ensure!(
                out.action == XDP_REDIRECT,
                "client port {sport}: action {}",
                out.action
            );
        }
        let (_, old) = now_and_ago(cfg.timeouts.udp + Duration::from_secs(5))?;
        let mut pool_port = 0;
        for k in keys6(&fx.maps)? {
            let mut v6 = fx.maps.sessions6.get(&k, 0)?;
            let k4 = k.reverse(&v6);
            let mut v4 = fx.maps.sessions4.get(&k4, 0)?;
            v6.last_seen = old;
            v4.last_seen = old;
            fx.maps.sessions6.insert(k, v6, 0)?;
            fx.maps.sessions4.insert(k4, v4, 0)?;
            if u16::from_be(k.client_port_be) == 40_000 {
                pool_port = u16::from_be(v6.pool_port_be);
            }
        }
        // The server answers client port 40000's session only.
        let seg = udp(SERVER4.into(), POOL.into(), 53, pool_port, b"a");
        let reply = eth(
            MAC_GW4,
            MAC_SERVER,
            0x0800,
            &ipv4(SERVER4, POOL, 17, 64, 0, 1, true, &seg),
        );
        let out = fx.run(&reply, fx.v4if)?;
        ensure!(
            out.action == XDP_REDIRECT,
            "the reply: action {}",
            out.action
        );
        let pass = sessions::expire(&mut fx.maps, &cfg);
        let left: Vec<u16> = keys6(&fx.maps)?
            .iter()
            .map(|k| u16::from_be(k.client_port_be))
            .collect();
        ensure!(
            pass.sessions == 1 && left == [40_000],
            "the pass removed {} sessions and left client ports {left:?}: the one the server \
             answered must stay, the other go",
            pass.sessions
        );
        Ok(())
    })
}

/// Adopting sessions of an earlier data plane, which kept an inbound packet's last use only in
/// the `SESSIONS4` entry: the newer time (and TCP state) is copied to `SESSIONS6` once, so the
/// first pass keeps a session only the IPv4 side kept busy, and expires one nobody used.
#[test]
fn adopted_sessions_keep_their_inbound_use() -> Result<()> {
    require_root()?;
    let cfg = Config::parse(&format!("{BASE}{SETTINGS}"))?;
    with_fixture_instance("expiry-adopt", SETTINGS, |fx| {
        let (now, old) = now_and_ago(cfg.timeouts.udp + Duration::from_secs(5))?;
        // Session 0: busy from the IPv4 side only (a TCP one, whose state moved there too);
        // session 1: idle on both sides.
        let (k0, mut v0, mut w0) = session(0, IPPROTO_TCP, tcp::V6_INIT, old);
        w0.last_seen = now;
        w0.state = tcp::ESTABLISHED;
        let (k1, v1, w1) = session(1, IPPROTO_UDP, 0, old);
        for (k, v, w) in [(k0, v0, w0), (k1, v1, w1)] {
            fx.maps.sessions6.insert(k, v, 0)?;
            fx.maps.sessions4.insert(k.reverse(&v), w, 0)?;
        }
        let n = sessions::adopt_last_use(&mut fx.maps);
        v0 = fx.maps.sessions6.get(&k0, 0)?;
        ensure!(
            n == 1 && v0.last_seen == now && v0.state == tcp::ESTABLISHED,
            "adoption updated {n} entries; session 0's IPv6 side has last use {} (want {now}) \
             and state {} (want established)",
            v0.last_seen,
            v0.state
        );
        let pass = sessions::expire(&mut fx.maps, &cfg);
        let left = keys6(&fx.maps)?;
        ensure!(
            pass.sessions == 1 && left == [k0],
            "the first pass must expire only the idle session: removed {}, left {left:?}",
            pass.sessions
        );
        Ok(())
    })
}
