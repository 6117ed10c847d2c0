//! What must hold before `translator run` loads anything: pins it may adopt (their map layout,
//! the pool layout they were made for) and the host settings the data plane relies on.

use crate::{
    config::Config,
    dataplane::{self, Instance},
    netns,
};

/// Refuses to adopt pinned state of another map layout, or whose pool layout differs from the
/// new configuration: the queued blocks and bindings would not match it.
pub(super) fn check_adoptable(inst: &Instance, cfg: &Config) -> anyhow::Result<()> {
    dataplane::check_layout(inst)?;
    dataplane::check_permit_room(&inst.pins, cfg)?;
    let Ok(old) = inst.read_state().and_then(|s| s.config()) else {
        log::warn!(
            "pins of instance {:?} exist without a readable state file; adopting them as they are",
            inst.name
        );
        return Ok(());
    };
    if let Some(setting) = old.session_setting_changed(cfg) {
        anyhow::bail!(
            "{setting} differs from the running data plane of instance {:?}; it cannot change \
             while sessions exist: run `translator down --instance {}` first (this drops every \
             session)",
            inst.name,
            inst.name
        );
    }
    if old.prefix != cfg.prefix {
        log::warn!(
            "nat64.prefix changes from {} to {}: existing sessions keep working, new ones use the new prefix",
            old.prefix,
            cfg.prefix
        );
    }
    Ok(())
}

/// Host settings the data plane depends on:
/// - the XDP route lookup refuses to forward when the receiving interface has forwarding off;
/// - a translated packet handed to the kernel (next hop's MAC not yet known) has a pool address
///   as its source, which the kernel drops as "martian" when the pool address is its own
///   unless the receiving interface accepts local sources and does no strict reverse-path check.
pub(super) fn enable_forwarding(cfg: &Config) -> anyhow::Result<()> {
    let v6if = &cfg.ipv6_interface;
    for (path, value, what) in [
        ("net/ipv4/ip_forward".to_owned(), "1", "IPv4 forwarding"),
        (
            "net/ipv6/conf/all/forwarding".to_owned(),
            "1",
            "IPv6 forwarding",
        ),
        (
            format!("net/ipv4/conf/{v6if}/forwarding"),
            "1",
            "IPv4 forwarding",
        ),
        (
            format!("net/ipv6/conf/{}/forwarding", cfg.ipv4_interface),
            "1",
            "IPv6 forwarding",
        ),
        (
            format!("net/ipv4/conf/{v6if}/accept_local"),
            "1",
            "local source addresses",
        ),
        (
            format!("net/ipv4/conf/{v6if}/rp_filter"),
            "0",
            "no reverse-path filter",
        ),
    ] {
        if netns::sysctl(&path).as_deref() != Some(value) {
            netns::set_sysctl(&path, value)?;
            log::info!("set {} = {value} ({what})", path.replace('/', "."));
        }
    }
    if netns::sysctl("net/ipv4/conf/all/rp_filter").as_deref() == Some("1") {
        log::warn!(
            "net.ipv4.conf.all.rp_filter = 1 (strict) overrides {v6if}: the first packets of a flow \
             to a not yet resolved next hop may be dropped; use 0 or 2 (loose)"
        );
    }
    Ok(())
}
