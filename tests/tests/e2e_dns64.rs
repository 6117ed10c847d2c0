//! End to end through DNS64 and NAT64 together (issue 3): the IPv6-only client knows nothing but
//! a name and the gateway's address as its resolver. The IPv4-only server runs a real BIND
//! (`named`) that is authoritative for `example.test`, where `web.example.test` has only an A
//! record (192.0.2.2, the server itself), and an HTTP server. The gateway runs `translator run`
//! with a `[dns64]` table whose upstream is that BIND. The client resolves the name through the
//! gateway (its `/etc/resolv.conf` says `nameserver 2001:db8:1::1`), gets the synthesized AAAA
//! 2001:db8:64::c000:202, and `curl` fetches the page over the NAT64 path.
//!
//! Everything the test starts is stopped by guards, also when it fails: `named` and the HTTP
//! server (process guards, dropped before their namespace), the controller (the harness's
//! [`Gateway`]), the client's resolv.conf under /etc/netns, and the namespaces. Needs root.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use translator_tests::{
    CLIENT_V6, GATEWAY_V4, GATEWAY_V6, Gateway, HttpServer, NetNs, Proc, SERVER_V4, TempDir,
    Topology, nat64, wait_until,
};

static SERIAL: Mutex<()> = Mutex::new(());

const NAMED: &str = "/usr/sbin/named";
/// The name that has only an A record.
const WEB: &str = "web.example.test";

/// Takes the one-test-at-a-time lock and checks the prerequisites.
fn prepare() -> Result<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    translator_tests::require_root()?;
    translator_tests::translator_bin()?;
    for tool in [NAMED, "/usr/bin/dig", "/usr/bin/curl"] {
        ensure!(
            Path::new(tool).is_file(),
            "{tool} is missing (Debian packages bind9, bind9-dnsutils, curl; `cargo xtask setup`)"
        );
    }
    Ok(guard)
}

/// The zone: `web` has an A record only (no AAAA), so any AAAA the client gets is synthesized.
fn zone() -> String {
    format!(
        "$TTL 300
@       300 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
@           IN NS  ns
ns          IN A   {SERVER_V4}
web         IN A   {SERVER_V4}
"
    )
}

/// BIND authoritative for `example.test`, listening on the server's address, port 53, inside the
/// server namespace. Field order matters: the process stops before its folder is removed.
struct Named {
    proc: Proc,
    dir: TempDir,
}

impl Named {
    fn start(ns: &NetNs) -> Result<Self> {
        let dir = TempDir::new("named")?;
        let d = dir
            .path()
            .to_str()
            .context("temp path is not UTF-8")?
            .to_owned();
        std::fs::write(dir.join("example.test.zone"), zone()).context("writing the zone")?;
        let conf = format!(
            r#"options {{
    directory "{d}";
    listen-on port 53 {{ {SERVER_V4}; }};
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
zone "example.test" {{ type primary; file "{d}/example.test.zone"; }};
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
        // Up when it answers the A query for the test name on its address.
        let server = SERVER_V4.to_string();
        let up = wait_until(Duration::from_secs(20), || {
            named.proc.exited().is_none()
                && dig(ns, &server, "A", WEB).is_ok_and(|a| a == [server.clone()])
        });
        if !up {
            bail!(
                "named in {} did not answer for {WEB} within 20 s (exit status {:?}); output:\n{}\nlog:\n{}",
                ns.name(),
                named.proc.exited(),
                named.proc.log(),
                named.log()
            );
        }
        Ok(named)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("named.log")).unwrap_or_default()
    }

    /// Queries BIND has received so far.
    fn query_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("query.log")).unwrap_or_default()
    }
}

/// `/etc/netns/<ns>/resolv.conf`, which `ip netns exec` bind-mounts over /etc/resolv.conf for the
/// commands it runs in that namespace. Removed with its folder on drop (and /etc/netns too when
/// this guard created it and nothing else is in it).
struct ResolvConf {
    dir: PathBuf,
    created_parent: bool,
}

impl ResolvConf {
    fn install(ns: &NetNs, nameserver: Ipv6Addr) -> Result<Self> {
        let parent = Path::new("/etc/netns");
        let created_parent = !parent.exists();
        let dir = parent.join(ns.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The guard exists from here on, so a failed write still cleans up.
        let guard = Self {
            dir,
            created_parent,
        };
        let path = guard.dir.join("resolv.conf");
        std::fs::write(
            &path,
            format!("nameserver {nameserver}\noptions timeout:2 attempts:2\n"),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        Ok(guard)
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("resolv.conf"));
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!("warning: cannot remove {}: {e}", self.dir.display());
        }
        if self.created_parent {
            // Fails harmlessly when something else lives there meanwhile.
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

/// `dig +short TYPE NAME @SERVER` in `ns`: the answer lines (errors when dig fails).
fn dig(ns: &NetNs, server: &str, qtype: &str, name: &str) -> Result<Vec<String>> {
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

/// The `dns64` section of `translator stats --json` (null when absent).
fn dns64_stats(gw: &Gateway<'_>) -> Result<serde_json::Value> {
    let out = gw.cli(&["stats", "--json"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`translator stats --json` printed something that is not JSON:\n{}",
            out.stdout_str()
        )
    })?;
    Ok(v.get("dns64").cloned().unwrap_or(serde_json::Value::Null))
}

fn counter(section: &serde_json::Value, name: &str) -> u64 {
    section
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

#[test]
fn curl_by_name_reaches_ipv4_only_server_through_dns64_and_nat64() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("d64")?;

    // The IPv4-only side: authoritative DNS and the web page.
    let named = Named::start(&topo.server)?;
    let http = HttpServer::start(&topo.server, 80)?;
    let page = format!(
        "hello from the IPv4-only server {SERVER_V4}, reached by name (test process {})\n",
        std::process::id()
    );
    http.add_file("index.html", page.as_bytes())?;

    // The gateway: NAT64 plus DNS64 on its IPv6-side address, BIND as the upstream.
    let mut cfg = topo.config();
    cfg.extra = format!(
        "[dns64]\nenabled = true\nlisten = [\"[{GATEWAY_V6}]:53\"]\nupstreams = [\"{SERVER_V4}:53\"]\n"
    );
    let gw = Gateway::start(&topo.gateway, cfg)?;
    // The DNS64 listener is bound once the controller is ready; check it so a failure to listen
    // shows as such rather than as a resolver timeout.
    let listening = wait_until(Duration::from_secs(10), || {
        topo.gateway
            .try_run(&["ss", "-Hlun", "sport = :53"], Duration::from_secs(5))
            .is_ok_and(|o| o.stdout_str().contains(&GATEWAY_V6.to_string()))
    });
    ensure!(
        listening,
        "the DNS64 server does not listen on [{GATEWAY_V6}]:53 in the gateway namespace; controller log:\n{}",
        gw.log()
    );

    // The client resolves through the gateway only.
    let _resolv = ResolvConf::install(&topo.client, GATEWAY_V6)?;

    // 1. The synthesized AAAA: 192.0.2.2 under 2001:db8:64::/96, nothing else.
    let want = nat64(SERVER_V4);
    ensure!(
        want == "2001:db8:64::c000:202".parse::<Ipv6Addr>()?,
        "the harness prefix changed"
    );
    let answer = dig(&topo.client, &GATEWAY_V6.to_string(), "AAAA", WEB)
        .with_context(|| format!("controller log:\n{}", gw.log()))?;
    let got: Vec<Ipv6Addr> = answer.iter().filter_map(|l| l.parse().ok()).collect();
    ensure!(
        got == [want] && answer.len() == 1,
        "AAAA {WEB} via the gateway: expected exactly {want}, got {answer:?}\nupstream query log:\n{}\ncontroller log:\n{}",
        named.query_log(),
        gw.log()
    );

    // 2. The page, fetched by name over IPv6 through the NAT64 path.
    let url = format!("http://{WEB}/");
    let out = topo.client.try_run(
        &[
            "curl",
            "-6",
            "-sS",
            "--fail",
            "--max-time",
            "20",
            "-o",
            "-",
            &url,
        ],
        Duration::from_secs(30),
    )?;
    ensure!(
        out.status.success(),
        "curl -6 {url} in the client namespace failed ({}): {}\nupstream query log:\n{}\nHTTP server log:\n{}",
        out.status,
        out.stderr_str(),
        named.query_log(),
        http.log()
    );
    ensure!(
        out.stdout == page.as_bytes(),
        "curl -6 {url}: the body differs from the served page\ngot:  {:?}\nwant: {page:?}",
        out.stdout_str()
    );

    // 3. The upstream saw the gateway's queries (from its IPv4 address), not the client's.
    let log = named.query_log();
    ensure!(
        log.contains(&format!("{GATEWAY_V4}#")) && log.contains(WEB),
        "BIND's query log shows no query from the gateway {GATEWAY_V4}:\n{log}"
    );

    // 4. A TCP session client -> 192.0.2.2:80 exists in the NAT64 session table.
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.protocol == "tcp"
            && s.client == CLIENT_V6
            && s.remote == SERVER_V4
            && s.remote_port == 80),
        "no TCP session [{CLIENT_V6}] -> {SERVER_V4}:80 in `translator sessions --json`: {sessions:?}"
    );

    // 5. The DNS64 counters (the controller writes them once per tick): at least the dig and the
    // curl lookups were answered with synthesized records.
    let mut last = serde_json::Value::Null;
    let counted = wait_until(Duration::from_secs(30), || {
        if let Ok(s) = dns64_stats(&gw) {
            last = s;
        }
        counter(&last, "synthesized") >= 2 && counter(&last, "queries") >= 2
    });
    ensure!(
        counted,
        "`translator stats --json` did not show dns64 synthesized >= 2 and queries >= 2 within 30 s; last dns64 section: {last}"
    );
    for zero in [
        "upstream-errors",
        "upstream-timeouts",
        "servfail",
        "refused",
    ] {
        ensure!(
            counter(&last, zero) == 0,
            "dns64 counter {zero} is {} (expected 0): {last}",
            counter(&last, zero)
        );
    }
    Ok(())
}
