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
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use translator_tests::named::{NAMED, Named, NetnsEtc, dig};
use translator_tests::{
    CLIENT_V6, GATEWAY_V4, GATEWAY_V6, Gateway, HttpServer, SERVER_V4, Topology, nat64, wait_until,
};

static SERIAL: Mutex<()> = Mutex::new(());

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
    let server = SERVER_V4.to_string();
    let named = Named::start(
        &topo.server,
        "example.test",
        &zone(),
        SERVER_V4,
        WEB,
        &server,
    )?;
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
    let etc = NetnsEtc::create(&topo.client)?;
    etc.write(
        "resolv.conf",
        &format!("nameserver {GATEWAY_V6}\noptions timeout:2 attempts:2\n"),
    )?;

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
