//! The NAT64 state (RFC 6146 section 3.1): the binding information base, the session table,
//! the pool's port blocks, and what fragmented datagrams need remembered.

pub mod bib;
pub mod frags;
pub mod pool;
pub mod session;
