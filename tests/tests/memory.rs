//! The session tables' kernel memory: what `limits.sessions` is checked against at start
//! (`dataplane::memory::planned`) held against the kernel's own accounting of the loaded maps
//! (`memlock` in their fdinfo, as `bpftool map show` prints it).

mod fixture_instance;

use anyhow::{Result, ensure};
use fixture_instance::with_fixture_instance;
use translator::dataplane::memory;
use translator_tests::require_root;

/// Loads an instance with `limits.sessions = sessions`; returns (planned, measured) bytes.
fn planned_and_measured(sessions: u32) -> Result<(u64, u64)> {
    let settings = format!(
        "clients = [\"2001:db8:1::/48\"]\n[pool]\naddresses = [\"192.0.2.1\"]\n[limits]\nsessions = {sessions}\n"
    );
    with_fixture_instance(&format!("mem-{sessions}"), &settings, |fx| {
        Ok((memory::planned(sessions), memory::measured(&fx.pins)?))
    })
}

#[test]
fn the_planned_session_memory_is_what_the_kernel_allocates() -> Result<()> {
    require_root()?;
    // A power of two, one just above it (twice the buckets) and a larger table.
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
        // Every slot costs the same whatever the table size: five preallocated elements.
        let per_slot = measured / u64::from(sessions);
        ensure!(
            (400..=800).contains(&per_slot),
            "limits.sessions = {sessions}: {per_slot} bytes per slot"
        );
    }
    Ok(())
}
