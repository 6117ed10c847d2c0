//! Router advertisements from the gateway (RFC 4861 section 6, RFC 8106, RFC 8781), configured
//! by the `[ra]` table, off by default: on `interfaces.ipv6` the controller sends unsolicited
//! advertisements and answers router solicitations, so that IPv6-only hosts learn their
//! address prefix, default router, resolver (RDNSS, the DNS64 server) and NAT64 prefix
//! (PREF64, always `nat64.prefix`) with nothing typed by hand.
//!
//! Behaviour: RFC 4861 section 6, RFC 8106, RFC 8781. Choices where the RFCs leave room (after what
//! radvd, BIRD and odhcpd do):
//! - Answers to solicitations are multicast to ff02::1 and restart the interval timer
//!   (RFC 4861's usual case); unicast answers (RFC 7772) are not implemented.
//! - The RDNSS addresses are derived from `dns64.listen` at every advertisement (see
//!   [`RdnssSource::resolve`]), unless `ra.rdnss` lists them.
//! - Prefixes, RDNSS addresses and search domains that disappear (a reload, an address
//!   removed from the interface) are sent with lifetime 0 in the next three advertisements.
//! - One final advertisement (router lifetime 0, every option lifetime 0) when advertising
//!   stops on purpose: `translator down`, or a reload that sets `enabled = false`. Stopping or
//!   restarting the controller withdraws nothing.
//! - Received solicitations must pass RFC 4861 section 6.1.1; the others are counted under
//!   their reason and otherwise ignored.
//!
//! Layout, one job per file; a module imports only from modules above it in this list:
//! - `wire`: the messages on the wire, encoded and decoded by hand (pure).
//! - `rdnss`: which addresses the RDNSS option carries (the derivation rule).
//! - `config`: the TOML table, defaults, validation.
//! - `link`: the interface's addresses and link-layer address, read fresh.
//! - `schedule`: the RFC 4861 timers as a pure state machine.
//! - `advert`: configuration and link to an advertisement; final ones; withdrawals (pure).
//! - `stats`: counters, `controller.json` section `"ra"`.
//! - `trace`: events for `translator trace`.
//! - `socket`: the raw ICMPv6 socket.
//! - `responder`: the task, `ra.json`, and the final advertisement of `translator down`.
//! - `show`, `routers`: text for `translator ra show`, `check` and `ra config --for`.

mod advert;
mod config;
pub mod link;
pub mod rdnss;
mod responder;
mod routers;
mod schedule;
mod show;
pub mod socket;
mod stats;
mod trace;
pub mod wire;

pub use advert::{build, finalize};
pub use config::{Context, RaConfig, RaConfigError, ValidRa};
pub use link::{Link, mac_text};
pub use rdnss::{RdnssSource, Skipped, is_link_local};
pub use responder::{FinalReport, Handle, LAST_FILE, LastAdvert, send_final, spawn};
pub use routers::{Inputs, Router, stanza};
pub use schedule::{MAX_INITIAL_RTR_ADVERT_INTERVAL, MAX_RA_DELAY_TIME, MIN_DELAY_BETWEEN_RAS};
pub use show::{advert_text, check_summary};
pub use socket::{ALL_NODES, RaSocket};
pub use stats::RaStats;
pub use trace::{RaEvent, TraceListener, TraceSink};
