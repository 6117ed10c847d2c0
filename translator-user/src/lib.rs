//! The translator controller as a library: configuration, data-plane loading and maps, session
//! expiry, the DNS64 server, router advertisements and the CLI commands. `main.rs` only parses arguments.

pub mod blocklog;
pub mod bucket_table;
pub mod clat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dataplane;
pub mod dns64;
pub mod metrics;
pub mod modes;
pub mod netns;
pub mod ra;
pub mod sessions;
pub mod slowpath;
pub mod state;
pub mod testrun;
