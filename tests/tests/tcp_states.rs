//! The TCP state machine of RFC 6146 section 3.5.2 in the data plane, on both programs (XDP and
//! TC): TCP packets of a connection go through a freshly loaded instance one by one, and after
//! each the state both session entries carry is read from the maps and compared with the one
//! the RFC names. A client's open and close (V6 INIT, ESTABLISHED, V4 FIN RCV, V4 FIN + V6 FIN
//! RCV), a simultaneous open through a static mapping (V4 INIT, ESTABLISHED), a reset and the
//! recovery from it (TRANS, ESTABLISHED), and the inbound SYN held while no mapping lets it in
//! (what the controller needs to answer it is in `HELD_SYNS`). The packets' translation itself
//! is compared byte for byte in `dataplane_conformance.rs`.

mod fixture_instance;

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context as _, Result, ensure};
use fixture_instance::{CLIENT, Fixture, POOL, SERVER4, SERVER6, with_fixture_instance};
use translator_common::{
    maps::{HeldKey, SessionKey6},
    rfc6052::{raw4, raw6},
    tcp::{self, FIN, RST, SYN},
};
use translator_tests::{
    fixture::{MAC_CLIENT, MAC_GW4, MAC_GW6, MAC_SERVER},
    packets::{ACK, eth, ipv4, ipv6, tcp as segment},
    require_root,
};

const SETTINGS: &str = r#"
clients = ["2001:db8:1::/64"]
[pool]
addresses = ["192.0.2.1", "198.51.100.1"]
[[static]]
protocol = "tcp"
ipv6 = "2001:db8:1::2"
ipv6_port = 5001
ipv4 = "192.0.2.1"
ipv4_port = 5001
"#;

const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

/// Which program runs the packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prog {
    Xdp,
    Tc,
}

/// One packet of a connection between the client's `cport` and the server's `sport`: from the
/// client (IPv6) or from the server to the pool port `pport` (IPv4).
struct Conn {
    cport: u16,
    sport: u16,
    pool: Ipv4Addr,
    pport: u16,
}

impl Conn {
    fn client_sends(&self, flags: u8) -> Vec<u8> {
        let seg = segment(
            CLIENT.into(),
            SERVER6.into(),
            self.cport,
            self.sport,
            flags,
            1,
            1,
        );
        eth(
            MAC_GW6,
            MAC_CLIENT,
            0x86dd,
            &ipv6(CLIENT, SERVER6, 6, 64, 0, &seg),
        )
    }

    fn server_sends(&self, flags: u8) -> Vec<u8> {
        let (s, p): (IpAddr, IpAddr) = (SERVER4.into(), self.pool.into());
        let seg = segment(s, p, self.sport, self.pport, flags, 1, 1);
        eth(
            MAC_GW4,
            MAC_SERVER,
            0x0800,
            &ipv4(SERVER4, self.pool, 6, 64, 0, 1, true, &seg),
        )
    }

    fn key(&self) -> SessionKey6 {
        SessionKey6 {
            client: raw6(u128::from(CLIENT)),
            remote: raw4(u32::from(SERVER4)),
            client_port_be: self.cport.to_be(),
            remote_port_be: self.sport.to_be(),
            proto: 6,
            _pad: [0; 3],
        }
    }
}

/// Runs a frame and returns whether it was forwarded (a redirect) or dropped.
fn send(fx: &mut Fixture, prog: Prog, frame: &[u8], v6: bool) -> Result<u32> {
    let ifindex = if v6 { fx.v6if } else { fx.v4if };
    let out = match prog {
        Prog::Xdp => fx.run(frame, ifindex)?,
        Prog::Tc => fx.run_tc(frame, ifindex)?,
    };
    Ok(match (prog, out.action) {
        (Prog::Xdp, a) | (Prog::Tc, a) if a == XDP_REDIRECT || a == TC_ACT_REDIRECT => XDP_REDIRECT,
        (Prog::Tc, TC_ACT_SHOT) => XDP_DROP,
        (_, a) => a,
    })
}

/// The TCP state in both entries of a connection's session.
fn states(fx: &Fixture, c: &Conn) -> Result<(u8, u8)> {
    let k6 = c.key();
    let v6 = fx
        .maps
        .sessions6
        .get(&k6, 0)
        .with_context(|| format!("no session for client port {}", c.cport))?;
    let v4 = fx
        .maps
        .sessions4
        .get(&k6.reverse(&v6), 0)
        .context("no IPv4-side session entry")?;
    Ok((v6.state, v4.state))
}

/// Sends `steps` (from the client?, flags, state expected after) and checks each.
fn walk(fx: &mut Fixture, prog: Prog, c: &Conn, steps: &[(bool, u8, u8)]) -> Result<()> {
    for (i, &(client, flags, want)) in steps.iter().enumerate() {
        let frame = if client {
            c.client_sends(flags)
        } else {
            c.server_sends(flags)
        };
        let action = send(fx, prog, &frame, client)?;
        ensure!(
            action == XDP_REDIRECT,
            "{prog:?}, client port {}, step {i}: not forwarded (action {action})",
            c.cport
        );
        let (s6, s4) = states(fx, c)?;
        ensure!(
            s6 == want && s4 == want,
            "{prog:?}, client port {}, step {i} ({} flags {flags:#04x}): states {} / {}, \
             expected {}",
            c.cport,
            if client { "client" } else { "server" },
            tcp::name(s6),
            tcp::name(s4),
            tcp::name(want)
        );
    }
    Ok(())
}

fn machine(prog: Prog) -> Result<()> {
    with_fixture_instance(&format!("tcpst-{prog:?}"), SETTINGS, |fx| {
        // The client opens and the server closes first.
        let first_pool_port = 1024;
        let c = Conn {
            cport: 42000,
            sport: 80,
            pool: POOL,
            pport: first_pool_port,
        };
        walk(
            fx,
            prog,
            &c,
            &[
                (true, SYN, tcp::V6_INIT),
                (true, SYN, tcp::V6_INIT),
                (false, SYN | ACK, tcp::ESTABLISHED),
                (true, ACK, tcp::ESTABLISHED),
                (false, FIN | ACK, tcp::V4_FIN_RCV),
                (true, ACK, tcp::V4_FIN_RCV),
                (true, FIN | ACK, tcp::V4_FIN_V6_FIN_RCV),
                (false, ACK, tcp::V4_FIN_V6_FIN_RCV),
            ],
        )?;
        // A simultaneous open through the static mapping: the server's SYN first (let in by
        // the mapping: V4 INIT), then the client's; then a reset and traffic again.
        let s = Conn {
            cport: 5001,
            sport: 6000,
            pool: POOL,
            pport: 5001,
        };
        walk(
            fx,
            prog,
            &s,
            &[
                (false, SYN, tcp::V4_INIT),
                (false, SYN, tcp::V4_INIT),
                (true, SYN, tcp::ESTABLISHED),
                (false, SYN | ACK, tcp::ESTABLISHED),
                (true, RST, tcp::TRANS),
                (false, RST, tcp::TRANS),
                (false, ACK, tcp::ESTABLISHED),
                (true, FIN, tcp::V6_FIN_RCV),
                (false, FIN, tcp::V4_FIN_V6_FIN_RCV),
            ],
        )?;
        // An inbound SYN to a pool port nothing is bound to is held, with what the answer
        // quotes: the SYN from its IPv4 header on. (The other pool address: one that is the
        // gateway's own passes such packets to the host.)
        let other_pool = Ipv4Addr::new(198, 51, 100, 1);
        let held = Conn {
            cport: 0,
            sport: 7777,
            pool: other_pool,
            pport: 9999,
        };
        let syn = held.server_sends(SYN);
        ensure!(
            send(fx, prog, &syn, false)? == XDP_DROP,
            "{prog:?}: the unbound SYN was not dropped"
        );
        let k = HeldKey {
            remote: raw4(u32::from(SERVER4)),
            remote_port_be: 7777u16.to_be(),
            _pad: 0,
        };
        let v = fx
            .maps
            .held_syns
            .get(&k, 0)
            .with_context(|| format!("{prog:?}: the SYN from {SERVER4}:7777 is not held"))?;
        ensure!(
            v.pool == raw4(u32::from(other_pool))
                && u16::from_be(v.pool_port_be) == 9999
                && usize::from(v.len) == syn.len() - 14
                && v.packet[..usize::from(v.len)] == syn[14..],
            "{prog:?}: the held SYN is not the one sent: {v:?}"
        );
        // A client's SYN to its source forgets it.
        let opens = Conn {
            cport: 42002,
            sport: 7777,
            pool: POOL,
            pport: 0,
        };
        ensure!(send(fx, prog, &opens.client_sends(SYN), true)? == XDP_REDIRECT);
        ensure!(
            fx.maps.held_syns.get(&k, 0).is_err(),
            "{prog:?}: the held SYN is still there after the client opened the connection"
        );
        Ok(())
    })
}

#[test]
fn tcp_state_machine_xdp() -> Result<()> {
    require_root()?;
    machine(Prog::Xdp)
}

#[test]
fn tcp_state_machine_tc() -> Result<()> {
    require_root()?;
    machine(Prog::Tc)
}
