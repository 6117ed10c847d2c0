//! The NAT64 state (RFC 6146 section 3.1): the binding information base, the session table,
//! the pool's port blocks, what fragmented datagrams need remembered, and the inbound SYNs held
//! for an answer.

pub mod bib;
pub mod frags;
pub mod held;
pub mod pool;
pub mod session;
