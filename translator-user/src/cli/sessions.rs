//! `translator sessions`: the session table, streamed. Rows are printed while the table is
//! walked, the filters applied on the way (before the IPv4-side lookup), so listing a table of
//! millions of sessions needs no memory for it and shows its first row at once; `--sort` reads
//! the wanted sessions into memory first.

use std::{
    io::{self, Write as _},
    net::Ipv6Addr,
};

use anyhow::Context as _;

use crate::{
    config::Protocol,
    dataplane::{Instance, Maps},
    sessions::{self, Filter, SessionInfo},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub instance: super::InstanceArgs,
    /// Only sessions of this client address.
    #[arg(long)]
    pub client: Option<Ipv6Addr>,
    /// Only this protocol: tcp, udp or icmp.
    #[arg(long)]
    pub protocol: Option<Protocol>,
    /// Only sessions using this pool port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Sort by client, protocol, port and remote (reads the wanted sessions into memory
    /// first; without it rows come in table order as the table is read).
    #[arg(long)]
    pub sort: bool,
    /// Print JSON: an array with one session object per line.
    #[arg(short, long)]
    pub json: bool,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let inst = Instance::new(&a.instance.instance);
    let cfg = inst.read_state()?.config()?;
    let maps = Maps::open(&inst.pins)?;
    let filter = Filter {
        client: a.client,
        protocol: a.protocol,
        pool_port: a.port,
    };
    let rows: Box<dyn Iterator<Item = SessionInfo>> = if a.sort {
        let mut all: Vec<_> = sessions::stream(&maps, &cfg, filter).collect();
        sessions::sort(&mut all);
        Box::new(all.into_iter())
    } else {
        Box::new(sessions::stream(&maps, &cfg, filter))
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    match print(&mut out, rows, a.json).and_then(|()| out.flush()) {
        // A reader that stopped early (`| head`) ends the listing, not with an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the session list to standard output"),
    }
}

/// Writes the rows as a table with a count, or as a JSON array, one row at a time.
fn print(
    out: &mut impl io::Write,
    rows: impl Iterator<Item = SessionInfo>,
    json: bool,
) -> io::Result<()> {
    let mut n = 0usize;
    if json {
        out.write_all(b"[")?;
        for s in rows {
            out.write_all(if n == 0 { b"\n" } else { b",\n" })?;
            serde_json::to_writer(&mut *out, &s)?;
            n += 1;
        }
        return out.write_all(b"\n]\n");
    }
    writeln!(
        out,
        "{:<5} {:<40} {:<22} {:<22} {:<12} {:>6} {:>8}",
        "proto", "client", "pool", "remote", "state", "idle", "expires"
    )?;
    for s in rows {
        writeln!(
            out,
            "{:<5} {:<40} {:<22} {:<22} {:<12} {:>5}s {:>7}s",
            s.protocol.name(),
            format!("[{}]:{}", s.client, s.client_port),
            format!("{}:{}", s.pool, s.pool_port),
            format!("{}:{}", s.remote, s.remote_port),
            s.state.name(),
            s.idle_secs,
            s.expires_in_secs
        )?;
        n += 1;
    }
    writeln!(out, "{n} session(s)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SessionState;

    fn session(port: u16) -> SessionInfo {
        SessionInfo {
            protocol: Protocol::Udp,
            client: "2001:db8:1::2".parse().expect("address"),
            client_port: port,
            remote: "192.0.2.9".parse().expect("address"),
            remote_port: 53,
            pool: "198.51.100.1".parse().expect("address"),
            pool_port: port + 1000,
            state: SessionState::Udp,
            idle_secs: 1,
            expires_in_secs: 299,
            hairpin: false,
        }
    }

    fn printed(rows: Vec<SessionInfo>, json: bool) -> String {
        let mut out = Vec::new();
        print(&mut out, rows.into_iter(), json).expect("writing to a Vec");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn json_is_one_array_whatever_the_count() {
        for n in 0..3u16 {
            let rows: Vec<_> = (0..n).map(|i| session(4000 + i)).collect();
            let text = printed(rows.clone(), true);
            let back: Vec<serde_json::Value> = serde_json::from_str(&text).expect(&text);
            assert_eq!(back.len(), usize::from(n), "{text}");
            for (v, s) in back.iter().zip(&rows) {
                assert_eq!(v, &serde_json::to_value(s).expect("value"), "{text}");
            }
            assert_eq!(text.lines().count(), usize::from(n) + 2, "{text}");
        }
    }

    #[test]
    fn table_ends_with_the_count() {
        let text = printed(vec![session(4000), session(4001)], false);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("proto "), "{text}");
        assert!(
            lines[1].starts_with("udp   [2001:db8:1::2]:4000")
                && lines[1].contains("198.51.100.1:5000")
                && lines[1].contains("192.0.2.9:53"),
            "{text}"
        );
        assert_eq!(lines[3], "2 session(s)");
    }

    /// A reader that went away mid-listing.
    struct Closed(usize);

    impl io::Write for Closed {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.0 -= 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_stops_the_walk() {
        let mut pulled = 0;
        let rows = (0..1000u16).map(|i| {
            pulled += 1;
            session(i)
        });
        let e = print(&mut Closed(3), rows, false).expect_err("broken pipe");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert!(pulled < 10, "{pulled} rows read after the reader went away");
    }
}
