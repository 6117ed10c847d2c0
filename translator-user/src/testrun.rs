//! `BPF_PROG_TEST_RUN` for the XDP program: runs it on a packet in the kernel without a
//! device, returns the action and the packet as the program left it. Used by the packet
//! fixture tests and the data-plane benchmark.

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
