//! The issue 13 prototypes of a session table without kernel element headers, bench-only: a
//! window of slots in a BPF array (`BENCH_TABLE`, programs `bench_oa_*`) and buckets of 7 slots
//! with a word of fingerprints (`BENCH_BUCKETS`, programs `bench_bk_*`), both claiming slots
//! with atomic operations. The benchmark's "table" rows hold their cost against the kernel's
//! hash map; here they must hold what they were given, once, and nothing else.

use anyhow::{Result, ensure};
use translator::bucket_table::{self, Pass};
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

/// What a program did with `n` keys: how many failed (inserts that could not go in, lookups
/// that missed) and how many inserts found their key present.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    failed: u64,
    present: u64,
}

/// Runs `prog` once per key through the harness from key 0; returns what it counted.
fn each(h: &mut Harness, prog: &aya::programs::ProgramFd, word: u32, n: u32) -> Result<Counts> {
    h.reset_seq()?;
    h.run(prog, &frame(word), Some(keys(word)), 0, n)?;
    Ok(Counts {
        failed: h.take_fails()?,
        present: h.take_present()?,
    })
}

/// The counts a check wants.
fn counts(failed: u32, present: u32) -> Counts {
    Counts {
        failed: u64::from(failed),
        present: u64::from(present),
    }
}

/// Inserts, second inserts, lookups of present and absent keys through one table's programs
/// (`bench_{table}insert` and so on: `oa_`, `bk_`, or `` for the hash map they are measured
/// against).
fn holds_each_key_once(h: &mut Harness, table: &str, n: u32) -> Result<()> {
    let insert = h.program(&format!("bench_{table}insert"))?;
    let lookup = h.program(&format!("bench_{table}lookup"))?;
    let create = h.program(&format!("bench_{table}create"))?;
    let name = if table.is_empty() { "hash map" } else { table };
    let inserted = each(h, &insert, 0x0001_0000, n)?;
    ensure!(
        inserted == counts(0, 0),
        "{name}: inserting {n} new keys: {inserted:?}"
    );
    let found = each(h, &lookup, 0x0001_0000, n)?;
    ensure!(
        found == counts(0, 0),
        "{name}: looking up {n} inserted keys: {found:?}"
    );
    // Inserting them again finds each there already; so does a new flow's lookup and insert.
    let again = each(h, &insert, 0x0001_0000, n)?;
    ensure!(
        again == counts(0, n),
        "{name}: {n} second inserts: {again:?} (want all present)"
    );
    let again = each(h, &create, 0x0001_0000, n)?;
    ensure!(
        again == counts(0, n),
        "{name}: {n} creations of present keys: {again:?} (want all present)"
    );
    // Keys never inserted are not found, and then created.
    let absent = each(h, &lookup, 0x0002_0000, n / 4)?;
    ensure!(
        absent == counts(n / 4, 0),
        "{name}: {} lookups of absent keys: {absent:?} (want all missed)",
        n / 4
    );
    let created = each(h, &create, 0x0002_0000, n / 4)?;
    ensure!(
        created == counts(0, 0),
        "{name}: {} creations: {created:?}",
        n / 4
    );
    let found = each(h, &lookup, 0x0002_0000, n / 4)?;
    ensure!(
        found == counts(0, 0),
        "{name}: looking up {} created keys: {found:?}",
        n / 4
    );
    // One repetition, checked by its action: hit and miss.
    h.reset_seq()?;
    let hit = h.run(&lookup, &frame(0x0001_0000), Some(keys(0x0001_0000)), 0, 1)?;
    let miss = h.run(&lookup, &frame(0x0003_0000), None, 0, 1)?;
    ensure!(
        (hit.action, miss.action) == (XDP_TX, XDP_DROP),
        "{name}: lookup actions: hit {}, miss {} (want {XDP_TX}, {XDP_DROP})",
        hit.action,
        miss.action
    );
    h.take_fails()?;
    h.take_present()?;
    Ok(())
}

#[test]
fn the_prototype_tables_hold_each_key_once() -> Result<()> {
    require_root()?;
    // 5000 keys each: 61% of the window table's 8192 slots (it is sized at 50%), 84% of the
    // bucket table's 853 buckets of 7 slots (840 asked for, rounded up to a prime), and the
    // hash map the programs are measured against (room for 8192).
    ensure!(
        bucket_table::bucket_count(840)? == 853,
        "bucket_count(840) = {}, want the next prime, 853",
        bucket_table::bucket_count(840)?
    );
    let mut h = Harness::with_tables(8192, 8192, 840)?;
    holds_each_key_once(&mut h, "", 4000)?;
    holds_each_key_once(&mut h, "oa_", 4000)?;
    holds_each_key_once(&mut h, "bk_", 4000)?;
    // The kernel accounts the slots, nothing per key: 48 bytes a slot, 344 a bucket, and at
    // most two pages of the map itself.
    for (map, want) in [("BENCH_TABLE", 8192 * 48), ("BENCH_BUCKETS", 853 * 344)] {
        let bytes = h.map_memlock(map)?;
        ensure!(
            (want..want + 8192).contains(&bytes),
            "{map}: {bytes} bytes of kernel memory (want {want} and at most a page more)"
        );
    }
    Ok(())
}

/// The bench key's fields in a bucket-table key (the eBPF `oa_key`): the address word and the
/// source port (the program reads them from the frame in host order).
fn word_and_port(key: &[u32; 7]) -> (u32, u32) {
    (
        u32::from_be(key[3]),
        u32::from(u16::from_be((key[5] >> 16) as u16)),
    )
}

#[test]
fn the_controller_expires_bucket_entries_in_mapped_memory() -> Result<()> {
    require_root()?;
    // 5000 keys in 853 buckets (84% of the slots), as above: words 0x0001_0000.. with ports
    // 1..=100 (4000 keys) and 0x0002_0000.. (1000 keys).
    let mut h = Harness::with_tables(1, 1, 840)?;
    let insert = h.program("bench_bk_insert")?;
    let lookup = h.program("bench_bk_lookup")?;
    let create = h.program("bench_bk_create")?;
    for (word, n) in [(0x0001_0000, 4000), (0x0002_0000, 1000)] {
        let done = each(&mut h, &insert, word, n)?;
        ensure!(done == counts(0, 0), "{n} inserts from {word:#x}: {done:?}");
    }
    let all: std::collections::BTreeSet<(u32, u32)> = (0..4000)
        .map(|n| (0x0001_0000 + n / 100, 1 + n % 100))
        .chain((0..1000).map(|n| (0x0002_0000 + n / 100, 1 + n % 100)))
        .collect();
    let table = h.bucket_table()?;
    let listed = |table: &bucket_table::BucketTable| {
        let mut seen = std::collections::BTreeSet::new();
        let pass = table.expire(|key, value| {
            let (word, port) = word_and_port(key);
            // The value the program wrote: the bench key twice.
            let k = u64::from(key[3]) << 16 | u64::from(key[5] >> 16);
            seen.insert((word, port, *value == [k, k]));
            false
        });
        (pass, seen)
    };
    // A pass that expires nothing sees every key once, with its value.
    let (pass, seen) = listed(&table);
    let want: std::collections::BTreeSet<_> = all.iter().map(|&(w, p)| (w, p, true)).collect();
    ensure!(
        pass == Pass {
            live: 5000,
            deleted: 0,
            busy: 0
        } && seen == want,
        "first pass: {pass:?}, {} distinct entries, {} of them not the 5000 inserted (first {:x?})",
        seen.len(),
        seen.difference(&want).count(),
        seen.iter()
            .take(3)
            .chain(seen.iter().rev().take(3))
            .collect::<Vec<_>>()
    );
    ensure!(
        table.overflow_total() > 0,
        "at 84% of the slots some keys should have passed a full bucket"
    );
    // Expire the keys with an even port: 2500 go, the programs no longer find them, the rest
    // stay where they were.
    let pass = table.expire(|key, _| word_and_port(key).1.is_multiple_of(2));
    ensure!(
        pass == Pass {
            live: 5000,
            deleted: 2500,
            busy: 0
        },
        "expiring even ports: {pass:?} (want 2500 of 5000 deleted)"
    );
    let (pass, seen) = listed(&table);
    let odd: std::collections::BTreeSet<_> =
        want.iter().filter(|e| e.1 % 2 == 1).copied().collect();
    ensure!(
        pass.live == 2500 && seen == odd,
        "after expiry: {} entries, {} of them not the odd ports",
        pass.live,
        seen.difference(&odd).count()
    );
    let missing = each(&mut h, &lookup, 0x0001_0000, 4000)?;
    ensure!(
        missing == counts(2000, 0),
        "4000 lookups after expiring half: {missing:?} (want the 2000 even ports missed)"
    );
    // A new flow of an expired key gets in again; the kept ones are refused as present.
    let refused = each(&mut h, &create, 0x0001_0000, 4000)?;
    ensure!(
        refused == counts(0, 2000),
        "4000 creations: {refused:?} (want the 2000 kept keys present)"
    );
    let missing = each(&mut h, &lookup, 0x0001_0000, 4000)?;
    ensure!(
        missing == counts(0, 0),
        "4000 lookups after re-creating: {missing:?}"
    );
    // Expiring everything empties the table and undoes every overflow count.
    let pass = table.expire(|_, _| true);
    ensure!(
        pass == Pass {
            live: 4500,
            deleted: 4500,
            busy: 0
        },
        "expiring all: {pass:?} (want 4500 of 4500)"
    );
    ensure!(
        listed(&table).0.live == 0 && table.overflow_total() == 0,
        "an emptied table keeps {} entries and overflow counts summing to {}",
        listed(&table).0.live,
        table.overflow_total()
    );
    Ok(())
}

#[test]
fn inserts_racing_on_two_cpus_and_the_controller_keep_each_key_once() -> Result<()> {
    require_root()?;
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| anyhow::anyhow!("counting CPUs: {e}"))?;
    let on: Vec<usize> = (0..cpus.min(2)).collect();
    // 12000 keys (words 0x0001_0000.., ports 1..=100) in 2017 buckets: 85% of the slots. Each
    // CPU inserts all of them in the same order while the controller deletes the even ports
    // again and again.
    let n = 12_000;
    let mut h = Harness::with_tables(1, 1, 2000)?;
    let insert = h.program("bench_bk_insert")?;
    let lookup = h.program("bench_bk_lookup")?;
    let create = h.program("bench_bk_create")?;
    let table = h.bucket_table()?;
    h.reset_seq()?;
    let mut passes = 0;
    h.run_on_cpus(
        &insert,
        &frame(0x0001_0000),
        Some(keys(0x0001_0000)),
        n,
        &on,
        || {
            table.expire(|key, _| word_and_port(key).1.is_multiple_of(2));
            passes += 1;
        },
    )?;
    // Each key went in once; the other CPUs' inserts found it present or failed on a held
    // lock.
    let (failed, present) = (h.take_fails()?, h.take_present()?);
    let refused = failed + present;
    let pass = table.expire(|key, _| word_and_port(key).1.is_multiple_of(2));
    ensure!(
        pass.busy == 0,
        "a pass after the runs found busy entries: {pass:?}"
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut twice = Vec::new();
    table.expire(|key, _| {
        if !seen.insert(word_and_port(key)) {
            twice.push(word_and_port(key));
        }
        false
    });
    ensure!(
        twice.is_empty(),
        "{} keys are in the table twice (first {:x?}); {passes} controller passes ran",
        twice.len(),
        twice.first()
    );
    ensure!(
        seen.iter().all(|&(_, port)| port % 2 == 1),
        "even ports left after the last expiry pass"
    );
    ensure!(
        refused >= u64::from(n) / 2 * (on.len() as u64 - 1),
        "only {refused} of {} inserts refused ({present} found the key present, {failed} \
         failed): a key went in on more than one CPU",
        u64::from(n) * on.len() as u64
    );
    // Every odd key the table holds, the program finds; the odd keys no CPU got in (a held
    // lock), a create puts in now; then all 6000 are found, once.
    let missing = each(&mut h, &lookup, 0x0001_0000, n)?;
    ensure!(
        missing.failed == u64::from(n) - seen.len() as u64,
        "{n} lookups: {missing:?}; the table lists {} keys",
        seen.len()
    );
    each(&mut h, &create, 0x0001_0000, n)?;
    let mut odd = 0;
    let all = table.expire(|key, _| {
        odd += u64::from(word_and_port(key).1 % 2);
        false
    });
    ensure!(
        all.live == u64::from(n) && odd == u64::from(n) / 2,
        "after creating the missing keys: {} entries, {odd} with odd ports (want {n}, {})",
        all.live,
        n / 2
    );
    Ok(())
}

/// The bucket-table key and value the eBPF programs make for the frame of `word` and `port`
/// (the eBPF `oa_key`: the address word and port as read from the frame, in host order).
fn entry_of(word: u32, port: u16) -> ([u32; 7], [u64; 2]) {
    let w = u32::from_ne_bytes(word.to_be_bytes());
    let p = u32::from(u16::from_ne_bytes(port.to_be_bytes()));
    let k = u64::from(w) << 16 | u64::from(p);
    (
        [0x2001_0db8, 1, 0, w, 0xc000_0202, p << 16 | 1000, 17],
        [k, k],
    )
}

#[test]
fn the_controller_inserts_what_the_programs_find() -> Result<()> {
    require_root()?;
    let mut h = Harness::with_tables(1, 1, 840)?;
    let insert = h.program("bench_bk_insert")?;
    let lookup = h.program("bench_bk_lookup")?;
    let create = h.program("bench_bk_create")?;
    let table = h.bucket_table()?;
    let set = |word: u32| (0..2500u32).map(move |n| entry_of(word + n / 100, 1 + (n % 100) as u16));
    // 2500 keys from the programs, 2500 from the controller: 84% of the 853 buckets' slots.
    let done = each(&mut h, &insert, 0x0001_0000, 2500)?;
    ensure!(done == counts(0, 0), "2500 program inserts: {done:?}");
    for (key, value) in set(0x0002_0000) {
        ensure!(
            table.insert(&key, value)?,
            "the controller's insert of {key:x?} found it there already"
        );
    }
    // The programs find the controller's keys (and refuse to create them again); the
    // controller finds the programs' keys, with their values, and its own.
    let missing = each(&mut h, &lookup, 0x0002_0000, 2500)?;
    ensure!(
        missing == counts(0, 0),
        "the programs' lookups of the controller's 2500 keys: {missing:?}"
    );
    let refused = each(&mut h, &create, 0x0002_0000, 2500)?;
    ensure!(
        refused == counts(0, 2500),
        "the programs' creations of the controller's 2500 keys: {refused:?} (want all present)"
    );
    for (key, value) in set(0x0001_0000).chain(set(0x0002_0000)) {
        ensure!(
            table.get(&key) == Some(value),
            "the controller reads {:x?} for {key:x?}, want {value:x?}",
            table.get(&key)
        );
        ensure!(
            !table.insert(&key, value)?,
            "the controller inserted {key:x?} twice"
        );
    }
    let (absent, _) = entry_of(0x0003_0000, 1);
    ensure!(
        table.get(&absent).is_none(),
        "the controller finds a key never inserted"
    );
    // Emptying the table undoes the overflow counts of both sides' inserts.
    ensure!(
        table.overflow_total() > 0,
        "at 84% of the slots some keys should have passed a full bucket"
    );
    let pass = table.expire(|_, _| true);
    ensure!(
        pass == Pass {
            live: 5000,
            deleted: 5000,
            busy: 0
        } && table.overflow_total() == 0,
        "expiring all: {pass:?} (want 5000 of 5000), overflow counts summing to {}",
        table.overflow_total()
    );
    Ok(())
}
