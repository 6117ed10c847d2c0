//! Name service for the tests and the demo: a BIND (`named`) authoritative for one zone inside
//! a namespace, `dig` in a namespace, the `/etc/netns/<namespace>/` folder whose files
//! `ip netns exec` mounts over `/etc` (a namespace's own `resolv.conf`), and rdnssd writing a
//! namespace's resolv.conf from router advertisements.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::cmd::{Proc, TempDir, wait_until};

/// Where rdnssd is (Debian package rdnssd).
pub const RDNSSD: &str = "/usr/sbin/rdnssd";
use crate::netns::NetNs;

/// Where `named` is.
pub const NAMED: &str = "/usr/sbin/named";

/// BIND authoritative for one zone, listening on one IPv4 address, port 53, inside a
/// namespace. Field order matters: the process stops before its folder is removed.
#[derive(Debug)]
pub struct Named {
    proc: Proc,
    dir: TempDir,
}

impl Named {
    /// Starts BIND for `domain` with the zone file text `zone` on `listen`, and waits until it
    /// answers the A query for `probe` with `probe_answer`.
    pub fn start(
        ns: &NetNs,
        domain: &str,
        zone: &str,
        listen: Ipv4Addr,
        probe: &str,
        probe_answer: &str,
    ) -> Result<Self> {
        let dir = TempDir::new("named")?;
        let d = dir
            .path()
            .to_str()
            .context("temp path is not UTF-8")?
            .to_owned();
        std::fs::write(dir.join("zone"), zone).context("writing the zone")?;
        let conf = format!(
            r#"options {{
    directory "{d}";
    listen-on port 53 {{ {listen}; }};
    listen-on-v6 {{ none; }};
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    recursion no;
    notify no;
    querylog yes;
}};
controls {{ }};
logging {{
    channel q {{ file "{d}/query.log"; print-time yes; }};
    category queries {{ q; }};
    channel d {{ file "{d}/named.log"; severity info; }};
    category default {{ d; }};
}};
zone "{domain}" {{ type primary; file "{d}/zone"; }};
"#
        );
        let conf_path = dir.join("named.conf");
        std::fs::write(&conf_path, conf).context("writing named.conf")?;
        let conf_str = conf_path.to_str().context("temp path is not UTF-8")?;
        let proc = ns.spawn(
            &[NAMED, "-f", "-4", "-n", "1", "-c", conf_str],
            &dir.join("named.out"),
        )?;
        let mut named = Self { proc, dir };
        let server = listen.to_string();
        let up = wait_until(Duration::from_secs(20), || {
            named.proc.exited().is_none()
                && dig(ns, &server, "A", probe).is_ok_and(|a| a == [probe_answer])
        });
        if !up {
            bail!(
                "named in {} did not answer for {probe} within 20 s (exit status {:?}); output:\n{}\nlog:\n{}",
                ns.name(),
                named.proc.exited(),
                named.proc.log(),
                named.log()
            );
        }
        Ok(named)
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("named.log")).unwrap_or_default()
    }

    /// Queries it has received so far.
    pub fn query_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("query.log")).unwrap_or_default()
    }
}

/// `dig +short TYPE NAME @SERVER` in `ns`: the answer lines (errors when dig fails).
pub fn dig(ns: &NetNs, server: &str, qtype: &str, name: &str) -> Result<Vec<String>> {
    let at = format!("@{server}");
    let out = ns.run_timeout(
        &["dig", "+short", "+time=2", "+tries=2", &at, qtype, name],
        Duration::from_secs(20),
    )?;
    Ok(out
        .stdout_str()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_owned)
        .collect())
}

/// `/etc/netns/<namespace>/`: `ip netns exec` bind-mounts each file in it over the file of
/// the same name in /etc for the commands it runs (a namespace's own `resolv.conf`). Removed
/// with everything in it on drop (and /etc/netns too when this guard created it and nothing
/// else is in it).
#[derive(Debug)]
pub struct NetnsEtc {
    dir: PathBuf,
    created_parent: bool,
}

impl NetnsEtc {
    /// Creates the folder for `ns`.
    pub fn create(ns: &NetNs) -> Result<Self> {
        let parent = Path::new("/etc/netns");
        let created_parent = !parent.exists();
        let dir = parent.join(ns.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir,
            created_parent,
        })
    }

    /// A file in the folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Writes a file in the folder.
    pub fn write(&self, file: &str, text: &str) -> Result<()> {
        let p = self.path(file);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    }

    /// Reads a file of the folder ("" when missing).
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).unwrap_or_default()
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: cannot remove {}: {e}", self.dir.display());
        }
        if self.created_parent {
            // Fails harmlessly when something else lives there meanwhile.
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

/// Starts rdnssd in `ns`, writing the RDNSS and DNSSL options of the router advertisements the
/// namespace's kernel receives into `etc`'s `resolv.conf` (so `ip netns exec` commands use
/// them). Its pid file and log go to `scratch`. Start it before the router advertises: the
/// kernel hands it the options of advertisements received while it runs.
///
/// `-u root` keeps the worker's rights to write under /etc/netns (it writes a temporary file
/// and renames it); `-H /bin/true` replaces the merge hook, which on Debian would edit the
/// host's own /etc/resolv.conf.
pub fn rdnssd(ns: &NetNs, etc: &NetnsEtc, scratch: &TempDir) -> Result<Proc> {
    let resolv = etc.path("resolv.conf");
    let resolv = resolv.to_str().context("path is not UTF-8")?.to_owned();
    let pid = scratch.join("rdnssd.pid");
    let pid = pid.to_str().context("path is not UTF-8")?.to_owned();
    let proc = ns.spawn(
        &[
            RDNSSD,
            "-f",
            "-u",
            "root",
            "-r",
            &resolv,
            "-p",
            &pid,
            "-H",
            "/bin/true",
        ],
        &scratch.join("rdnssd.log"),
    )?;
    // It has no readiness signal; its netlink socket is open well within this.
    std::thread::sleep(Duration::from_millis(300));
    Ok(proc)
}
