//! End-to-end tests of the gateway under abuse and in operation: hostile traffic (scapy fuzzing
//! and malformed frames) on both sides of a two-armed and a one-armed gateway during a transfer;
//! the limits under pressure, each with its ICMPv6 destination unreachable (code 3) and drop
//! counter: the per-client port cap, pool exhaustion, a full session table, a SYN flood with
//! random source ports, and recovery when sessions expire; and a `kill -9` of the controller in
//! the middle of a transfer.
//!
//! Each test builds its own namespaces (removed on drop, also when it fails) and runs its own
//! controller instance; traffic only goes to addresses inside those namespaces. A lock keeps the
//! tests one at a time. They need root, the `translator` binary (`cargo build -p
//! translator-user`), curl, ping, and Debian's `/usr/bin/python3` with scapy (python3-scapy) for
//! the crafted packets.

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use translator_tests::cmd::Proc;
use translator_tests::{
    CLIENT_V6, GATEWAY_V6, Gateway, HttpServer, NetNs, PacedHttp, SERVER_V4, Session, Stats,
    TempDir, Topology, UdpEcho, XdpPass, describe_sessions, pattern, same_bytes, server_via_prefix,
    stats_delta, udp_recv, wait_until,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// Debian's Python, which has scapy (`python3` on PATH may be another build without it).
const PYTHON: &str = "/usr/bin/python3";

/// A second client address inside the client prefix (added to the client's `c0`).
const CLIENT_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 3);

/// Takes the one-test-at-a-time lock and checks the prerequisites.
fn prepare() -> Result<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    translator_tests::require_root()?;
    translator_tests::translator_bin()?;
    for tool in ["curl", "ping", "ethtool"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        ensure!(found, "`{tool}` is not installed (PATH has no {tool})");
    }
    Ok(guard)
}

/// Errors unless `/usr/bin/python3` can import scapy.
fn require_scapy() -> Result<()> {
    let out = translator_tests::cmd::run(
        std::process::Command::new(PYTHON).args(["-c", "import scapy.all"]),
        Duration::from_secs(30),
    )
    .with_context(|| format!("cannot run {PYTHON}"))?;
    ensure!(
        out.status.success(),
        "{PYTHON} cannot import scapy (install python3-scapy):\n{}",
        out.stderr_str()
    );
    Ok(())
}

/// The packet generator: `mode iface dst_mac count seconds seed [args]`, one frame at a time on
/// one packet socket until `count` frames are sent or `seconds` pass; prints a JSON summary.
const CRAFT_PY: &str = r##"
# Sends random and malformed frames (or a SYN flood) at the gateway, bounded in count and time.
# argv: mode(v6|v4|syn) iface dst_mac count seconds seed [v4: bound pool ports | syn: src dst port]
import json, random, sys, time
import logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import (Ether, IP, IPv6, TCP, UDP, ICMP, ICMPv6DestUnreach, ICMPv6EchoRequest,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, AH, Raw, fuzz, raw, conf,
                       get_if_hwaddr)

side, iface, dst_mac = sys.argv[1], sys.argv[2], sys.argv[3]
count, seconds, seed = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
bound = [int(p) for p in sys.argv[7:]] if side == "v4" else []
bound = bound or [4242]
rnd = random.Random(seed)
src_mac = get_if_hwaddr(iface)

SERVER6 = "2001:db8:64::c000:202"      # 192.0.2.2 under the NAT64 prefix
POOL4 = "192.0.2.1"

def rbytes(n):
    return bytes(rnd.getrandbits(8) for _ in range(n))

def spoof6():
    # Inside the client prefix but never the real client (its flows must stay untouched).
    return "2001:db8:1::%x" % rnd.randint(0x100, 0xffff)

def spoof4():
    # Never the real server (192.0.2.2): its sessions must stay untouched.
    return rnd.choice(["192.0.2.%d" % rnd.randint(100, 250), "203.0.113.%d" % rnd.randint(1, 254)])

def prefix_dst():
    return rnd.choice([SERVER6, "2001:db8:64::%x:%x" % (rnd.getrandbits(16), rnd.getrandbits(16))])

def v6_frame():
    k = rnd.randrange(14)
    dst = prefix_dst()
    if k == 0:
        p = fuzz(IPv6(src=spoof6(), dst=dst) / UDP())
    elif k == 1:
        p = fuzz(IPv6(src=spoof6(), dst=dst) / TCP())
    elif k == 2:   # truncated anywhere in the headers or payload
        b = raw(IPv6(src=spoof6(), dst=dst) / rnd.choice([UDP(), TCP()]) / Raw(rbytes(rnd.randint(0, 64))))
        return Ether(dst=dst_mac, src=src_mac, type=0x86dd) / Raw(b[: rnd.randint(0, len(b) - 1)])
    elif k == 3:   # payload length beyond the frame
        p = IPv6(src=spoof6(), dst=dst, plen=rnd.randint(60, 65535)) / UDP(sport=rnd.randint(1, 65535), dport=7) / Raw(rbytes(8))
    elif k == 4:   # not version 6
        p = IPv6(src=spoof6(), dst=dst, version=rnd.choice([0, 4, 5, 7, 15])) / UDP(dport=7)
    elif k == 5:   # random bytes as an IPv6 frame, half of them addressed into the prefix
        b = bytearray(rbytes(rnd.randint(0, 120)))
        if len(b) >= 40 and rnd.random() < 0.5:
            b[24:40] = raw(IPv6(dst=dst))[24:40]
        return Ether(dst=dst_mac, src=src_mac, type=0x86dd) / Raw(bytes(b))
    elif k == 6:   # random bytes as an IPv4 frame
        return Ether(dst=dst_mac, src=src_mac, type=0x0800) / Raw(rbytes(rnd.randint(0, 120)))
    elif k == 7:   # source outside the client prefixes (no open relay)
        p = IPv6(src="2001:db8:99::%x" % rnd.randint(1, 0xffff), dst=dst) / UDP(sport=rnd.randint(1, 65535), dport=53)
    elif k == 8:   # ICMPv6 error quoting a flow that has no session
        p = IPv6(src=spoof6(), dst=dst) / ICMPv6DestUnreach(code=rnd.randint(0, 6)) / IPv6(src=dst, dst=spoof6()) / UDP(sport=rnd.randint(1, 65535), dport=rnd.randint(1, 65535))
    elif k == 9:   # fragments with random offsets
        p = IPv6(src=spoof6(), dst=dst) / fuzz(IPv6ExtHdrFragment(nh=17)) / Raw(rbytes(rnd.randint(0, 64)))
    elif k == 10:  # zero UDP checksum
        p = IPv6(src=spoof6(), dst=dst) / UDP(sport=rnd.randint(1, 65535), dport=9, chksum=0) / Raw(b"x")
    elif k == 11:  # extension headers: hop-by-hop (slow path), AH (refused)
        p = IPv6(src=spoof6(), dst=dst) / rnd.choice([IPv6ExtHdrHopByHop(), AH()]) / UDP(dport=9) / Raw(rbytes(8))
    elif k == 12:  # fuzzed echo requests
        p = fuzz(IPv6(src=spoof6(), dst=dst) / ICMPv6EchoRequest())
    else:          # hop limit running out
        p = IPv6(src=spoof6(), dst=dst, hlim=rnd.randint(0, 1)) / UDP(dport=9)
    return Ether(dst=dst_mac, src=src_mac) / p

def v4_frame():
    k = rnd.randrange(13)
    port = rnd.choice(bound + [rnd.randint(1024, 65535)])
    l4 = rnd.choice([TCP(sport=rnd.randint(1, 65535), dport=port, flags=rnd.choice(["S", "A", "R", "FA", "PA"])),
                     UDP(sport=rnd.randint(1, 65535), dport=port)])
    if k == 0:
        p = fuzz(IP(src=spoof4(), dst=POOL4) / TCP(dport=port))
    elif k == 1:
        p = fuzz(IP(src=spoof4(), dst=POOL4) / UDP(dport=port))
    elif k == 2:   # bad header checksum
        p = IP(src=spoof4(), dst=POOL4) / l4 / Raw(rbytes(16))
        b = bytearray(raw(p))
        b[10] ^= rnd.randint(1, 255)
        return Ether(dst=dst_mac, src=src_mac, type=0x0800) / Raw(bytes(b))
    elif k == 3:   # total length shorter than the headers
        p = IP(src=spoof4(), dst=POOL4, len=rnd.randint(0, 27)) / l4
    elif k == 4:   # total length beyond the frame
        p = IP(src=spoof4(), dst=POOL4, len=rnd.randint(100, 65535)) / l4
    elif k == 5:   # IHL below 5
        p = IP(src=spoof4(), dst=POOL4, ihl=rnd.randint(0, 4)) / l4
    elif k == 6:   # unsolicited traffic to pool ports (bound ones: refused by the filter)
        p = IP(src=spoof4(), dst=POOL4) / l4 / Raw(rbytes(rnd.randint(0, 40)))
    elif k == 7:   # random bytes as IPv4, half of them addressed to the pool
        b = bytearray(rbytes(rnd.randint(0, 120)))
        if len(b) >= 20 and rnd.random() < 0.5:
            b[16:20] = bytes([192, 0, 2, 1])
        return Ether(dst=dst_mac, src=src_mac, type=0x0800) / Raw(bytes(b))
    elif k == 8:   # random bytes as IPv6
        return Ether(dst=dst_mac, src=src_mac, type=0x86dd) / Raw(rbytes(rnd.randint(0, 120)))
    elif k == 9:   # truncated
        b = raw(IP(src=spoof4(), dst=POOL4) / l4 / Raw(rbytes(rnd.randint(0, 64))))
        return Ether(dst=dst_mac, src=src_mac, type=0x0800) / Raw(b[: rnd.randint(0, len(b) - 1)])
    elif k == 10:  # ICMP error quoting a flow that has no session
        p = IP(src=spoof4(), dst=POOL4) / ICMP(type=3, code=rnd.randint(0, 15)) / IP(src=POOL4, dst=spoof4()) / UDP(sport=port, dport=rnd.randint(1, 65535))
    elif k == 11:  # fragments, options
        p = fuzz(IP(src=spoof4(), dst=POOL4, proto=rnd.choice([6, 17, 1]))) / Raw(rbytes(rnd.randint(0, 64)))
    else:          # fuzzed ICMP
        p = fuzz(IP(src=spoof4(), dst=POOL4) / ICMP())
    return Ether(dst=dst_mac, src=src_mac) / p

def syn_frame():
    # argv[7:]: source, destination, destination port. Random source ports: one new flow each.
    src, dst, dport = sys.argv[7], sys.argv[8], int(sys.argv[9])
    return Ether(dst=dst_mac, src=src_mac) / IPv6(src=src, dst=dst) / TCP(
        sport=rnd.randint(1024, 65535), dport=dport, flags="S", seq=rnd.getrandbits(32))

if side == "syn":
    make = syn_frame
    bound = [0]
else:
    make = v6_frame if side == "v6" else v4_frame
sock = conf.L2socket(iface=iface)
deadline = time.monotonic() + seconds
sent = errors = 0
while sent < count and time.monotonic() < deadline:
    try:
        sock.send(make())
        sent += 1
    except Exception as e:
        errors += 1
        if errors <= 5:
            print("send error: %r" % (e,), file=sys.stderr)
        if errors > count:
            break
sock.close()
print(json.dumps({"side": side, "sent": sent, "errors": errors, "seed": seed}))
"##;

/// Writes the generator into `dir` and returns its path.
fn craft_script(dir: &TempDir) -> Result<PathBuf> {
    let path = dir.join("craft.py");
    std::fs::write(&path, CRAFT_PY).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The generator running in the background in a namespace.
struct Craft {
    proc: Proc,
    what: String,
}

impl Craft {
    /// Starts `craft.py mode iface dst_mac count seconds seed args...` inside `ns`.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        ns: &NetNs,
        script: &Path,
        log: &Path,
        mode: &str,
        iface: &str,
        dst_mac: &str,
        count: u32,
        seconds: u32,
        extra: &[String],
    ) -> Result<Self> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        let script = script.to_str().context("script path is not UTF-8")?;
        let (count, seconds, seed) = (count.to_string(), seconds.to_string(), seed.to_string());
        let mut argv = vec![
            PYTHON, script, mode, iface, dst_mac, &count, &seconds, &seed,
        ];
        argv.extend(extra.iter().map(String::as_str));
        let what = format!("craft.py {} in {}", argv[2..].join(" "), ns.name());
        let proc = ns.spawn(&argv, log)?;
        Ok(Self { proc, what })
    }

    /// Waits (at most `timeout`) for it to finish and returns how many frames it sent, and what
    /// ran (with its seed, to replay it).
    fn finish(mut self, timeout: Duration) -> Result<(u64, String)> {
        let done = wait_until(timeout, || self.proc.exited().is_some());
        let log = self.proc.log();
        ensure!(done, "`{}` still runs after {timeout:?}:\n{log}", self.what);
        let status = self.proc.exited();
        ensure!(
            status.is_some_and(|s| s.success()),
            "`{}` failed ({status:?}):\n{log}",
            self.what
        );
        let summary: serde_json::Value = log
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .with_context(|| format!("`{}` printed no JSON summary:\n{log}", self.what))?;
        let sent = summary
            .get("sent")
            .and_then(serde_json::Value::as_u64)
            .with_context(|| format!("`{}`: no `sent` in {summary}", self.what))?;
        Ok((sent, self.what))
    }
}

/// The MAC address of `dev` in `ns`.
fn mac_of(ns: &NetNs, dev: &str) -> Result<String> {
    let out = ns.ip(&["-j", "link", "show", "dev", dev])?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("`ip -j link show {dev}` printed no JSON"))?;
    json.get(0)
        .and_then(|l| l.get("address"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no MAC address for {dev} in {json}"))
}

/// Drop counters that grew between two snapshots.
fn drops_grown(before: &Stats, after: &Stats) -> BTreeMap<String, u64> {
    after
        .drops
        .iter()
        .filter_map(|(name, &n)| {
            let grown = n.saturating_sub(before.drop_count(name));
            (grown > 0).then(|| (name.clone(), grown))
        })
        .collect()
}

/// A curl download running in the background from `ns` into a file.
struct Download {
    curl: Proc,
    out: PathBuf,
}

impl Download {
    fn start(ns: &NetNs, dir: &TempDir, url: &str, extra: &[&str]) -> Result<Self> {
        let out = dir.join("download.bin");
        let out_s = out.to_str().context("temp path is not UTF-8")?.to_owned();
        let mut argv = vec!["curl", "-g", "-sS", "--fail", "--max-time", "50"];
        argv.extend(extra);
        argv.extend(["-o", &out_s, url]);
        let curl = ns.spawn(&argv, &dir.join("curl.log"))?;
        Ok(Self { curl, out })
    }

    fn size(&self) -> u64 {
        std::fs::metadata(&self.out).map(|m| m.len()).unwrap_or(0)
    }

    /// Waits until more than `bytes` arrived.
    fn wait_past(&mut self, bytes: u64, timeout: Duration) -> Result<()> {
        let ok = wait_until(timeout, || self.size() > bytes);
        ensure!(
            ok,
            "the transfer did not get past {bytes} bytes in {timeout:?} (at {}); curl: {}",
            self.size(),
            self.curl.log()
        );
        Ok(())
    }

    /// Waits for curl to succeed and compares the file with `want`.
    fn finish(mut self, timeout: Duration, want: &[u8]) -> Result<()> {
        let finished = wait_until(timeout, || self.curl.exited().is_some());
        let exit = self.curl.exited();
        ensure!(
            finished && exit.is_some_and(|s| s.success()),
            "curl did not finish successfully within {timeout:?} (exit {exit:?}, {} of {} bytes): {}",
            self.size(),
            want.len(),
            self.curl.log()
        );
        let got =
            std::fs::read(&self.out).with_context(|| format!("reading {}", self.out.display()))?;
        same_bytes("downloaded file", &got, want)
    }
}

/// (transmitted, received) from ping's summary line.
fn ping_summary(text: &str) -> Option<(u32, u32)> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    Some((nums.next()??, nums.next()??))
}

/// `controller_running` and `controller_pid` from `status --json`.
fn controller(gw: &Gateway) -> Result<(bool, u32)> {
    let status = gw.status()?;
    let running = status
        .get("controller_running")
        .and_then(serde_json::Value::as_bool)
        .with_context(|| format!("no controller_running in `status --json`: {status}"))?;
    let pid = status
        .get("controller_pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .with_context(|| format!("no controller_pid in `status --json`: {status}"))?;
    Ok((running, pid))
}

/// An ICMPv6 error the kernel queued on a socket (`IPV6_RECVERR`).
#[derive(Debug)]
struct QueuedIcmp6 {
    errno: u32,
    ty: u8,
    code: u8,
    /// Who sent the ICMPv6 error.
    offender: Ipv6Addr,
}

/// Asks the kernel to queue ICMPv6 errors about this socket's datagrams (`IPV6_RECVERR`).
fn enable_recverr(sock: &UdpSocket) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt(2) with a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVERR,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits up to `timeout` for an ICMPv6 error on the socket's error queue.
fn queued_icmp6_error(sock: &UdpSocket, timeout: Duration) -> Result<Option<QueuedIcmp6>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut data = [0u8; 2048];
        let mut control = [0u64; 64];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg points at live buffers of the sizes it states.
        let n = unsafe {
            libc::recvmsg(
                sock.as_raw_fd(),
                &raw mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsgs; the
            // CMSG_* macros walk them within that length.
            let mut c = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
            while !c.is_null() {
                // SAFETY: c is a cmsghdr inside the control buffer.
                let (level, ty) = unsafe { ((*c).cmsg_level, (*c).cmsg_type) };
                if level == libc::IPPROTO_IPV6 && ty == libc::IPV6_RECVERR {
                    // SAFETY: an IPV6_RECVERR cmsg holds a sock_extended_err followed by the
                    // offender's sockaddr_in6 (SO_EE_OFFENDER); unaligned reads within it.
                    let (ee, offender) = unsafe {
                        let p = libc::CMSG_DATA(c);
                        let ee: libc::sock_extended_err = std::ptr::read_unaligned(p.cast());
                        let sa: libc::sockaddr_in6 = std::ptr::read_unaligned(
                            p.add(std::mem::size_of::<libc::sock_extended_err>()).cast(),
                        );
                        (ee, Ipv6Addr::from(sa.sin6_addr.s6_addr))
                    };
                    if ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6 {
                        return Ok(Some(QueuedIcmp6 {
                            errno: ee.ee_errno,
                            ty: ee.ee_type,
                            code: ee.ee_code,
                            offender,
                        }));
                    }
                }
                // SAFETY: as above.
                c = unsafe { libc::CMSG_NXTHDR(&raw const msg, c) };
            }
            continue;
        }
        let err = std::io::Error::last_os_error();
        if !matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ) {
            return Err(err).context("recvmsg(MSG_ERRQUEUE)");
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Binds one UDP socket per port in `ports` on `addr` inside `ns`.
fn udp_sockets_on(ns: &NetNs, addr: Ipv6Addr, ports: &[u16]) -> Result<Vec<UdpSocket>> {
    ns.in_ns(|| {
        ports
            .iter()
            .map(|&p| UdpSocket::bind(SocketAddr::from((addr, p))))
            .collect::<std::io::Result<Vec<_>>>()
    })?
    .with_context(|| format!("binding UDP sockets on [{addr}]:{ports:?} in {}", ns.name()))
}

/// Binds `n` UDP sockets on `addr` (port chosen by the kernel) inside `ns`.
fn udp_sockets(ns: &NetNs, addr: Ipv6Addr, n: usize) -> Result<Vec<UdpSocket>> {
    ns.in_ns(|| {
        (0..n)
            .map(|_| UdpSocket::bind(SocketAddr::from((addr, 0))))
            .collect::<std::io::Result<Vec<_>>>()
    })?
    .with_context(|| format!("binding {n} UDP sockets on [{addr}] in {}", ns.name()))
}

/// Sends `payload` from `sock` to `to` and waits up to 3 s for the echo (resending once a
/// second: the first datagram of a new neighbour may wait for neighbour discovery).
fn udp_round_trip(sock: &UdpSocket, to: SocketAddr, payload: &[u8]) -> Result<()> {
    let mut buf = [0u8; 2048];
    // A late echo of an earlier round trip's retry may still be queued: drop it first.
    sock.set_nonblocking(true)?;
    while sock.recv_from(&mut buf).is_ok() {}
    sock.set_nonblocking(false)?;
    for _ in 0..3 {
        sock.send_to(payload, to)?;
        match udp_recv(sock, &mut buf, Duration::from_secs(1)) {
            Ok((n, from)) => {
                ensure!(from == to, "echo came from {from}, expected {to}");
                return same_bytes("UDP echo", buf.get(..n).unwrap_or_default(), payload);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e).context("waiting for the UDP echo"),
        }
    }
    bail!(
        "no echo from {to} within 3 s for the socket on {:?}",
        sock.local_addr()
    )
}

// ------------------------------------------------------------------------------------------------
// Tests.

/// Thousands of random and malformed frames hit both gateway interfaces (from the client
/// namespace at g6, from the server namespace at g4) while a paced 12 MiB HTTP download and a
/// ping run through the gateway. The download must complete byte for byte, the ping must be
/// answered, the controller must still run, and the drops must be counted under their reasons.
#[test]
fn hostile_traffic_on_both_interfaces_during_a_transfer() -> Result<()> {
    let _lock = prepare()?;
    require_scapy()?;
    hostile_traffic(&Topology::two_armed("hostile")?)
}

/// The same on a one-armed gateway: both generators aim at its single interface, and its
/// answers leave with `XDP_TX`.
#[test]
fn hostile_traffic_on_a_one_armed_gateway() -> Result<()> {
    let _lock = prepare()?;
    require_scapy()?;
    hostile_traffic(&Topology::one_armed("hostile1")?)
}

fn hostile_traffic(topo: &Topology) -> Result<()> {
    const SIZE: usize = 12 * 1024 * 1024;
    const RATE: u64 = 1024 * 1024;
    const FRAMES: u32 = 3000;
    if let Some(lan) = &topo.lan {
        // With br_netfilter loaded, a bridge validates IP headers (checksum, lengths) and drops
        // the malformed frames before they reach the gateway: let them through.
        for family in ["iptables", "ip6tables"] {
            let key = format!("net.bridge.bridge-nf-call-{family}");
            if Path::new("/proc/sys").join(key.replace('.', "/")).exists() {
                lan.sysctl(&key, "0")?;
            }
        }
    }
    let body = Arc::new(pattern(SIZE, 0x5eed));
    let _http = PacedHttp::start(&topo.server, "0.0.0.0:8000".parse()?, body.clone(), RATE)?;
    let _echo = UdpEcho::start(&topo.server, "0.0.0.0:7000".parse()?)?;
    let mut gw = Gateway::start(&topo.gateway, topo.config())?;
    let scratch = TempDir::new("hostile")?;
    let script = craft_script(&scratch)?;
    let server6 = server_via_prefix().to_string();

    // A UDP binding too, so that unsolicited datagrams to its pool port meet the filter.
    let udp = udp_sockets(&topo.client, CLIENT_V6, 1)?;
    udp_round_trip(&udp[0], (server_via_prefix(), 7000).into(), b"bind me")?;

    let url = format!("http://[{server6}]:8000/big.bin");
    let mut download = Download::start(&topo.client, &scratch, &url, &[])?;
    download.wait_past(512 * 1024, Duration::from_secs(10))?;
    let mut ping = topo.client.spawn(
        &["ping", "-c", "60", "-i", "0.25", "-W", "2", &server6],
        &scratch.join("ping.log"),
    )?;

    let sessions = gw.sessions()?;
    let bound: Vec<String> = sessions
        .iter()
        .filter(|s| s.client == CLIENT_V6)
        .map(|s| s.pool_port.to_string())
        .collect();
    ensure!(
        sessions
            .iter()
            .any(|s| s.protocol == "tcp" && s.remote_port == 8000)
            && sessions.iter().any(|s| s.protocol == "udp"),
        "expected the download's TCP session and a UDP session before the attack; {}",
        describe_sessions(&sessions)
    );
    let before = gw.stats()?;
    let started = Instant::now();
    let from_client = Craft::spawn(
        &topo.client,
        &script,
        &scratch.join("craft6.log"),
        "v6",
        "c0",
        &mac_of(&topo.gateway, topo.ipv6_interface())?,
        FRAMES,
        25,
        &[],
    )?;
    let from_server = Craft::spawn(
        &topo.server,
        &script,
        &scratch.join("craft4.log"),
        "v4",
        "s0",
        &mac_of(&topo.gateway, topo.ipv4_interface())?,
        FRAMES,
        25,
        &bound,
    )?;
    let (sent6, what6) = from_client.finish(Duration::from_secs(40))?;
    let (sent4, what4) = from_server.finish(Duration::from_secs(40))?;
    let attack = started.elapsed();
    eprintln!("ran `{what6}` and `{what4}`");
    ensure!(
        sent6 >= u64::from(FRAMES) / 2 && sent4 >= u64::from(FRAMES) / 2,
        "the generators sent too little to mean anything: {sent6} frames from the client side, {sent4} from the server side in {attack:?}"
    );

    download
        .finish(Duration::from_secs(30), &body)
        .with_context(|| {
            format!("the download during the attack ({attack:?}; `{what6}`, `{what4}`)")
        })?;
    let done = wait_until(Duration::from_secs(20), || ping.exited().is_some());
    let text = ping.log();
    ensure!(done, "ping still runs after the attack:\n{text}");
    let (sent, received) = ping_summary(&text).context("no summary line from ping")?;
    ensure!(
        received > 0 && received * 2 >= sent,
        "ping during the attack: {received} of {sent} answered:\n{text}"
    );

    ensure!(
        gw.is_running(),
        "the controller exited during the attack; its log:\n{}",
        gw.log()
    );
    let (running, _) = controller(&gw)?;
    ensure!(
        running,
        "`status --json` says the controller is not running"
    );
    let after = gw.stats()?;
    let grown = drops_grown(&before, &after);
    eprintln!(
        "attack: {sent6} frames from the client side, {sent4} from the server side in {attack:?}; ping {received}/{sent}; {}",
        stats_delta(&before, &after)
    );
    let missing: Vec<&str> = [
        "malformed",
        "truncated",
        "no-session",
        "bad-ipv4-checksum",
        "client-not-allowed",
    ]
    .into_iter()
    .filter(|r| !grown.contains_key(*r))
    .collect();
    ensure!(
        missing.is_empty() && grown.len() >= 6,
        "expected drops under malformed, truncated, no-session, bad-ipv4-checksum, \
         client-not-allowed and at least 6 reasons in all; missing {missing:?}; grown {grown:?}; \
         {}",
        stats_delta(&before, &after)
    );
    // Never an open relay: nothing from outside the client prefix made a session.
    let sessions = gw.sessions()?;
    ensure!(
        sessions
            .iter()
            .all(|s| s.client.segments()[..4] == [0x2001, 0xdb8, 1, 0]),
        "a session from outside 2001:db8:1::/64 exists; {}",
        describe_sessions(&sessions)
    );
    // And it still translates new flows.
    udp_round_trip(
        &udp_sockets(&topo.client, CLIENT_V6, 1)?[0],
        (server_via_prefix(), 7000).into(),
        b"after the storm",
    )
    .context("a new UDP flow after the attack")?;
    gw.set_print_log_on_drop(false);
    Ok(())
}

/// With `block_size = 8` and `max_blocks_per_client = 1` a client has 8 UDP ports. Its 9th to
/// 12th flows are refused with ICMPv6 destination unreachable, code 3 (address unreachable),
/// from the gateway and counted as "client-limit"; a second client still gets through.
#[test]
fn client_port_cap_answers_address_unreachable_and_spares_other_clients() -> Result<()> {
    const CAP: usize = 8;
    const EXTRA: usize = 4;
    let _lock = prepare()?;
    let topo = Topology::two_armed("cap")?;
    let mut echo = UdpEcho::start(&topo.server, "0.0.0.0:7000".parse()?)?;
    let mut config = topo.config();
    config.block_size = Some(CAP as u32);
    config.max_blocks_per_client = Some(1);
    let gw = Gateway::start(&topo.gateway, config)?;
    // The gateway sends its own ICMPv6 errors back out of g6 with XDP_TX: c0 needs an XDP
    // program to be woken for them.
    let _pass = XdpPass::attach(&topo.client, "c0")?;
    let server: SocketAddr = (server_via_prefix(), 7000).into();

    // Client ports of both parities, half each (the gateway prefers the client's parity,
    // RFC 4787, and falls back to the other ports of the block: see the next test).
    let ports: Vec<u16> = (0..(CAP + EXTRA) as u16).map(|i| 40000 + i).collect();
    let socks = udp_sockets_on(&topo.client, CLIENT_V6, &ports)?;
    for s in &socks {
        enable_recverr(s)?;
    }
    let (within, beyond) = socks.split_at(CAP);
    for (i, s) in within.iter().enumerate() {
        udp_round_trip(s, server, format!("flow {i}").as_bytes())
            .with_context(|| format!("flow {i} of {CAP} (within the cap)"))?;
    }
    let before = gw.stats()?;
    for (i, s) in beyond.iter().enumerate() {
        let i = CAP + i;
        s.send_to(format!("flow {i}").as_bytes(), server)?;
        let err = queued_icmp6_error(s, Duration::from_secs(3))?.with_context(|| {
            format!(
                "flow {i} (beyond the cap of {CAP}) got no ICMPv6 error within 3 s; {}",
                stats_delta(&before, &gw.stats().unwrap_or_default())
            )
        })?;
        ensure!(
            err.ty == 1 && err.code == 3 && err.offender == GATEWAY_V6,
            "flow {i}: expected ICMPv6 destination unreachable code 3 from {GATEWAY_V6}, got {err:?}"
        );
        ensure!(
            err.errno == libc::EHOSTUNREACH as u32,
            "flow {i}: the error maps to errno {}, expected EHOSTUNREACH",
            err.errno
        );
    }
    // None of the refused datagrams reached the server.
    echo.check_alive()?;
    let seen: Vec<String> = echo
        .seen()
        .iter()
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect();
    let leaked: Vec<&String> = seen
        .iter()
        .filter(|d| (CAP..CAP + EXTRA).any(|i| **d == format!("flow {i}")))
        .collect();
    ensure!(
        leaked.is_empty(),
        "refused flows reached the server: {leaked:?} (all it saw: {seen:?})"
    );
    let after = gw.stats()?;
    ensure!(
        after.drop_count("client-limit") >= before.drop_count("client-limit") + EXTRA as u64
            && after.event("icmp-error-sent") >= before.event("icmp-error-sent") + EXTRA as u64,
        "expected {EXTRA} client-limit drops and ICMP errors sent: {}",
        stats_delta(&before, &after)
    );
    let sessions = gw.sessions()?;
    let a = sessions
        .iter()
        .filter(|s| s.client == CLIENT_V6 && s.protocol == "udp")
        .count();
    ensure!(
        a == CAP,
        "client A should hold exactly {CAP} UDP sessions; {}",
        describe_sessions(&sessions)
    );

    // A second client in the same prefix has its own blocks.
    topo.client
        .ip(&["addr", "add", "2001:db8:1::3/64", "dev", "c0", "nodad"])?;
    let b = udp_sockets(&topo.client, CLIENT_B, 3)?;
    for (i, s) in b.iter().enumerate() {
        udp_round_trip(s, server, format!("client B flow {i}").as_bytes())
            .with_context(|| format!("client B's flow {i} while client A is at its cap"))?;
    }
    let sessions = gw.sessions()?;
    ensure!(
        sessions
            .iter()
            .filter(|s| s.client == CLIENT_B && s.protocol == "udp")
            .count()
            == 3,
        "client B should have 3 UDP sessions; {}",
        describe_sessions(&sessions)
    );
    // Client A is still capped.
    let again = udp_sockets(&topo.client, CLIENT_V6, 1)?;
    enable_recverr(&again[0])?;
    again[0].send_to(b"still capped?", server)?;
    let err = queued_icmp6_error(&again[0], Duration::from_secs(3))?;
    ensure!(
        err.as_ref().is_some_and(|e| e.ty == 1 && e.code == 3),
        "client A's new flow after client B's should still be refused with code 3, got {err:?}"
    );
    Ok(())
}

/// A pool of two UDP blocks (udp_ports 2048-2063, block_size 8): clients A and B take one each,
/// client C finds none and gets ICMPv6 destination unreachable code 3, counted as
/// "pool-exhausted", while A and B keep working.
#[test]
fn pool_exhaustion_answers_address_unreachable() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("poolx")?;
    let _echo = UdpEcho::start(&topo.server, "0.0.0.0:7000".parse()?)?;
    let mut config = topo.config();
    config.udp_ports = Some("2048-2063".into());
    config.block_size = Some(8);
    config.max_blocks_per_client = Some(1);
    let gw = Gateway::start(&topo.gateway, config)?;
    let _pass = XdpPass::attach(&topo.client, "c0")?;
    let server: SocketAddr = (server_via_prefix(), 7000).into();
    let client_c = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 4);
    for addr in ["2001:db8:1::3/64", "2001:db8:1::4/64"] {
        topo.client
            .ip(&["addr", "add", addr, "dev", "c0", "nodad"])?;
    }
    let a = udp_sockets(&topo.client, CLIENT_V6, 1)?;
    let b = udp_sockets(&topo.client, CLIENT_B, 1)?;
    udp_round_trip(&a[0], server, b"client A").context("client A, first block")?;
    udp_round_trip(&b[0], server, b"client B").context("client B, second block")?;

    let before = gw.stats()?;
    let c = udp_sockets(&topo.client, client_c, 1)?;
    enable_recverr(&c[0])?;
    c[0].send_to(b"client C", server)?;
    let err = queued_icmp6_error(&c[0], Duration::from_secs(3))?;
    let after = gw.stats()?;
    ensure!(
        err.as_ref()
            .is_some_and(|e| e.ty == 1 && e.code == 3 && e.offender == GATEWAY_V6),
        "client C with the pool exhausted: expected ICMPv6 destination unreachable code 3 from \
         {GATEWAY_V6}, got {err:?}; {}",
        stats_delta(&before, &after)
    );
    ensure!(
        after.drop_count("pool-exhausted") > before.drop_count("pool-exhausted"),
        "no pool-exhausted drop counted: {}",
        stats_delta(&before, &after)
    );
    let sessions = gw.sessions()?;
    ensure!(
        !sessions.iter().any(|s| s.client == client_c),
        "client C got a session from an exhausted pool; {}",
        describe_sessions(&sessions)
    );
    udp_round_trip(&a[0], server, b"client A again").context("client A after C was refused")?;
    udp_round_trip(&b[0], server, b"client B again").context("client B after C was refused")?;
    Ok(())
}

/// A client at its cap gets its port block back when its sessions expire: with a 2 s UDP timeout
/// the 9th flow is refused at first, and once the 8 sessions are gone 8 new flows get through.
#[test]
fn client_cap_is_released_when_sessions_expire() -> Result<()> {
    const CAP: u16 = 8;
    let _lock = prepare()?;
    let topo = Topology::two_armed("capexp")?;
    let _echo = UdpEcho::start(&topo.server, "0.0.0.0:7000".parse()?)?;
    let mut config = topo.config();
    config.block_size = Some(u32::from(CAP));
    config.max_blocks_per_client = Some(1);
    config.timeout_udp = Some(2);
    config.enforce_rfc_minimums = Some(false);
    let gw = Gateway::start(&topo.gateway, config)?;
    let _pass = XdpPass::attach(&topo.client, "c0")?;
    let server: SocketAddr = (server_via_prefix(), 7000).into();

    let first: Vec<u16> = (0..CAP).map(|i| 42000 + i).collect();
    for (s, port) in udp_sockets_on(&topo.client, CLIENT_V6, &first)?
        .iter()
        .zip(&first)
    {
        udp_round_trip(s, server, b"first round")
            .with_context(|| format!("first round, client port {port}"))?;
    }
    let extra = udp_sockets_on(&topo.client, CLIENT_V6, &[42100])?;
    enable_recverr(&extra[0])?;
    extra[0].send_to(b"beyond the cap", server)?;
    let err = queued_icmp6_error(&extra[0], Duration::from_secs(3))?;
    ensure!(
        err.as_ref().is_some_and(|e| e.ty == 1 && e.code == 3),
        "the 9th flow should be refused with code 3 before expiry, got {err:?}"
    );
    drop(extra);

    let mut last = Vec::new();
    let gone = wait_until(Duration::from_secs(20), || match gw.sessions() {
        Ok(s) => {
            let empty = s.is_empty();
            last = s;
            empty
        }
        Err(_) => false,
    });
    ensure!(
        gone,
        "the sessions did not expire within 20 s of their 2 s timeout; {}",
        describe_sessions(&last)
    );
    let before = gw.stats()?;
    let second: Vec<u16> = (0..CAP).map(|i| 43000 + i).collect();
    let socks = udp_sockets_on(&topo.client, CLIENT_V6, &second)?;
    let mut failed = Vec::new();
    for (s, port) in socks.iter().zip(&second) {
        // The binding of an expired session may outlive it by a grace period: retry a while.
        let ok = wait_until(Duration::from_secs(10), || {
            udp_round_trip(s, server, b"second round").is_ok()
        });
        if !ok {
            failed.push(*port);
        }
    }
    ensure!(
        failed.is_empty(),
        "after the sessions expired, client ports {failed:?} of {second:?} still got no echo: {}; {}",
        stats_delta(&before, &gw.stats()?),
        describe_sessions(&gw.sessions()?)
    );
    Ok(())
}

/// `limits.sessions = 16`: the 17th flow finds the session table full and is refused with
/// ICMPv6 destination unreachable code 3, counted as "table-full"; the existing flows keep
/// working, and once they expire (2 s UDP timeout) new flows get through again.
#[test]
fn full_session_table_refuses_new_flows_and_recovers() -> Result<()> {
    const TABLE: u16 = 16;
    let _lock = prepare()?;
    let topo = Topology::two_armed("tablefull")?;
    let _echo = UdpEcho::start(&topo.server, "0.0.0.0:7000".parse()?)?;
    let mut config = topo.config();
    config.limit_sessions = Some(u32::from(TABLE));
    config.timeout_udp = Some(2);
    config.enforce_rfc_minimums = Some(false);
    let gw = Gateway::start(&topo.gateway, config)?;
    let _pass = XdpPass::attach(&topo.client, "c0")?;
    let server: SocketAddr = (server_via_prefix(), 7000).into();

    let ports: Vec<u16> = (0..TABLE).map(|i| 44000 + i).collect();
    let socks = udp_sockets_on(&topo.client, CLIENT_V6, &ports)?;
    for (s, port) in socks.iter().zip(&ports) {
        udp_round_trip(s, server, b"fill the table").with_context(|| {
            format!(
                "flow from client port {port} (table size {TABLE}); {}",
                describe_sessions(&gw.sessions().unwrap_or_default())
            )
        })?;
    }
    let before = gw.stats()?;
    // One more flow of the same client and one of another client: the table is for everyone.
    topo.client
        .ip(&["addr", "add", "2001:db8:1::3/64", "dev", "c0", "nodad"])?;
    let mut extra = udp_sockets_on(&topo.client, CLIENT_V6, &[44100])?;
    extra.extend(udp_sockets_on(&topo.client, CLIENT_B, &[44101])?);
    for s in &extra {
        enable_recverr(s)?;
        s.send_to(b"no room", server)?;
        let err = queued_icmp6_error(s, Duration::from_secs(3))?;
        ensure!(
            err.as_ref()
                .is_some_and(|e| e.ty == 1 && e.code == 3 && e.offender == GATEWAY_V6),
            "a new flow with the table full: expected ICMPv6 destination unreachable code 3 \
             from {GATEWAY_V6}, got {err:?}; {}",
            stats_delta(&before, &gw.stats()?)
        );
    }
    let after = gw.stats()?;
    ensure!(
        after.drop_count("table-full") > before.drop_count("table-full"),
        "no table-full drop counted: {}",
        stats_delta(&before, &after)
    );
    let sessions = gw.sessions()?;
    ensure!(
        sessions.len() <= usize::from(TABLE),
        "more sessions than the table holds; {}",
        describe_sessions(&sessions)
    );
    for (s, port) in socks.iter().zip(&ports).take(3) {
        udp_round_trip(s, server, b"still here")
            .with_context(|| format!("existing flow from port {port} with the table full"))?;
    }

    let gone = wait_until(Duration::from_secs(20), || {
        gw.sessions().is_ok_and(|s| s.is_empty())
    });
    ensure!(
        gone,
        "the sessions did not expire within 20 s; {}",
        describe_sessions(&gw.sessions()?)
    );
    let fresh = udp_sockets_on(&topo.client, CLIENT_B, &[44200])?;
    let ok = wait_until(Duration::from_secs(10), || {
        udp_round_trip(&fresh[0], server, b"room again").is_ok()
    });
    ensure!(
        ok,
        "no new flow got through after the table emptied: {}",
        stats_delta(&after, &gw.stats()?)
    );
    Ok(())
}

/// The cap is `block_size` ports per block, whatever the parity of the client's ports: 8 client
/// ports that are all even must all get through with `block_size = 8`, `max_blocks_per_client =
/// 1`. The gateway keeps the client port's parity in the pool port (RFC 4787 REQ-3, "where it
/// costs nothing") but does not fall back to the other parity when one half of the block is
/// taken, so the 5th even port is refused with "client-limit" although 4 ports of the block are
/// free.
#[test]
fn client_port_cap_counts_ports_of_either_parity() -> Result<()> {
    const CAP: usize = 8;
    let _lock = prepare()?;
    let topo = Topology::two_armed("parity")?;
    let _echo = UdpEcho::start(&topo.server, "0.0.0.0:7000".parse()?)?;
    let mut config = topo.config();
    config.block_size = Some(CAP as u32);
    config.max_blocks_per_client = Some(1);
    let gw = Gateway::start(&topo.gateway, config)?;
    let _pass = XdpPass::attach(&topo.client, "c0")?;
    let server: SocketAddr = (server_via_prefix(), 7000).into();
    let ports: Vec<u16> = (0..CAP as u16).map(|i| 40000 + 2 * i).collect();
    let socks = udp_sockets_on(&topo.client, CLIENT_V6, &ports)?;
    let before = gw.stats()?;
    for (s, port) in socks.iter().zip(&ports) {
        udp_round_trip(s, server, format!("even port {port}").as_bytes()).with_context(|| {
            format!(
                "client port {port} (all {CAP} client ports {ports:?} are even, cap {CAP}); {}; {}",
                stats_delta(&before, &gw.stats().unwrap_or_default()),
                describe_sessions(&gw.sessions().unwrap_or_default())
            )
        })?;
    }
    Ok(())
}

/// A SYN flood from one client with random source ports: its sessions stay within its cap
/// (block_size x max_blocks_per_client), the rest is dropped as "client-limit", and another
/// client's HTTP download still works.
#[test]
fn syn_flood_from_one_client_stays_within_its_cap() -> Result<()> {
    const BLOCK: u32 = 16;
    const BLOCKS: u32 = 2;
    const CAP: usize = (BLOCK * BLOCKS) as usize;
    const SYNS: u32 = 3000;
    let _lock = prepare()?;
    require_scapy()?;
    let topo = Topology::two_armed("synflood")?;
    let http = HttpServer::start(&topo.server, 80)?;
    let page = pattern(200_000, 21);
    http.add_file("page.bin", &page)?;
    let mut config = topo.config();
    config.block_size = Some(BLOCK);
    config.max_blocks_per_client = Some(BLOCKS);
    let mut gw = Gateway::start(&topo.gateway, config)?;
    topo.client
        .ip(&["addr", "add", "2001:db8:1::3/64", "dev", "c0", "nodad"])?;
    let scratch = TempDir::new("synflood")?;
    let script = craft_script(&scratch)?;

    let before = gw.stats()?;
    let flood = Craft::spawn(
        &topo.client,
        &script,
        &scratch.join("flood.log"),
        "syn",
        "c0",
        &mac_of(&topo.gateway, "g6")?,
        SYNS,
        25,
        &[
            CLIENT_V6.to_string(),
            server_via_prefix().to_string(),
            "80".to_owned(),
        ],
    )?;
    let (sent, what) = flood.finish(Duration::from_secs(40))?;
    eprintln!("ran `{what}`");
    ensure!(
        sent >= u64::from(SYNS) / 2,
        "the flood sent only {sent} SYNs"
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = gw.stats()?;
    let sessions = gw.sessions()?;
    let a = sessions
        .iter()
        .filter(|s| s.client == CLIENT_V6 && s.protocol == "tcp")
        .count();
    ensure!(
        a > 0 && a <= CAP && sessions.len() <= CAP + 4,
        "client A should hold between 1 and {CAP} TCP sessions (and nobody much else), has {a} \
         of {} sessions; {}",
        sessions.len(),
        describe_sessions(&sessions)
    );
    eprintln!(
        "flood: {sent} SYNs, client A holds {a} TCP sessions; {}",
        stats_delta(&before, &after)
    );
    let refused = after
        .drop_count("client-limit")
        .saturating_sub(before.drop_count("client-limit"));
    ensure!(
        refused >= sent / 2,
        "expected most of the {sent} SYNs dropped as client-limit, counted {refused}: {}",
        stats_delta(&before, &after)
    );

    // Client B is unaffected.
    let url = format!("http://[{}]:80/page.bin", server_via_prefix());
    let mut download = Download::start(
        &topo.client,
        &scratch,
        &url,
        &["--interface", "2001:db8:1::3"],
    )?;
    download.wait_past(0, Duration::from_secs(20)).ok();
    download
        .finish(Duration::from_secs(30), &page)
        .context("client B's download after client A's SYN flood")?;
    let sessions = gw.sessions()?;
    ensure!(
        sessions
            .iter()
            .any(|s| s.client == CLIENT_B && s.protocol == "tcp" && s.remote == SERVER_V4),
        "no TCP session for client B; {}",
        describe_sessions(&sessions)
    );
    ensure!(
        gw.is_running(),
        "the controller exited during the flood:\n{}",
        gw.log()
    );
    gw.set_print_log_on_drop(false);
    Ok(())
}

/// `kill -9` of the controller during a paced 8 MiB download: the pinned data plane keeps
/// forwarding, a new controller started with the same configuration adopts the session, and the
/// download completes byte for byte.
#[test]
fn kill_9_of_the_controller_during_a_transfer() -> Result<()> {
    const SIZE: usize = 8 * 1024 * 1024;
    const RATE: u64 = 1024 * 1024;
    let _lock = prepare()?;
    let topo = Topology::two_armed("kill9")?;
    let body = Arc::new(pattern(SIZE, 99));
    let _http = PacedHttp::start(&topo.server, "0.0.0.0:8000".parse()?, body.clone(), RATE)?;
    let mut gw = Gateway::start(&topo.gateway, topo.config())?;
    let scratch = TempDir::new("kill9")?;
    let url = format!("http://[{}]:8000/large.bin", server_via_prefix());
    let mut download = Download::start(&topo.client, &scratch, &url, &[])?;
    download.wait_past(1024 * 1024, Duration::from_secs(10))?;

    let (running, pid) = controller(&gw)?;
    ensure!(
        running,
        "`status --json` says no controller runs before the kill"
    );
    let pid_t = libc::pid_t::try_from(pid).context("controller pid out of range")?;
    // SAFETY: kill(2) on the controller this test started (its pid from `status`).
    let rc = unsafe { libc::kill(pid_t, libc::SIGKILL) };
    ensure!(
        rc == 0,
        "kill -9 {pid}: {}",
        std::io::Error::last_os_error()
    );
    ensure!(
        wait_until(Duration::from_secs(5), || !gw.is_running()),
        "the controller (pid {pid}) is still running 5 s after SIGKILL"
    );
    let at_kill = download.size();
    let grew = wait_until(Duration::from_secs(5), || {
        download.size() > at_kill + 256 * 1024
    });
    ensure!(
        grew,
        "the transfer stalled after kill -9 of the controller ({at_kill} -> {} bytes)",
        download.size()
    );
    let (running, _) = controller(&gw).context("`status --json` after kill -9")?;
    ensure!(
        !running,
        "`status --json` still reports the killed controller as running"
    );

    gw.launch()
        .context("starting the controller again with the same config after kill -9")?;
    ensure!(
        download.curl.exited().is_none(),
        "the transfer finished before the controller came back; make the file bigger"
    );
    let (running, new_pid) = controller(&gw)?;
    ensure!(
        running && new_pid != pid,
        "after the restart `status --json` should report a new running controller (old pid \
         {pid}, now running={running} pid={new_pid})"
    );
    let is_ours =
        |s: &Session| s.protocol == "tcp" && s.remote == SERVER_V4 && s.remote_port == 8000;
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(is_ours),
        "the TCP session is not listed after the restart; {}",
        describe_sessions(&sessions)
    );
    download.finish(Duration::from_secs(30), &body)?;
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(is_ours),
        "the TCP session is not listed after the transfer; {}",
        describe_sessions(&sessions)
    );
    // The adopted instance also makes new sessions.
    let scratch2 = TempDir::new("kill9b")?;
    let again = Download::start(&topo.client, &scratch2, &url, &[])?;
    again
        .finish(Duration::from_secs(30), &body)
        .context("a new download after the restart")?;
    ensure!(gw.is_running(), "the new controller exited:\n{}", gw.log());
    Ok(())
}

/// A read command whose output pipe is already closed (`translator stats | true`, a pager
/// quit early) ends quietly, killed by SIGPIPE like other command-line tools, instead of
/// panicking about a broken pipe.
#[test]
fn a_read_command_into_a_closed_pipe_ends_quietly() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("pipe")?;
    let gw = Gateway::start(&topo.gateway, topo.config())?;
    let scratch = TempDir::new("pipe")?;
    let err = scratch.join("stderr");
    let script = format!(
        "(sleep 0.5; exec '{}' --netns '{}' stats --instance '{}' 2>'{}') | true",
        gw.bin().display(),
        topo.gateway.name(),
        gw.instance(),
        err.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .context("running sh")?;
    ensure!(out.status.success(), "sh -c {script:?}: {}", out.status);
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    ensure!(
        stderr.is_empty(),
        "`translator stats` into a closed pipe printed: {stderr}"
    );
    Ok(())
}

/// `translator sessions` with its filters (streamed: applied while the table is read) lists
/// exactly the sessions of the full listing that match, as JSON and as a table ending with the
/// count; `--sort` lists the same sessions in (client, protocol, port, remote) order.
#[test]
fn session_listing_filters_agree_with_the_full_listing() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("seslist")?;
    let _echo = UdpEcho::start(&topo.server, "0.0.0.0:7000".parse()?)?;
    let gw = Gateway::start(&topo.gateway, topo.config())?;
    let _pass = XdpPass::attach(&topo.client, "c0")?;
    topo.client
        .ip(&["addr", "add", "2001:db8:1::3/64", "dev", "c0", "nodad"])?;
    let server: SocketAddr = (server_via_prefix(), 7000).into();
    let mut socks = udp_sockets_on(&topo.client, CLIENT_V6, &[45000, 45001, 45002])?;
    socks.extend(udp_sockets_on(&topo.client, CLIENT_B, &[45010, 45011])?);
    for s in &socks {
        udp_round_trip(s, server, b"list me")?;
    }
    translator_tests::ping_all(&topo.client, &server_via_prefix().to_string(), 2)?;

    // What identifies a session (idle times move between two listings).
    type Id = (
        String,
        Ipv6Addr,
        u16,
        std::net::Ipv4Addr,
        u16,
        std::net::Ipv4Addr,
        u16,
    );
    let id = |s: &Session| -> Id {
        (
            s.protocol.clone(),
            s.client,
            s.client_port,
            s.remote,
            s.remote_port,
            s.pool,
            s.pool_port,
        )
    };
    let listed = |args: &[&str]| gw.sessions_with(args);
    let all = listed(&[])?;
    ensure!(
        all.iter().filter(|s| s.protocol == "udp").count() == 5
            && all.iter().any(|s| s.protocol == "icmp"),
        "5 UDP sessions and a ping expected; {}",
        describe_sessions(&all)
    );
    let udp_port = all
        .iter()
        .find(|s| s.client == CLIENT_B && s.client_port == 45011)
        .map(|s| s.pool_port.to_string())
        .context("no session of client B's port 45011")?;
    let client_b = CLIENT_B.to_string();
    type Wanted<'a> = Box<dyn Fn(&Session) -> bool + 'a>;
    let cases: Vec<(Vec<&str>, Wanted)> = vec![
        (vec!["--protocol", "udp"], Box::new(|s| s.protocol == "udp")),
        (
            vec!["--protocol", "icmp"],
            Box::new(|s| s.protocol == "icmp"),
        ),
        (
            vec!["--client", &client_b],
            Box::new(|s| s.client == CLIENT_B),
        ),
        (
            vec!["--port", &udp_port],
            Box::new(|s| s.pool_port.to_string() == udp_port),
        ),
        (
            vec!["--client", &client_b, "--protocol", "tcp"],
            Box::new(|_| false),
        ),
        (vec!["--client", "2001:db8:1::99"], Box::new(|_| false)),
    ];
    for (args, wanted) in &cases {
        let mut want: Vec<Id> = all.iter().filter(|s| wanted(s)).map(id).collect();
        let mut got: Vec<Id> = listed(args)?.iter().map(id).collect();
        want.sort();
        got.sort();
        ensure!(
            got == want,
            "`sessions --json {}` listed {got:?}, the full listing has {want:?}",
            args.join(" ")
        );
        // The table: a header, one row per session, the count.
        let mut argv = vec!["sessions"];
        argv.extend(args.iter().copied());
        let text = gw.cli(&argv)?.stdout_str();
        let lines: Vec<&str> = text.lines().collect();
        ensure!(
            lines.len() == want.len() + 2
                && lines.first().is_some_and(|l| l.starts_with("proto "))
                && lines.last() == Some(&format!("{} session(s)", want.len()).as_str()),
            "`sessions {}`: expected {} rows and the count:\n{text}",
            args.join(" "),
            want.len()
        );
    }
    let sorted = listed(&["--sort"])?;
    let key = |s: &Session| {
        (
            s.client,
            ["tcp", "udp", "icmp"].iter().position(|p| *p == s.protocol),
            s.client_port,
            s.remote,
            s.remote_port,
        )
    };
    ensure!(
        sorted.windows(2).all(|w| key(&w[0]) <= key(&w[1])),
        "`sessions --sort` is not in (client, protocol, port, remote) order; {}",
        describe_sessions(&sorted)
    );
    let (mut a, mut b): (Vec<Id>, Vec<Id>) = (
        all.iter().map(id).collect(),
        sorted.iter().map(id).collect(),
    );
    a.sort();
    b.sort();
    ensure!(a == b, "`sessions --sort` lists {b:?}, without it {a:?}");
    Ok(())
}
