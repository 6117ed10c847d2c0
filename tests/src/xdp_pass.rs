//! A two-instruction `XDP_PASS` program attached through a BPF link, with no object file and no
//! loader library: the bpf(2) syscall directly.
//!
//! Why: a veth only schedules its peer's NAPI after `XDP_TX` when the peer has an XDP program of
//! its own (GRO alone is not enough for `XDP_TX`, unlike for `XDP_REDIRECT`). In the one-armed
//! topology the gateway answers with `XDP_TX`, so the bridge port facing it gets this program.

use std::ffi::CString;
use std::os::fd::{FromRawFd as _, OwnedFd};

use anyhow::{Context as _, Result, bail};

use crate::netns::NetNs;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type` (the kernel zero-fills the
/// rest of the union).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_LINK_CREATE, the common head.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<OwnedFd> {
    let size = std::mem::size_of::<T>();
    // SAFETY: `attr` is a valid, initialized, repr(C) bpf_attr prefix of `size` bytes; the kernel
    // only reads it (and writes nothing back for these commands).
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(rc).map_err(|_| std::io::Error::other("fd out of range"))?;
    // SAFETY: bpf(2) returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An attached `XDP_PASS` program; detached when dropped (the link is not pinned).
#[derive(Debug)]
pub struct XdpPass {
    _link: OwnedFd,
    _prog: OwnedFd,
}

impl XdpPass {
    /// Attaches `XDP_PASS` in native mode to `dev` inside `ns`.
    pub fn attach(ns: &NetNs, dev: &str) -> Result<Self> {
        let dev_c = CString::new(dev).context("interface name contains NUL")?;
        let what = format!("attaching an XDP_PASS program to {dev} in {}", ns.name());
        ns.in_ns(move || -> Result<Self> {
            // SAFETY: if_nametoindex reads a NUL-terminated string; it resolves in this thread's
            // network namespace.
            let ifindex = unsafe { libc::if_nametoindex(dev_c.as_ptr()) };
            if ifindex == 0 {
                bail!(
                    "no interface {dev_c:?}: {}",
                    std::io::Error::last_os_error()
                );
            }
            // r0 = XDP_PASS (2); exit
            let insns: [u64; 2] = [
                u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]),
                u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
            ];
            let license = b"GPL\0";
            let mut name = [0u8; 16];
            name[..9].copy_from_slice(b"xdp_pass\0");
            let mut load = ProgLoadAttr {
                prog_type: BPF_PROG_TYPE_XDP,
                insn_cnt: 2,
                insns: insns.as_ptr() as u64,
                license: license.as_ptr() as u64,
                prog_name: name,
                ..Default::default()
            };
            let prog = bpf(BPF_PROG_LOAD, &mut load).context("BPF_PROG_LOAD")?;
            let mut link = LinkCreateAttr {
                prog_fd: u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&prog))
                    .context("negative fd")?,
                target_ifindex: ifindex,
                attach_type: BPF_XDP,
                flags: 0,
            };
            let link = bpf(BPF_LINK_CREATE, &mut link).context("BPF_LINK_CREATE")?;
            Ok(Self {
                _link: link,
                _prog: prog,
            })
        })?
        .context(what)
    }
}
