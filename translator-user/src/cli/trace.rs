use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use anyhow::anyhow;
use aya::maps::{Array, MapData, RingBuf};
use serde::Serialize;
use translator_common::{
    counters::DropReason,
    maps::{TRACE_EVENTS, TRACE_FILTER, TRACE_NOT_DROPPED, TRACE_SLOTS, TraceEvent, TraceFilter},
    rfc6052,
};

use crate::{
    clock::monotonic_ns,
    config::Protocol,
    dataplane::{Instance, open_map},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub instance: super::InstanceArgs,
    /// Only packets from or to this client (IPv6) or remote/pool (IPv4) address.
    #[arg(long)]
    pub client: Option<IpAddr>,
    /// Only this protocol: tcp, udp or icmp.
    #[arg(long)]
    pub protocol: Option<Protocol>,
    /// Only packets with this port (or ICMP identifier) on either side, before or after
    /// translation.
    #[arg(long)]
    pub port: Option<u16>,
    /// Stop after this many packets.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub seconds: Option<u64>,
    /// One JSON object per line.
    #[arg(short, long)]
    pub json: bool,
}

/// How long the data plane keeps tracing without hearing from us.
const LEASE: Duration = Duration::from_secs(3);

#[derive(Serialize)]
struct Side {
    family: u8,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: u16,
    dport: u16,
}

#[derive(Serialize)]
struct Record {
    protocol: Option<Protocol>,
    received: Side,
    sent: Option<Side>,
    action: &'static str,
    dropped: Option<&'static str>,
}

fn addr(family: u8, w: &[u32; 4]) -> Option<IpAddr> {
    match family {
        4 => Some(IpAddr::V4(Ipv4Addr::from(rfc6052::from_raw4(w[0])))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(rfc6052::from_raw6(w)))),
        _ => None,
    }
}

fn record(ev: &TraceEvent) -> Record {
    let proto = if ev.in_proto == translator_common::IPPROTO_ICMPV6 {
        translator_common::IPPROTO_ICMP
    } else {
        ev.in_proto
    };
    let action = match ev.action {
        0 => "aborted",
        1 => "drop",
        2 => "pass",
        3 => "tx",
        4 => "redirect",
        _ => "unknown",
    };
    let dropped = (ev.reason != TRACE_NOT_DROPPED)
        .then(|| {
            DropReason::ALL
                .get(usize::from(ev.reason))
                .map(|r| r.name())
        })
        .flatten();
    Record {
        protocol: Protocol::from_number(proto),
        received: Side {
            family: ev.in_family,
            src: addr(ev.in_family, &ev.in_src),
            dst: addr(ev.in_family, &ev.in_dst),
            sport: u16::from_be(ev.in_sport),
            dport: u16::from_be(ev.in_dport),
        },
        sent: (dropped.is_none() && ev.out_family != 0).then(|| Side {
            family: ev.out_family,
            src: addr(ev.out_family, &ev.out_src),
            dst: addr(ev.out_family, &ev.out_dst),
            sport: u16::from_be(ev.out_sport),
            dport: u16::from_be(ev.out_dport),
        }),
        action,
        dropped,
    }
}

fn side_text(s: &Side) -> String {
    let fmt = |a: Option<IpAddr>, p: u16| match a {
        Some(IpAddr::V6(a)) => format!("[{a}]:{p}"),
        Some(IpAddr::V4(a)) => format!("{a}:{p}"),
        None => "?".into(),
    };
    format!("{} -> {}", fmt(s.src, s.sport), fmt(s.dst, s.dport))
}

/// A router discovery event as `--json` prints it: `"origin": "controller"` and the event's
/// fields (`event`: `ra` or `rs`, `src`, `dst`, `what`, `detail`).
#[derive(Serialize)]
struct RaRecord<'a> {
    origin: &'static str,
    #[serde(flatten)]
    event: &'a crate::ra::RaEvent,
}

/// Whether a router discovery event passes the filter: ICMP only, no port, and the client
/// address as its source or destination.
fn ra_event_matches(a: &Args, ev: &crate::ra::RaEvent) -> bool {
    if a.protocol.is_some_and(|p| p != Protocol::Icmp) || a.port.is_some() {
        return false;
    }
    match a.client {
        Some(IpAddr::V6(c)) => ev.src == c || ev.dst == Some(c),
        Some(IpAddr::V4(_)) => false,
        None => true,
    }
}

/// A slot of the data plane's trace filters, held by this tracer until it ends (or its lease
/// runs out, if it is killed).
struct Slot {
    filter: Array<MapData, TraceFilter>,
    index: u32,
    base: TraceFilter,
}

impl Slot {
    /// Takes a free slot (one whose lease ran out) for a filter; another tracer starting at the
    /// same moment may pick the same slot, which the read-back after the write settles.
    fn claim(
        mut filter: Array<MapData, TraceFilter>,
        base: TraceFilter,
        instance: &str,
    ) -> anyhow::Result<Self> {
        for _attempt in 0..TRACE_SLOTS {
            let now = monotonic_ns();
            let free = (0..TRACE_SLOTS as u32).find(|&i| {
                filter
                    .get(&i, 0)
                    .is_ok_and(|f| f.until == 0 || f.until <= now)
            });
            let Some(index) = free else { break };
            let lease = TraceFilter {
                until: now + LEASE.as_nanos() as u64,
                ..base
            };
            filter
                .set(index, lease, 0)
                .map_err(|e| anyhow!("switching the trace on: {e}"))?;
            std::thread::sleep(Duration::from_millis(5));
            if filter.get(&index, 0).is_ok_and(|f| f.id == base.id) {
                return Ok(Self {
                    filter,
                    index,
                    base,
                });
            }
        }
        Err(anyhow!(
            "{TRACE_SLOTS} tracers already run on instance {instance:?} (the most at once): \
             stop one, or wait for one to finish"
        ))
    }

    fn renew(&mut self) -> anyhow::Result<()> {
        let f = TraceFilter {
            until: monotonic_ns() + LEASE.as_nanos() as u64,
            ..self.base
        };
        self.filter
            .set(self.index, f, 0)
            .map_err(|e| anyhow!("renewing the trace lease: {e}"))
    }
}

impl Drop for Slot {
    /// Switches this tracer's filter off at once (it would stop by itself when the lease runs
    /// out), unless the slot has passed to another tracer meanwhile.
    fn drop(&mut self) {
        if self
            .filter
            .get(&self.index, 0)
            .is_ok_and(|f| f.id == self.base.id)
        {
            let _ = self.filter.set(self.index, TraceFilter::default(), 0);
        }
    }
}

/// An id for this tracer, different from the last one's in the same slot.
fn tracer_id() -> u32 {
    let mixed = (u64::from(std::process::id()) << 32) ^ monotonic_ns();
    ((mixed ^ (mixed >> 29)) as u32) | 1
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let inst = Instance::new(&a.instance.instance);
    let filter: Array<MapData, TraceFilter> = open_map(&inst.pins, TRACE_FILTER)?
        .try_into()
        .map_err(|e| anyhow!("{TRACE_FILTER}: {e}"))?;
    let base = TraceFilter {
        until: 0,
        proto: a.protocol.map_or(0, Protocol::number),
        _pad: 0,
        port: a.port.unwrap_or(0),
        id: tracer_id(),
    };
    let mut slot = Slot::claim(filter, base, &inst.name)?;
    let ring_name = TRACE_EVENTS[slot.index as usize];
    let mut ring: RingBuf<MapData> = open_map(&inst.pins, ring_name)?
        .try_into()
        .map_err(|e| anyhow!("{ring_name}: {e}"))?;
    // Router discovery events come from the controller, not the data plane (see `ra::trace`).
    let ra_events = crate::ra::TraceListener::bind(&inst.run)
        .map_err(|e| log::debug!("no router advertisement events: {e}"))
        .ok();
    let deadline = a.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut renewed = Instant::now();
    let mut seen = 0u64;
    let result = (|| -> anyhow::Result<()> {
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) || a.count.is_some_and(|c| seen >= c) {
                return Ok(());
            }
            if renewed.elapsed() >= LEASE / 3 {
                slot.renew()?;
                renewed = Instant::now();
            }
            let mut got = false;
            for ev in ra_events.iter().flat_map(|l| l.poll()) {
                if !ra_event_matches(&a, &ev) || a.count.is_some_and(|c| seen >= c) {
                    continue;
                }
                got = true;
                seen += 1;
                if a.json {
                    println!(
                        "{}",
                        serde_json::to_string(&RaRecord {
                            origin: "controller",
                            event: &ev
                        })?
                    );
                } else {
                    println!("{}", ev.text());
                }
            }
            while let Some(item) = ring.next() {
                got = true;
                if item.len() < std::mem::size_of::<TraceEvent>() {
                    continue;
                }
                // SAFETY: the data plane writes whole TraceEvent records (length checked).
                let ev: TraceEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                if ev.id != base.id {
                    // Queued for an earlier tracer in this slot.
                    continue;
                }
                let r = record(&ev);
                if let Some(c) = a.client {
                    let sides = [Some(&r.received), r.sent.as_ref()];
                    let hit = sides
                        .iter()
                        .flatten()
                        .any(|s| s.src == Some(c) || s.dst == Some(c));
                    if !hit {
                        continue;
                    }
                }
                seen += 1;
                if a.json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    let proto = r.protocol.map_or("?", Protocol::name);
                    match (&r.sent, r.dropped) {
                        (_, Some(reason)) => {
                            println!("{proto:<4} {}  dropped: {reason}", side_text(&r.received))
                        }
                        (Some(s), None) => println!(
                            "{proto:<4} {}  =>  {}  ({})",
                            side_text(&r.received),
                            side_text(s),
                            r.action
                        ),
                        (None, None) => {
                            println!("{proto:<4} {}  ({})", side_text(&r.received), r.action)
                        }
                    }
                }
                if a.count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
            if !got {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    })();
    drop(slot);
    result
}
