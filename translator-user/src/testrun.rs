//! `BPF_PROG_TEST_RUN` for the data plane's programs: runs one on a packet in the kernel
//! without sending anything, returns its verdict and the packet as the program left it. XDP
//! programs get an `xdp_md`, TC (`SCHED_CLS`) programs an skb built from the frame. Used by the
//! packet fixture tests and the data-plane benchmark.

use std::os::fd::{AsRawFd as _, BorrowedFd};

const BPF_PROG_TEST_RUN: libc::c_long = 10;

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md` as the test run takes it.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// `struct __sk_buff` as the test run takes it (fields it does not accept stay zero).
#[repr(C)]
#[derive(Default)]
struct SkBuffCtx {
    len: u32,
    pkt_type: u32,
    mark: u32,
    queue_mapping: u32,
    protocol: u32,
    vlan_present: u32,
    vlan_tci: u32,
    vlan_proto: u32,
    priority: u32,
    ingress_ifindex: u32,
    ifindex: u32,
    tc_index: u32,
    cb: [u32; 5],
    hash: u32,
    tc_classid: u32,
    data: u32,
    data_end: u32,
    napi_id: u32,
    family: u32,
    remote_ip4: u32,
    local_ip4: u32,
    remote_ip6: [u32; 4],
    local_ip6: [u32; 4],
    remote_port: u32,
    local_port: u32,
    data_meta: u32,
    flow_keys: u64,
    tstamp: u64,
    wire_len: u32,
    gso_segs: u32,
    sk: u64,
    gso_size: u32,
    tstamp_type: u8,
    _bits: [u8; 3],
    hwtstamp: u64,
}

const _: () = assert!(std::mem::size_of::<SkBuffCtx>() == 192);

/// The syscall. The attr's pointers must point at live buffers of the sizes it gives.
fn test_run(attr: &mut TestRunAttr) -> std::io::Result<()> {
    // SAFETY: the callers fill the attr with pointers to buffers that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What one test run returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The XDP action (`XDP_DROP` = 1, `XDP_PASS` = 2, `XDP_TX` = 3, `XDP_REDIRECT` = 4).
    pub action: u32,
    /// The packet after the program.
    pub packet: Vec<u8>,
    /// Average run time per repetition, in ns, as the kernel measured it.
    pub ns_per_run: u32,
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: the verdict is carried out (frames are really transmitted or
/// redirected).
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// Runs the program `repeat` times in live-frames mode: the verdict of each run is carried out
/// (frames are really sent). The kernel resets the frame's pointers between runs but, when a
/// page is recycled, not necessarily its content: a program that rewrites the packet may see
/// its own output again. Returns the kernel's average time per run in ns.
pub fn run_live(
    prog: BorrowedFd<'_>,
    packet: &[u8],
    ingress_ifindex: u32,
    repeat: u32,
) -> std::io::Result<u32> {
    let ctx = XdpMd {
        data_end: packet.len() as u32,
        ingress_ifindex,
        ..Default::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        ..Default::default()
    };
    // No output buffers in live mode.
    test_run(&mut attr)?;
    Ok(attr.duration)
}

/// Runs the program `repeat` times on `packet`, as if received on `ingress_ifindex` (which
/// must exist in the caller's network namespace; route lookups happen there).
pub fn run(
    prog: BorrowedFd<'_>,
    packet: &[u8],
    ingress_ifindex: u32,
    repeat: u32,
) -> std::io::Result<Outcome> {
    // Room for the program to grow the packet (IPv4 -> IPv6 adds 20 bytes).
    let mut out = vec![0u8; packet.len() + 256];
    let ctx = XdpMd {
        data_end: packet.len() as u32,
        ingress_ifindex,
        ..Default::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        ..Default::default()
    };
    test_run(&mut attr)?;
    out.truncate(attr.data_size_out as usize);
    Ok(Outcome {
        action: attr.retval,
        packet: out,
        ns_per_run: attr.duration,
    })
}

/// Runs the TC program `repeat` times on an skb made of `packet`, as if received on `ifindex`
/// (which must exist in the caller's network namespace: the skb's device, where route lookups
/// happen). The action is the TC return code (`TC_ACT_OK` = 0, `TC_ACT_SHOT` = 2,
/// `TC_ACT_REDIRECT` = 7).
pub fn run_skb(
    prog: BorrowedFd<'_>,
    packet: &[u8],
    ifindex: u32,
    repeat: u32,
) -> std::io::Result<Outcome> {
    let mut out = vec![0u8; packet.len() + 256];
    let ctx = SkBuffCtx {
        ifindex,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ctx_size_in: std::mem::size_of::<SkBuffCtx>() as u32,
        ctx_in: &ctx as *const SkBuffCtx as u64,
        ..Default::default()
    };
    test_run(&mut attr)?;
    out.truncate(attr.data_size_out as usize);
    Ok(Outcome {
        action: attr.retval,
        packet: out,
        ns_per_run: attr.duration,
    })
}

/// Per-repetition changes the benchmark harness makes to its frame (see
/// [`translator_common::maps::BenchFrame`]): repetition `n` gets the port `lo_base + n % lo_mod`
/// at `lo_off` and, when `hi_off` is set, `hi_base + n / lo_mod` (`hi_len` 2 or 4 bytes) at
/// `hi_off`.
#[derive(Clone, Copy, Debug)]
pub struct Vary {
    pub lo_off: u32,
    pub lo_base: u32,
    pub lo_mod: u32,
    pub hi_off: u32,
    pub hi_base: u32,
    pub hi_len: u32,
}

/// The benchmark harness (`bench_harness` in the eBPF object): a repeat count of
/// `BPF_PROG_TEST_RUN` that hands the program under test the same frame every time. The
/// program writes the frame back before each repetition and tail-calls the target. Loaded
/// from an unpinned copy of the object, whose other programs (baselines, bench helpers)
/// [`Harness::program`] loads.
pub struct Harness {
    obj: aya::Ebpf,
    prog: aya::programs::ProgramFd,
    frame: aya::maps::Array<aya::maps::MapData, translator_common::maps::BenchFrame>,
    next: aya::maps::ProgramArray<aya::maps::MapData>,
    seq: aya::maps::PerCpuArray<aya::maps::MapData, u32>,
    fails: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
}

impl Harness {
    /// `hash_entries`: size of the bench-only hash table `BENCH_HASH`.
    pub fn new(hash_entries: u32) -> anyhow::Result<Self> {
        Self::with_tables(hash_entries, 1, 1)
    }

    /// [`Harness::new`], and `table_slots` slots for the bench-only open-addressing table
    /// `BENCH_TABLE` (24 at least, a key's window; fewer and every lookup misses) and at least
    /// `buckets` buckets for the bucket table `BENCH_BUCKETS` (the issue 13 prototypes):
    /// [`crate::bucket_table::bucket_count`] of them.
    pub fn with_tables(hash_entries: u32, table_slots: u32, buckets: u32) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use translator_common::maps::{BENCH_FRAME, BENCH_NEXT};
        let buckets = crate::bucket_table::bucket_count(buckets)?;
        let mut obj = crate::dataplane::load_unpinned_sized(&[
            ("BENCH_HASH", hash_entries),
            ("BENCH_TABLE", table_slots),
            ("BENCH_LOCKS", table_slots / 64 + 1),
            ("BENCH_BUCKETS", buckets),
        ])?;
        {
            let mut cap: aya::maps::Array<_, u64> = aya::maps::Array::try_from(
                obj.map_mut("BENCH_TABLE_CAP")
                    .context("the eBPF object has no BENCH_TABLE_CAP map")?,
            )?;
            cap.set(0, u64::from(table_slots), 0)?;
            // Any seed: the keys are the benchmark's own.
            cap.set(1, crate::bucket_table::SEED, 0)?;
            cap.set(2, u64::from(buckets), 0)?;
        }
        let take = |obj: &mut aya::Ebpf, name: &str| {
            obj.take_map(name)
                .with_context(|| format!("the eBPF object has no {name} map"))
        };
        let frame = aya::maps::Array::try_from(take(&mut obj, BENCH_FRAME)?)?;
        let next = aya::maps::ProgramArray::try_from(take(&mut obj, BENCH_NEXT)?)?;
        let seq = aya::maps::PerCpuArray::try_from(take(&mut obj, "BENCH_SEQ")?)?;
        let fails = aya::maps::PerCpuArray::try_from(take(&mut obj, "BENCH_FAILS")?)?;
        let mut h = Self {
            prog: load_program(&mut obj, "bench_harness")?,
            obj,
            frame,
            next,
            seq,
            fails,
        };
        h.reset_seq()?;
        Ok(h)
    }

    /// Loads another XDP program of the harness's copy of the object (e.g. `baseline_forward`).
    pub fn program(&mut self, name: &str) -> anyhow::Result<aya::programs::ProgramFd> {
        load_program(&mut self.obj, name)
    }

    /// Hands the harness `frame`, its per-repetition changes and `target`.
    fn set_frame(
        &mut self,
        target: &aya::programs::ProgramFd,
        frame: &[u8],
        vary: Option<Vary>,
    ) -> anyhow::Result<()> {
        use translator_common::maps::{BENCH_FRAME_MAX, BenchFrame};
        if frame.len() > BENCH_FRAME_MAX {
            anyhow::bail!(
                "a frame of {} bytes; the harness takes up to {BENCH_FRAME_MAX}",
                frame.len()
            );
        }
        let mut f = BenchFrame {
            len: frame.len() as u32,
            ..Default::default()
        };
        f.bytes[..frame.len()].copy_from_slice(frame);
        if let Some(v) = vary {
            (f.lo_off, f.lo_base, f.lo_mod) = (v.lo_off, v.lo_base, v.lo_mod);
            (f.hi_off, f.hi_base, f.hi_len) = (v.hi_off, v.hi_base, v.hi_len);
        }
        self.frame.set(0, f, 0)?;
        self.next.set(0, target, 0)?;
        Ok(())
    }

    /// Runs `target` `repeat` times through the harness on `frame`, varied per repetition.
    pub fn run(
        &mut self,
        target: &aya::programs::ProgramFd,
        frame: &[u8],
        vary: Option<Vary>,
        ingress_ifindex: u32,
        repeat: u32,
    ) -> anyhow::Result<Outcome> {
        use std::os::fd::AsFd as _;
        self.set_frame(target, frame, vary)?;
        Ok(run(self.prog.as_fd(), frame, ingress_ifindex, repeat)?)
    }

    /// [`Harness::run`] from one thread per CPU of `cpus` at once, each pinned to its CPU: the
    /// repetition numbers are per CPU, so every CPU goes through the same keys in the same
    /// order, a race on each. `meanwhile` runs on the calling thread, again and again, until
    /// the runs are done (a controller's work during them).
    pub fn run_on_cpus(
        &mut self,
        target: &aya::programs::ProgramFd,
        frame: &[u8],
        vary: Option<Vary>,
        repeat: u32,
        cpus: &[usize],
        mut meanwhile: impl FnMut(),
    ) -> anyhow::Result<Vec<Outcome>> {
        use std::os::fd::AsFd as _;
        self.set_frame(target, frame, vary)?;
        let prog = self.prog.as_fd();
        std::thread::scope(|scope| {
            let runs: Vec<_> = cpus
                .iter()
                .map(|&cpu| {
                    scope.spawn(move || -> anyhow::Result<Outcome> {
                        pin_to_cpu(cpu)?;
                        Ok(run(prog, frame, 0, repeat)?)
                    })
                })
                .collect();
            while !runs.iter().all(|r| r.is_finished()) {
                meanwhile();
            }
            runs.into_iter()
                .map(|r| {
                    r.join()
                        .map_err(|_| anyhow::anyhow!("a test-run thread panicked"))?
                })
                .collect()
        })
    }

    /// Failed inserts and missed lookups of the bench-only table programs since the last call
    /// (all CPUs); the count starts again from 0.
    pub fn take_fails(&mut self) -> anyhow::Result<u64> {
        self.take_count(0)
    }

    /// Inserts of the bench-only table programs that found their key present, since the last
    /// call (all CPUs); the count starts again from 0.
    pub fn take_present(&mut self) -> anyhow::Result<u64> {
        self.take_count(1)
    }

    fn take_count(&mut self, i: u32) -> anyhow::Result<u64> {
        let n: u64 = self.fails.get(&i, 0)?.iter().sum();
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| anyhow::anyhow!("counting CPUs: {e}"))?;
        self.fails
            .set(i, aya::maps::PerCpuValues::try_from(vec![0u64; cpus])?, 0)?;
        Ok(n)
    }

    /// The kernel's memory accounting of one of the harness's maps (`memlock` of its fdinfo),
    /// in bytes.
    pub fn map_memlock(&self, name: &str) -> anyhow::Result<u64> {
        use anyhow::Context as _;
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let map = self
            .obj
            .map(name)
            .with_context(|| format!("the eBPF object has no {name} map"))?;
        let fd = match map {
            aya::maps::Map::Array(m) | aya::maps::Map::HashMap(m) => m.fd().as_fd().as_raw_fd(),
            _ => anyhow::bail!("{name} is neither an array nor a hash map"),
        };
        let path = format!("/proc/self/fdinfo/{fd}");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("{path} has no memlock line"))
    }

    /// The bucket table `BENCH_BUCKETS` mapped into this process.
    pub fn bucket_table(&self) -> anyhow::Result<crate::bucket_table::BucketTable> {
        use anyhow::Context as _;
        match self
            .obj
            .map("BENCH_BUCKETS")
            .context("the eBPF object has no BENCH_BUCKETS map")?
        {
            aya::maps::Map::Array(m) => {
                crate::bucket_table::BucketTable::map(m, crate::bucket_table::SEED)
            }
            _ => anyhow::bail!("BENCH_BUCKETS is not an array"),
        }
    }

    /// Starts the per-repetition numbering again from 0 (on every CPU).
    pub fn reset_seq(&mut self) -> anyhow::Result<()> {
        let n = aya::util::nr_cpus().map_err(|(_, e)| anyhow::anyhow!("counting CPUs: {e}"))?;
        self.seq
            .set(0, aya::maps::PerCpuValues::try_from(vec![0u32; n])?, 0)?;
        Ok(())
    }
}

/// Pins the calling thread to CPU `cpu`.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity get a valid
    // pointer to it and its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .map_err(|e| anyhow::anyhow!("pinning a test-run thread to CPU {cpu}: {e}"));
    }
    Ok(())
}

/// Loads the XDP program `name` of `obj` and returns a handle to it.
pub fn load_program(obj: &mut aya::Ebpf, name: &str) -> anyhow::Result<aya::programs::ProgramFd> {
    use anyhow::Context as _;
    let p: &mut aya::programs::Xdp = obj
        .program_mut(name)
        .with_context(|| format!("the eBPF object has no program {name}"))?
        .try_into()
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    p.load()
        .map_err(|e| anyhow::anyhow!("the kernel refused {name}: {e}"))?;
    Ok(p.fd()?.try_clone()?)
}

/// An Ethernet frame with the IPv4 identification and header checksum cleared, when it carries
/// IPv4: they differ from packet to packet by design (IPv6 -> IPv4 without DF), so frames are
/// compared without them.
pub fn without_ipv4_id(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() >= 34 && frame[12..14] == [0x08, 0x00] {
        for i in [18, 19, 24, 25] {
            frame[i] = 0;
        }
    }
    frame
}
