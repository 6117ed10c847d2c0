//! The issue 13 prototype of a session table without kernel element headers (`BENCH_TABLE`:
//! open addressing in a BPF array, claims by compare-and-swap; the bench-only programs
//! `bench_oa_insert` and `bench_oa_lookup`), whose cost the benchmark's "table" rows hold
//! against the kernel's hash map. It must hold what it was given, once, and nothing else.

use anyhow::{Result, ensure};
use translator::testrun::{Harness, Vary};
use translator_tests::require_root;

const XDP_DROP: u32 = 1;
const XDP_TX: u32 = 3;

/// A frame whose bench key (the IPv6 source's last word at 34, the UDP source port at 54) the
/// harness varies.
fn frame(word: u32) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[34..38].copy_from_slice(&word.to_be_bytes());
    f
}

/// Keys (word + n / 100, 1 + n % 100) for repetition n.
fn keys(word: u32) -> Vary {
    Vary {
        lo_off: 54,
        lo_base: 1,
        lo_mod: 100,
        hi_off: 34,
        hi_base: word,
        hi_len: 4,
    }
}

/// Runs `prog` once per key through the harness from key 0; returns the failures it counted.
fn each(h: &mut Harness, prog: &aya::programs::ProgramFd, word: u32, n: u32) -> Result<u64> {
    h.reset_seq()?;
    h.run(prog, &frame(word), Some(keys(word)), 0, n)?;
    h.take_fails()
}

#[test]
fn the_prototype_table_holds_each_key_once() -> Result<()> {
    require_root()?;
    // 4000 keys in 8192 slots: about as full as the table may get (two slots per entry).
    let n = 4000;
    let mut h = Harness::with_tables(1, 8192)?;
    let insert = h.program("bench_oa_insert")?;
    let lookup = h.program("bench_oa_lookup")?;
    ensure!(
        each(&mut h, &insert, 0x0001_0000, n)? == 0,
        "inserting {n} new keys failed for some"
    );
    let found = each(&mut h, &lookup, 0x0001_0000, n)?;
    ensure!(found == 0, "{found} of {n} inserted keys not found");
    // Inserting them again finds each there already.
    let again = each(&mut h, &insert, 0x0001_0000, n)?;
    ensure!(
        again == u64::from(n),
        "{again} of {n} second inserts refused (want all)"
    );
    // Keys never inserted are not found.
    let absent = each(&mut h, &lookup, 0x0002_0000, n)?;
    ensure!(
        absent == u64::from(n),
        "{absent} of {n} absent keys missed (want all)"
    );
    // One repetition, checked by its action: hit and miss.
    h.reset_seq()?;
    let hit = h.run(&lookup, &frame(0x0001_0000), Some(keys(0x0001_0000)), 0, 1)?;
    let miss = h.run(&lookup, &frame(0x0003_0000), None, 0, 1)?;
    ensure!(
        (hit.action, miss.action) == (XDP_TX, XDP_DROP),
        "lookup actions: hit {}, miss {} (want {XDP_TX}, {XDP_DROP})",
        hit.action,
        miss.action
    );
    h.take_fails()?;
    // The kernel accounts 48 bytes per slot, nothing per key.
    let bytes = h.map_memlock("BENCH_TABLE")?;
    ensure!(
        (8192 * 48..8192 * 48 + 8192).contains(&bytes),
        "BENCH_TABLE of 8192 slots: {bytes} bytes of kernel memory"
    );
    Ok(())
}
