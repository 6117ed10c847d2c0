//! The session tables' kernel memory: what `limits.sessions` is checked against at start
//! (`dataplane::memory::planned`) held against the kernel's own accounting of the loaded maps
//! (`memlock` in their fdinfo, as `bpftool map show` prints it).

mod fixture_instance;

use anyhow::{Result, ensure};
use fixture_instance::{BASE, with_fixture_instance};
use translator::{config::Config, dataplane::memory};
use translator_tests::require_root;

/// Loads an instance with `limits.sessions = sessions` and one pool address; returns
/// (planned, measured) bytes.
fn planned_and_measured(sessions: u32) -> Result<(u64, u64)> {
    let settings = format!(
        "clients = [\"2001:db8:1::/48\"]\n[pool]\naddresses = [\"192.0.2.1\"]\n[limits]\nsessions = {sessions}\n"
    );
    let cfg = Config::parse(&format!("instance = \"mem\"\n{BASE}{settings}"))?;
    with_fixture_instance(&format!("mem-{sessions}"), &settings, |fx| {
        Ok((memory::planned(&cfg), memory::measured(&fx.pins)?))
    })
}

#[test]
fn the_planned_session_memory_is_what_the_kernel_allocates() -> Result<()> {
    require_root()?;
    // A power of two, one just above it (twice the buckets) and a table larger than the pool's
    // ports.
    for sessions in [65_536, 65_537, 400_000] {
        let (planned, measured) = planned_and_measured(sessions)?;
        let off = planned.abs_diff(measured) as f64 / measured as f64;
        eprintln!("limits.sessions = {sessions}: planned {planned}, measured {measured}");
        ensure!(
            off < 0.001,
            "limits.sessions = {sessions}: planned {planned} bytes, the kernel accounts \
             {measured} ({:.2} % apart)",
            off * 100.0
        );
        // A slot costs five preallocated elements and buckets; past the 196608 ports of one
        // pool address, the binding tables stop growing.
        let per_slot = measured / u64::from(sessions);
        ensure!(
            (250..=600).contains(&per_slot),
            "limits.sessions = {sessions}: {per_slot} bytes per slot"
        );
    }
    Ok(())
}
