//! The packet context behind one small trait, so that the translator is one core for every
//! attach point: XDP (a frame, before any skb exists: NICs, TAP) and TC (an skb as the stack
//! has it, GSO included: veth, containers, and the CLAT's programs on hosts).
//!
//! Everything the core does to a packet goes through [`Packet`]: reading header bytes
//! ([`crate::wire::ptr_at`] over `data`/`data_end`), writing them ([`Packet::write`]), moving the
//! boundary between the Ethernet header and the rest when IP headers change size
//! ([`Packet::resize`]), updating the transport checksum for changed fields
//! ([`Packet::l4_csum`]), and handing the packet on ([`Packet::redirect`], [`Packet::tx`],
//! [`Packet::punt`]). The XDP side is direct memory access and `bpf_xdp_adjust_head`; the TC side
//! is `bpf_skb_change_proto` / `bpf_skb_adjust_room` (the kernel keeps the GSO type and the
//! checksum offsets right), `bpf_skb_store_bytes` with checksum recomputation and
//! `bpf_l4_csum_replace` (right for every `ip_summed` state, `CHECKSUM_PARTIAL` included).

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_F_INGRESS, BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_F_RECOMPUTE_CSUM,
        bpf_adj_room_mode::{BPF_ADJ_ROOM_MAC, BPF_ADJ_ROOM_NET},
        bpf_fib_lookup, bpf_redir_neigh,
    },
    helpers::generated::{
        bpf_fib_lookup as fib_lookup_helper, bpf_l4_csum_replace, bpf_redirect, bpf_redirect_neigh,
        bpf_skb_adjust_room, bpf_skb_change_proto, bpf_skb_change_tail, bpf_skb_load_bytes,
        bpf_skb_pull_data, bpf_skb_store_bytes, bpf_xdp_adjust_head, bpf_xdp_adjust_tail,
        bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    programs::{TcContext, XdpContext},
};
use translator_common::{checksum, config::CFG_TX_BY_REDIRECT, counters::DropReason};

use crate::config::config;

/// What becomes of a packet. The entry points turn it into their own return codes; the helper
/// calls a verdict needs (`bpf_redirect`, ...) were already made by [`Packet`].
///
/// As wide as `DropReason`: in a `Result` of the two, a narrower payload would leave bytes
/// undefined, and the compiler fills an undefined register with whatever it held (a pointer,
/// say), which the verifier refuses to shift into the result.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Up the kernel stack: untouched, or translated for the kernel to finish (a local
    /// destination, or on XDP an unresolved neighbour).
    Pass,
    Drop,
    /// Back out of the interface it came in on.
    Tx,
    /// Out of another interface (or, on TC, the same one).
    Redirect,
    /// To the user-space slow path (ethertype rewritten).
    SlowPath,
}

impl Verdict {
    /// The action code `translator trace` reports (XDP numbering for every attach point:
    /// 1 drop, 2 pass, 3 back out, 4 redirect).
    pub fn trace_code(self) -> u8 {
        match self {
            Verdict::Drop => 1,
            Verdict::Pass | Verdict::SlowPath => 2,
            Verdict::Tx => 3,
            Verdict::Redirect => 4,
        }
    }
}

/// How IP headers change size in [`Packet::resize`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Same IP version afterwards.
    Same,
    /// IPv6 becomes IPv4.
    To4,
    /// IPv4 becomes IPv6.
    To6,
}

const ETH_P_IP_BE: u16 = 0x0800_u16.to_be();
const ETH_P_IPV6_BE: u16 = 0x86dd_u16.to_be();
/// IPv6 header minus IPv4 header.
const V6_V4: i32 = 20;
/// Header bytes a TC program reads directly; longer headers are pulled into the linear part
/// first (an ICMP error quoting an IPv6 TCP header is 14 + 40 + 8 + 40 + 18 bytes).
const HEADERS: u32 = 128;

/// A packet as the translator sees it.
pub trait Packet: EbpfContext {
    /// TC programs can resolve a neighbour themselves (`bpf_redirect_neigh`); XDP programs leave
    /// that to the kernel.
    const SKB: bool;

    /// Called first in every subprogram that takes the context. Without it the compiler may
    /// load the packet pointers in the caller and pass them as arguments; the verifier then no
    /// longer sees context reads in the subprogram and refuses the arithmetic that widens them.
    /// A volatile read, which the compiler does not move, keeps the later reads where they are.
    fn enter(&self);

    /// Makes the headers readable directly (TC: pulls them into the skb's linear part).
    fn prepare(&self) -> Result<(), DropReason> {
        Ok(())
    }
    /// Start and end of the packet bytes that can be read directly.
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// The interface the packet is on (route lookups start there; "back out" means it).
    fn ifindex(&self) -> u32;
    /// Bytes of the whole packet, Ethernet header included (on TC all GSO segments).
    fn len(&self) -> usize;
    /// Whether the packet is at least `len` bytes long (for XDP a comparison of packet
    /// pointers, which the verifier follows; arithmetic on them it refuses).
    fn holds(&self, len: usize) -> bool;
    /// Segments of a GSO packet (1 for anything else).
    fn segments(&self) -> u32 {
        1
    }
    /// The segment size of a GSO super-packet (TC only), 0 for anything else: such a packet
    /// is checked against the MTU one segment at a time.
    fn gso_size(&self) -> u32 {
        0
    }

    /// Moves the start of the IP header by `delta` bytes (> 0: room for larger headers), keeping
    /// the transport header and payload where they are and the 14-byte Ethernet header in front
    /// (whose bytes the caller rewrites). Every header byte in front of the transport header is
    /// rewritten by the caller afterwards.
    fn resize(&self, delta: i32, family: Family) -> Result<(), DropReason>;
    /// Cuts or grows (with zeroes) the packet at its end to `len` bytes.
    fn set_len(&self, len: usize) -> Result<(), DropReason>;
    /// Copies `len` packet bytes at `off` to `to` (also beyond the directly readable part).
    fn load(&self, off: usize, to: *mut c_void, len: u32) -> Result<(), DropReason>;
    /// Copies `len` bytes from `from` into the packet at `off`.
    fn store(&self, off: usize, from: *const c_void, len: u32) -> Result<(), DropReason>;
    /// Writes a header (or any plain value) into the packet at `off`.
    fn write<T: Copy>(&self, off: usize, v: &T) -> Result<(), DropReason>;
    /// Updates the packet's own transport checksum at `field` for changed fields: words summing
    /// to `pseudo.0` in the pseudo-header were replaced by words summing to `pseudo.1`, and in
    /// the transport header `data.0` by `data.1` (raw 16-bit word sums, unfolded). `udp`: a
    /// result of zero is sent as 0xffff.
    fn l4_csum(
        &self,
        field: usize,
        pseudo: (u32, u32),
        data: (u32, u32),
        udp: bool,
    ) -> Result<(), DropReason>;

    /// `bpf_fib_lookup` on this context.
    fn fib_lookup(&self, fib: &mut bpf_fib_lookup) -> i64 {
        // SAFETY: `fib` is a valid, fully initialised struct of the size passed; the context
        // pointer is the program's own.
        unsafe {
            fib_lookup_helper(
                self.as_ptr(),
                fib as *mut bpf_fib_lookup,
                size_of::<bpf_fib_lookup>() as i32,
                0,
            )
        }
    }
    /// Sends the packet out of `ifindex` with the MAC addresses already written.
    fn redirect(&self, ifindex: u32) -> Result<Verdict, DropReason>;
    /// Sends the packet out of `ifindex` to the next hop in `fib` (as a route lookup that found
    /// no neighbour entry left it), the neighbour subsystem filling in the MAC addresses. Only
    /// called when [`Packet::SKB`].
    fn redirect_neigh(&self, ifindex: u32, fib: &bpf_fib_lookup) -> Result<Verdict, DropReason>;
    /// Sends the packet out of `ifindex` the way the kernel routes it from this host: the route
    /// lookup and the neighbour's MAC address are the kernel's (TC only; the CLAT's output).
    fn redirect_route(&self, ifindex: u32) -> Result<Verdict, DropReason>;
    /// Hands the packet to `ifindex` as if that interface had received it (TC only; the CLAT
    /// delivers to the host's IPv4 stack this way).
    fn redirect_ingress(&self, ifindex: u32) -> Result<Verdict, DropReason>;
    /// Sends the packet back out of the interface it came in on (XDP: `XDP_TX`, or with
    /// `CFG_TX_BY_REDIRECT` a redirect to that interface, which a veth delivers at once).
    fn tx(&self) -> Result<Verdict, DropReason>;
    /// Hands the packet (its ethertype already the slow-path one) to the kernel, where the
    /// controller's packet socket receives it.
    fn punt(&self) -> Result<Verdict, DropReason>;
}

/// A ones-complement difference of two word sums, as `bpf_l4_csum_replace` takes it.
#[inline(always)]
fn csum_diff(removed: u32, added: u32) -> u64 {
    (checksum::fold(added) as u32 + (!checksum::fold(removed)) as u32) as u64
}

impl Packet for XdpContext {
    const SKB: bool = false;

    #[inline(always)]
    fn enter(&self) {
        // SAFETY: a readable field of the program's own context.
        unsafe { core::ptr::read_volatile(&raw const (*self.ctx).data) };
    }

    #[inline(always)]
    fn data(&self) -> usize {
        // SAFETY: a readable field of the program's own context.
        unsafe { (*self.ctx).data as usize }
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        // SAFETY: a readable field of the program's own context.
        unsafe { (*self.ctx).data_end as usize }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.ingress_ifindex() as u32
    }

    #[inline(always)]
    fn len(&self) -> usize {
        Packet::data_end(self) - Packet::data(self)
    }

    #[inline(always)]
    fn holds(&self, len: usize) -> bool {
        Packet::data(self) + len <= Packet::data_end(self)
    }

    #[inline(always)]
    fn resize(&self, delta: i32, _family: Family) -> Result<(), DropReason> {
        // SAFETY: the context pointer is the program's own.
        if unsafe { bpf_xdp_adjust_head(self.ctx, -delta) } != 0 {
            return Err(DropReason::HelperFailed);
        }
        Ok(())
    }

    #[inline(always)]
    fn set_len(&self, len: usize) -> Result<(), DropReason> {
        let have = Packet::len(self);
        if have != len {
            // SAFETY: the context pointer is the program's own.
            if unsafe { bpf_xdp_adjust_tail(self.ctx, len as i32 - have as i32) } != 0 {
                return Err(DropReason::HelperFailed);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn load(&self, off: usize, to: *mut c_void, len: u32) -> Result<(), DropReason> {
        // SAFETY: the helper checks offset and length against the frame; the callers pass
        // buffers of at least `len` bytes.
        match unsafe { bpf_xdp_load_bytes(self.ctx, off as u32, to, len) } {
            0 => Ok(()),
            _ => Err(DropReason::Truncated),
        }
    }

    #[inline(always)]
    fn store(&self, off: usize, from: *const c_void, len: u32) -> Result<(), DropReason> {
        // SAFETY: as for `load`; the helper only reads `from`.
        match unsafe { bpf_xdp_store_bytes(self.ctx, off as u32, from as *mut c_void, len) } {
            0 => Ok(()),
            _ => Err(DropReason::Truncated),
        }
    }

    #[inline(always)]
    fn write<T: Copy>(&self, off: usize, v: &T) -> Result<(), DropReason> {
        let p: *mut T = ptr_at(self, off)?;
        // SAFETY: bounds checked by ptr_at. Natural-width stores, as C XDP programs make: the
        // verifier allows them at any offset in packet data (not strict alignment), and
        // byte-by-byte stores would cost four times the instructions.
        unsafe { p.write(*v) };
        Ok(())
    }

    #[inline(always)]
    fn l4_csum(
        &self,
        field: usize,
        pseudo: (u32, u32),
        data: (u32, u32),
        udp: bool,
    ) -> Result<(), DropReason> {
        let p: *mut u16 = ptr_at(self, field)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let c = checksum::update(*p, pseudo.0 + data.0, pseudo.1 + data.1);
            *p = if udp && c == 0 { 0xffff } else { c };
        }
        Ok(())
    }

    #[inline(always)]
    fn redirect(&self, ifindex: u32) -> Result<Verdict, DropReason> {
        if ifindex == Packet::ifindex(self) && config().flags & CFG_TX_BY_REDIRECT == 0 {
            return Ok(Verdict::Tx);
        }
        // SAFETY: plain helper call; returns XDP_REDIRECT, or XDP_ABORTED on bad flags.
        match unsafe { bpf_redirect(ifindex, 0) } as u32 {
            aya_ebpf::bindings::xdp_action::XDP_REDIRECT => Ok(Verdict::Redirect),
            _ => Err(DropReason::HelperFailed),
        }
    }

    #[inline(always)]
    fn redirect_neigh(&self, _ifindex: u32, _fib: &bpf_fib_lookup) -> Result<Verdict, DropReason> {
        // Not used on XDP (`SKB` is false): the kernel resolves the neighbour.
        Ok(Verdict::Pass)
    }

    #[inline(always)]
    fn redirect_route(&self, _ifindex: u32) -> Result<Verdict, DropReason> {
        // No XDP program of the data plane sends this way.
        Err(DropReason::HelperFailed)
    }

    #[inline(always)]
    fn redirect_ingress(&self, _ifindex: u32) -> Result<Verdict, DropReason> {
        Err(DropReason::HelperFailed)
    }

    #[inline(always)]
    fn tx(&self) -> Result<Verdict, DropReason> {
        if config().flags & CFG_TX_BY_REDIRECT != 0 {
            return Packet::redirect(self, Packet::ifindex(self));
        }
        Ok(Verdict::Tx)
    }

    #[inline(always)]
    fn punt(&self) -> Result<Verdict, DropReason> {
        Ok(Verdict::SlowPath)
    }
}

/// A TC redirect helper's result: `TC_ACT_REDIRECT`, or `TC_ACT_SHOT` on bad arguments.
#[inline(always)]
fn tc_redirected(rc: i64, v: Verdict) -> Result<Verdict, DropReason> {
    if rc == aya_ebpf::bindings::TC_ACT_REDIRECT as i64 {
        Ok(v)
    } else {
        Err(DropReason::HelperFailed)
    }
}

impl Packet for TcContext {
    const SKB: bool = true;

    #[inline(always)]
    fn enter(&self) {
        // SAFETY: a readable field of the program's own context.
        unsafe { core::ptr::read_volatile(&raw const (*self.skb.skb).data) };
    }

    #[inline(always)]
    fn prepare(&self) -> Result<(), DropReason> {
        let linear = (Packet::data_end(self) - Packet::data(self)) as u32;
        let len = TcContext::len(self);
        let want = if len < HEADERS { len } else { HEADERS };
        if linear < want {
            // SAFETY: the context pointer is the program's own; `want` is at most the length.
            if unsafe { bpf_skb_pull_data(self.skb.skb, want) } != 0 {
                return Err(DropReason::HelperFailed);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn data(&self) -> usize {
        // SAFETY: a readable field of the program's own context.
        unsafe { (*self.skb.skb).data as usize }
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        // SAFETY: a readable field of the program's own context.
        unsafe { (*self.skb.skb).data_end as usize }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: a readable field of the program's own context.
        unsafe { (*self.skb.skb).ifindex }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        TcContext::len(self) as usize
    }

    #[inline(always)]
    fn holds(&self, len: usize) -> bool {
        len <= TcContext::len(self) as usize
    }

    #[inline(always)]
    fn segments(&self) -> u32 {
        // SAFETY: a readable field of the program's own context.
        let n = unsafe { (*self.skb.skb).gso_segs };
        if n == 0 { 1 } else { n }
    }

    #[inline(always)]
    fn gso_size(&self) -> u32 {
        // SAFETY: a readable field of the program's own context.
        unsafe { (*self.skb.skb).gso_size }
    }

    #[inline(always)]
    fn resize(&self, delta: i32, family: Family) -> Result<(), DropReason> {
        let skb = self.skb.skb;
        // bpf_skb_change_proto moves the IP header by 20 bytes and converts the GSO type; the
        // rest (fragment headers, the headers of a quoted packet) is room added or removed
        // right after the new base IP header. Without a version change the room goes between
        // the Ethernet and the IP header.
        // SAFETY: helper calls on the program's own context.
        let rc = unsafe {
            match family {
                Family::To4 => {
                    let rc = bpf_skb_change_proto(skb, ETH_P_IP_BE, 0);
                    if rc == 0 && delta + V6_V4 != 0 {
                        bpf_skb_adjust_room(skb, delta + V6_V4, BPF_ADJ_ROOM_NET, 0)
                    } else {
                        rc
                    }
                }
                Family::To6 => {
                    let rc = bpf_skb_change_proto(skb, ETH_P_IPV6_BE, 0);
                    if rc == 0 && delta - V6_V4 != 0 {
                        bpf_skb_adjust_room(skb, delta - V6_V4, BPF_ADJ_ROOM_NET, 0)
                    } else {
                        rc
                    }
                }
                Family::Same if delta != 0 => bpf_skb_adjust_room(skb, delta, BPF_ADJ_ROOM_MAC, 0),
                Family::Same => 0,
            }
        };
        if rc != 0 {
            return Err(DropReason::HelperFailed);
        }
        Ok(())
    }

    #[inline(always)]
    fn set_len(&self, len: usize) -> Result<(), DropReason> {
        if len != Packet::len(self) {
            // SAFETY: helper call on the program's own context.
            if unsafe { bpf_skb_change_tail(self.skb.skb, len as u32, 0) } != 0 {
                return Err(DropReason::HelperFailed);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn load(&self, off: usize, to: *mut c_void, len: u32) -> Result<(), DropReason> {
        // SAFETY: the helper checks offset and length against the skb; the callers pass
        // buffers of at least `len` bytes.
        match unsafe { bpf_skb_load_bytes(self.skb.skb as *const c_void, off as u32, to, len) } {
            0 => Ok(()),
            _ => Err(DropReason::Truncated),
        }
    }

    #[inline(always)]
    fn store(&self, off: usize, from: *const c_void, len: u32) -> Result<(), DropReason> {
        // SAFETY: as for `load`. BPF_F_RECOMPUTE_CSUM keeps a CHECKSUM_COMPLETE value right.
        let rc = unsafe {
            bpf_skb_store_bytes(
                self.skb.skb,
                off as u32,
                from,
                len,
                BPF_F_RECOMPUTE_CSUM as u64,
            )
        };
        match rc {
            0 => Ok(()),
            _ => Err(DropReason::Truncated),
        }
    }

    #[inline(always)]
    fn write<T: Copy>(&self, off: usize, v: &T) -> Result<(), DropReason> {
        Packet::store(self, off, (v as *const T).cast(), size_of::<T>() as u32)
    }

    #[inline(always)]
    fn l4_csum(
        &self,
        field: usize,
        pseudo: (u32, u32),
        data: (u32, u32),
        udp: bool,
    ) -> Result<(), DropReason> {
        let mangled = if udp { BPF_F_MARK_MANGLED_0 as u64 } else { 0 };
        // Two calls: the kernel applies pseudo-header changes (BPF_F_PSEUDO_HDR) to a
        // CHECKSUM_PARTIAL field too, in-packet changes only to a complete one.
        // SAFETY: helper calls on the program's own context; size 0 means "a difference".
        unsafe {
            if checksum::fold(pseudo.0) != checksum::fold(pseudo.1)
                && bpf_l4_csum_replace(
                    self.skb.skb,
                    field as u32,
                    0,
                    csum_diff(pseudo.0, pseudo.1),
                    BPF_F_PSEUDO_HDR as u64 | mangled,
                ) != 0
            {
                return Err(DropReason::HelperFailed);
            }
            if checksum::fold(data.0) != checksum::fold(data.1)
                && bpf_l4_csum_replace(
                    self.skb.skb,
                    field as u32,
                    0,
                    csum_diff(data.0, data.1),
                    mangled,
                ) != 0
            {
                return Err(DropReason::HelperFailed);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn redirect(&self, ifindex: u32) -> Result<Verdict, DropReason> {
        // SAFETY: plain helper call; returns TC_ACT_REDIRECT, or TC_ACT_SHOT on bad flags.
        tc_redirected(unsafe { bpf_redirect(ifindex, 0) }, Verdict::Redirect)
    }

    #[inline(always)]
    fn redirect_neigh(&self, ifindex: u32, fib: &bpf_fib_lookup) -> Result<Verdict, DropReason> {
        // SAFETY: all-zero is a valid value of this plain struct; the union member written
        // is the one `nh_family` names. The lookup left the next hop in the destination.
        let mut nh: bpf_redir_neigh = unsafe { core::mem::zeroed() };
        nh.nh_family = fib.family as u32;
        // SAFETY: as above; both union members are plain arrays of the family's size.
        unsafe {
            if fib.family == crate::wire::AF_INET {
                nh.__bindgen_anon_1.ipv4_nh = fib.__bindgen_anon_4.ipv4_dst;
            } else {
                nh.__bindgen_anon_1.ipv6_nh = fib.__bindgen_anon_4.ipv6_dst;
            }
        }
        // SAFETY: helper call with a stack struct of the size passed.
        let rc =
            unsafe { bpf_redirect_neigh(ifindex, &mut nh, size_of::<bpf_redir_neigh>() as i32, 0) };
        tc_redirected(rc, Verdict::Redirect)
    }

    #[inline(always)]
    fn redirect_route(&self, ifindex: u32) -> Result<Verdict, DropReason> {
        // SAFETY: helper call without parameters: the kernel looks the route up from the
        // packet's header.
        let rc = unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) };
        tc_redirected(rc, Verdict::Redirect)
    }

    #[inline(always)]
    fn redirect_ingress(&self, ifindex: u32) -> Result<Verdict, DropReason> {
        // SAFETY: plain helper call.
        tc_redirected(
            unsafe { bpf_redirect(ifindex, BPF_F_INGRESS as u64) },
            Verdict::Redirect,
        )
    }

    #[inline(always)]
    fn tx(&self) -> Result<Verdict, DropReason> {
        match Packet::redirect(self, Packet::ifindex(self))? {
            Verdict::Redirect => Ok(Verdict::Tx),
            v => Ok(v),
        }
    }

    #[inline(always)]
    fn punt(&self) -> Result<Verdict, DropReason> {
        // The skb's protocol stays IPv4/IPv6 whatever its bytes say; received again on the
        // same interface, the kernel reads the ethertype afresh and the slow-path packet
        // socket gets it.
        // SAFETY: plain helper call.
        tc_redirected(
            unsafe { bpf_redirect(Packet::ifindex(self), BPF_F_INGRESS as u64) },
            Verdict::SlowPath,
        )
    }
}

/// A pointer to a `T` at byte `off` of the packet, or `Truncated` when the packet is shorter.
#[inline(always)]
pub fn ptr_at<T>(ctx: &impl Packet, off: usize) -> Result<*mut T, DropReason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return Err(DropReason::Truncated);
    }
    Ok((start + off) as *mut T)
}
