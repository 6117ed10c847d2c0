//! `translator ra show` and `translator ra config --for`.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::Config;
use crate::dataplane::Instance;
use crate::ra::{self, Link, RdnssSource, Router, wire};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RaCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RaCommand {
    /// The router advertisement the running instance sends, decoded (with --config: the one a
    /// configuration file describes, built here without a running instance).
    Show {
        #[command(flatten)]
        instance: super::InstanceArgs,
        /// Build it from this configuration file and the interface as seen here instead.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
    },
    /// Print another router's configuration that sends the same advertisement.
    Config {
        /// The software: radvd, networkd (systemd-networkd) or bird (BIRD 2).
        #[arg(long = "for", value_enum)]
        router: Router,
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Serialize)]
struct Shown<'a> {
    /// Whether it was sent (from `ra.json`) or only built from a configuration file.
    sent: bool,
    interface: &'a str,
    source: Option<std::net::Ipv6Addr>,
    destination: std::net::Ipv6Addr,
    /// "unsolicited", "solicited", "final", or "built".
    kind: &'a str,
    sent_unix: Option<u64>,
    bytes: usize,
    advert: &'a wire::Advert,
    notes: Vec<String>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    match a.command {
        RaCommand::Show {
            instance: _,
            config: Some(path),
            json,
        } => show_built(&path, json),
        RaCommand::Show {
            instance,
            config: None,
            json,
        } => show_sent(&instance.instance, json),
        RaCommand::Config { router, config } => print_config(router, &config),
    }
}

fn show_sent(name: &str, json: bool) -> anyhow::Result<()> {
    let inst = Instance::new(name);
    let state = inst.read_state()?;
    let last = ra::LastAdvert::read(&inst.run).with_context(|| {
        let enabled = state.config().map(|c| c.ra.enabled).unwrap_or(false);
        if enabled {
            format!("instance {name:?} has sent no router advertisement yet")
        } else {
            format!(
                "instance {name:?} does not advertise ([ra] enabled = false); \
                 `translator ra show --config FILE` shows what a configuration would send"
            )
        }
    })?;
    let bytes = last.bytes()?;
    let advert = wire::decode(&bytes).context("decoding the last advertisement")?;
    let mut notes = Vec::new();
    if !state.controller_running() {
        notes.push(format!(
            "the controller of instance {name:?} is not running: this is the last advertisement \
             it sent"
        ));
    }
    let shown = Shown {
        sent: true,
        interface: &last.interface,
        source: Some(last.source),
        destination: last.destination,
        kind: &last.kind,
        sent_unix: Some(last.sent_unix),
        bytes: bytes.len(),
        advert: &advert,
        notes,
    };
    print(&shown, json)
}

/// Why derived RDNSS addresses may be missing, as comment lines.
fn rdnss_notes(cfg: &Config, link: &Link) -> (Vec<std::net::Ipv6Addr>, Vec<String>) {
    let (servers, skipped) = cfg.ra.rdnss.resolve(&cfg.ra.interface, &link.addrs);
    let mut notes = Vec::new();
    if link.ifindex == 0 && matches!(cfg.ra.rdnss, RdnssSource::Dns64(_)) {
        notes.push(format!(
            "interfaces.ipv6 = {:?} does not exist here (use --netns, or run this on the \
             gateway): RDNSS addresses derived from dns64.listen may be missing",
            cfg.ra.interface
        ));
    }
    for s in skipped.into_iter().filter(|_| link.ifindex != 0) {
        notes.push(format!(
            "dns64.listen {} gives no RDNSS address here: {} (run this on the gateway, or list \
             the resolver addresses in ra.rdnss)",
            s.listen, s.why
        ));
    }
    (servers, notes)
}

fn show_built(path: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    let link = Link::read(&cfg.ra.interface);
    let (advert, _) = ra::build(&cfg.ra, &link);
    let (_, mut notes) = rdnss_notes(&cfg, &link);
    if link.ifindex == 0 {
        notes.push(format!(
            "interfaces.ipv6 = {:?} does not exist here: no source link-layer address",
            cfg.ra.interface
        ));
    }
    if !cfg.ra.enabled {
        notes.push("ra.enabled is false: the controller does not send it".into());
    }
    let bytes = wire::encode(&advert).context("encoding the advertisement")?;
    let shown = Shown {
        sent: false,
        interface: &cfg.ra.interface,
        source: link.link_local(),
        destination: ra::ALL_NODES,
        kind: "built",
        sent_unix: None,
        bytes: bytes.len(),
        advert: &advert,
        notes,
    };
    print(&shown, json)
}

fn print(s: &Shown<'_>, json: bool) -> anyhow::Result<()> {
    if json {
        return super::print_json(s);
    }
    let from = s.source.map_or_else(
        || "(no link-local address here)".to_owned(),
        |a| a.to_string(),
    );
    if s.sent {
        let ago = s.sent_unix.map_or_else(String::new, |t| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!(", {} s ago", now.saturating_sub(t))
        });
        println!(
            "router advertisement sent on {} from {from} to {} ({}{ago}), {} bytes",
            s.interface, s.destination, s.kind, s.bytes
        );
    } else {
        println!(
            "router advertisement for {} from {from} to {} (built from the configuration, not \
             sent), {} bytes",
            s.interface, s.destination, s.bytes
        );
    }
    print!("{}", ra::advert_text(s.advert));
    for n in &s.notes {
        println!("note: {n}");
    }
    Ok(())
}

fn print_config(router: Router, path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    let link = Link::read(&cfg.ra.interface);
    let (servers, notes) = rdnss_notes(&cfg, &link);
    let source = path.display().to_string();
    print!(
        "{}",
        ra::stanza(
            router,
            &ra::Inputs {
                cfg: &cfg.ra,
                rdnss: &servers,
                rdnss_notes: &notes,
                source: &source,
                instance: &cfg.instance,
            }
        )
    );
    Ok(())
}
