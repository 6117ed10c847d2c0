//! Entering a network namespace and making sure bpffs is mounted.

use std::{ffi::CString, fs::File, os::fd::AsRawFd as _, path::Path};

use anyhow::{Context as _, bail};

/// Moves this (still single-threaded) process into the named network namespace
/// (`/run/netns/NAME`, as made by `ip netns add`). The mount namespace is kept, so bpffs pins
/// stay shared with the host (`ip netns exec` would remount /sys and hide them).
pub fn enter(name: &str) -> anyhow::Result<()> {
    let path = Path::new("/run/netns").join(name);
    let f = File::open(&path).with_context(|| {
        format!(
            "--netns {name}: cannot open {} (does `ip netns list` show it?)",
            path.display()
        )
    })?;
    // SAFETY: plain syscall on an fd we own.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "--netns {name}: setns failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Mounts bpffs on /sys/fs/bpf unless it already is one.
pub fn ensure_bpffs() -> anyhow::Result<()> {
    let target = Path::new("/sys/fs/bpf");
    if is_bpffs(target) {
        return Ok(());
    }
    std::fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
    let src = CString::new("bpf")?;
    let dst = CString::new("/sys/fs/bpf")?;
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!(
            "/sys/fs/bpf is not a bpf filesystem and mounting one failed: {} (try `mount -t bpf bpf /sys/fs/bpf`)",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn is_bpffs(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and struct pointer.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Index of a network interface in the current namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// IPv6 addresses of one interface (current namespace).
pub fn interface_ipv6(name: &str) -> Vec<std::net::Ipv6Addr> {
    let mut out = Vec::new();
    walk_addresses(|ifname, sa| {
        // SAFETY: the family was checked by walk_addresses' caller contract below.
        if ifname == name && unsafe { (*sa).sa_family } as i32 == libc::AF_INET6 {
            // SAFETY: AF_INET6 means sockaddr_in6.
            let sin6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
            out.push(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr));
        }
    });
    out
}

/// Calls `f` with the interface name and address of every configured address.
pub(crate) fn walk_addresses(mut f: impl FnMut(&str, *const libc::sockaddr)) {
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return;
    }
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: walking the list getifaddrs returned.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() && !ifa.ifa_name.is_null() {
            // SAFETY: a NUL-terminated name from getifaddrs.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            f(&name.to_string_lossy(), ifa.ifa_addr);
        }
        p = ifa.ifa_next;
    }
    // SAFETY: freeing what getifaddrs allocated.
    unsafe { libc::freeifaddrs(ifap) };
}

/// IPv4 addresses configured on this host (current namespace).
pub fn local_ipv4_addresses() -> Vec<std::net::Ipv4Addr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return out;
    }
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: walking the list getifaddrs returned.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: non-null sockaddr; family checked before the cast.
            let fam = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if fam == libc::AF_INET {
                // SAFETY: AF_INET means sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: freeing what getifaddrs allocated.
    unsafe { libc::freeifaddrs(ifap) };
    out
}

/// Reads a sysctl under /proc/sys (current namespace).
pub fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/proc/sys").join(path))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Writes a sysctl under /proc/sys.
pub fn set_sysctl(path: &str, value: &str) -> anyhow::Result<()> {
    std::fs::write(Path::new("/proc/sys").join(path), value)
        .with_context(|| format!("setting sysctl {} = {value}", path.replace('/', ".")))
}
