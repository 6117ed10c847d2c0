//! `translator clat`: the host-side translator of 464XLAT (see `crate::clat`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clat::{self, Status, discover::Prefix64};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// The uplink (IPv6) interface; default: the interface of the IPv6 default route.
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,
    /// The PLAT prefix to use when router advertisements (PREF64) and DNS (ipv4only.arpa) give
    /// none, e.g. 64:ff9b::/96.
    #[arg(long, value_name = "PREFIX/LEN")]
    pub prefix: Option<String>,
    /// Do not look the prefix up through DNS (RFC 7050).
    #[arg(long)]
    pub no_dns: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// The prefix in use, how it was learnt, its lifetime, the addresses and the counters.
    Status {
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
    },
    /// Stop the CLAT and remove everything it set up (interfaces, route, address, programs,
    /// pins, state).
    Down,
}

/// `netns`: the `--netns` option. As `ip netns exec` does, the namespace's own resolver
/// configuration (/etc/netns/NAME/resolv.conf) then replaces /etc/resolv.conf.
pub fn main(a: Args, netns: Option<&str>) -> anyhow::Result<()> {
    match a.action {
        None => {
            let prefix = a.prefix.as_deref().map(Prefix64::parse).transpose()?;
            let resolv_conf = netns
                .map(|n| {
                    std::path::Path::new("/etc/netns")
                        .join(n)
                        .join("resolv.conf")
                })
                .filter(|p| p.exists())
                .unwrap_or_else(|| "/etc/resolv.conf".into());
            clat::run(clat::Options {
                interface: a.interface,
                prefix,
                no_dns: a.no_dns,
                resolv_conf,
            })
        }
        Some(Action::Status { json }) => status(json),
        Some(Action::Down) => {
            let done = clat::down()?;
            if done.is_empty() {
                println!("nothing to remove: no CLAT ran here");
            }
            for d in done {
                println!("{d}");
            }
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    status: Status,
    running: bool,
    /// The data plane's counters (events and drops that are not zero).
    dataplane: BTreeMap<&'static str, u64>,
}

fn status(json: bool) -> anyhow::Result<()> {
    let status = Status::read()?;
    let running = clat::alive(status.pid);
    let mut dataplane = BTreeMap::new();
    if let Ok((events, drops)) = clat::dataplane::counters(&clat::pins_dir()) {
        for (e, n) in events {
            if n > 0 {
                dataplane.insert(e.name(), n);
            }
        }
        for (r, n) in drops {
            if n > 0 {
                dataplane.insert(r.name(), n);
            }
        }
    }
    let r = Report {
        status,
        running,
        dataplane,
    };
    if json {
        return super::print_json(&r);
    }
    let s = &r.status;
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_owned());
    println!(
        "CLAT {} (pid {}{})",
        s.state,
        s.pid,
        if r.running { "" } else { ", not running" }
    );
    if let Some(why) = &s.reason {
        println!("  why            {why}");
    }
    println!("  uplink         {}", s.uplink);
    println!(
        "  IPv4           {} on {}",
        s.ipv4.map(|a| a.to_string()).unwrap_or_default(),
        s.v4_interface
    );
    println!(
        "  CLAT address   {}",
        s.clat6
            .map(|a| a.to_string())
            .unwrap_or_else(|| "none yet".to_owned())
    );
    let source = s
        .source
        .as_ref()
        .map(|v| match v.get("kind").and_then(|k| k.as_str()) {
            Some("router-advertisement") => format!(
                "PREF64 from router {}",
                v.get("router").and_then(|r| r.as_str()).unwrap_or("?")
            ),
            Some("dns") => format!(
                "ipv4only.arpa through {}",
                v.get("resolver").and_then(|r| r.as_str()).unwrap_or("?")
            ),
            Some(k) => k.to_owned(),
            None => "?".to_owned(),
        })
        .unwrap_or_else(|| "none".to_owned());
    println!("  prefix         {} ({source})", or_none(&s.prefix));
    println!(
        "  lifetime       {}",
        s.lifetime_remaining_s
            .map(|l| format!("{l} s left"))
            .unwrap_or_else(|| "no expiry".to_owned())
    );
    println!(
        "  sources        PREF64 {}, DNS {}, configured {}",
        or_none(&s.ra_prefix),
        or_none(&s.dns_prefix),
        or_none(&s.configured_prefix)
    );
    if let Some(e) = &s.dns_error {
        println!("  DNS            {e}");
    }
    println!("counters");
    for (k, n) in &s.counters {
        println!("  {k:<28} {n}");
    }
    println!("data plane");
    for (k, n) in &r.dataplane {
        println!("  {k:<28} {n}");
    }
    Ok(())
}
