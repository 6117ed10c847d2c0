//! The steps of RFC 6146 section 3, one module each, in the order a packet takes them.

pub mod filtering;
pub mod hairpin;
pub mod incoming;
pub mod outgoing;
pub mod reply;
pub mod send;
