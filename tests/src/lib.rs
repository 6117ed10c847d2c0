//! Shared helpers for the integration tests and `cargo xtask demo`: network namespaces owned by
//! RAII guards, the client/gateway/server topology (two-armed and one-armed), a guard that runs
//! the translator controller, small servers, and commands with time limits.
//!
//! Everything here cleans up on drop, also while a failing test unwinds. Namespace and instance
//! names carry the process id, so runs never collide; tests that share kernel state still run
//! one at a time (`--test-threads=1`, or a lock in the test file).
//!
//! The library must not depend on `translator-user`: xtask depends on it and has to build on a
//! fresh machine before bpf-linker exists.

pub mod checks;
pub mod clat;
pub mod cmd;
pub mod fixture;
pub mod gateway;
pub mod named;
pub mod netns;
pub mod packets;
pub mod probe;
pub mod ra;
pub mod servers;
pub mod sweep;
pub mod topology;
pub mod xdp_pass;

pub use checks::{describe_sessions, ping_all, same_bytes, stats_delta};
pub use cmd::{Output, Proc, TempDir, interrupted, request_interrupt, require_root, wait_until};
pub use gateway::{
    Gateway, GatewayConfig, Session, SessionMemory, StaticMapping, Stats, translator_bin,
    workspace_root,
};
pub use netns::NetNs;
pub use servers::{HttpServer, PacedHttp, TcpEcho, UdpEcho, iperf3_tcp, pattern, udp_recv};
pub use sweep::sweep_stale;
pub use topology::{
    ALT_POOL_V4, CLIENT_PREFIX, CLIENT_V6, GATEWAY_V4, GATEWAY_V6, PREFIX, SERVER_V4, Topology,
    TopologyBuilder, nat64, server_via_prefix,
};
pub use xdp_pass::XdpPass;
