//! The programs the kernel runs: each adapts its context and maps the verdict to its own
//! return code; everything else is the shared core. Nothing imports from here.

pub mod bench;
pub mod clat;
pub mod tc;
pub mod xdp;
