//! `cargo xtask demo`: an IPv6-only client with nothing configured learns everything from the
//! gateway's router advertisements (address, default route, resolver through rdnssd, PREF64),
//! fetches a page by a name that has only an A record (BIND on the IPv4 side, DNS64 on the
//! gateway), and reaches the IPv4-only server by its address under the NAT64 prefix; then it
//! starts `translator clat` with no settings and reaches the server by its IPv4 literal
//! (464XLAT: the CLAT on the client, the gateway as the PLAT).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use translator_tests::clat::Clat;
use translator_tests::cmd::{describe, run_cleanup, run_visible};
use translator_tests::named::{Named, NetnsEtc, rdnssd};
use translator_tests::ra::{Capture, pref64_of, router_lifetime};
use translator_tests::{
    Gateway, HttpServer, SERVER_V4, TempDir, Topology, interrupted, request_interrupt,
    require_root, server_via_prefix, wait_until,
};

use crate::run::build_release;
use crate::setup;

const INSTANCE: &str = "demo";
/// The name the client fetches: it has an A record only.
const WEB: &str = "web.example.test";

fn step(title: &str) {
    println!("\n==> {title}");
}

fn show(mut cmd: Command) -> Result<()> {
    println!("$ {}", describe(&cmd));
    run_visible(&mut cmd, Duration::from_secs(30))
}

/// `show` that only reports a failure (for looks at state that may be empty).
fn look(cmd: Command) {
    if let Err(e) = show(cmd) {
        println!("({e:#})");
    }
}

/// The zone on the IPv4 side: `web` has an A record only, so its AAAA is DNS64's.
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

pub fn demo(keep: bool) -> Result<()> {
    require_root().context("the demo creates network namespaces and attaches XDP programs")?;
    setup::ensure()?;
    let bin = build_release()?;
    ctrlc::set_handler(|| {
        eprintln!("\ninterrupted: cleaning up ...");
        request_interrupt();
    })
    .context("cannot install the Ctrl-C handler")?;

    for what in translator_tests::sweep_stale(Some(&bin)) {
        println!("removed {what}, left behind by a killed run");
    }
    // A demo killed hard (SIGKILL) leaves its pins behind; take them down first.
    if Path::new("/sys/fs/bpf/translator").join(INSTANCE).exists() {
        let _ = run_cleanup(
            Command::new(&bin).args(["down", "--instance", INSTANCE]),
            Duration::from_secs(30),
        );
    }

    step("creating namespaces: IPv6-only client (nothing configured), gateway, IPv4-only server");
    let topo = Topology::builder("demo").slaac_client(true).build()?;
    let (client, gateway, server) = (topo.client.name(), topo.gateway.name(), topo.server.name());
    println!("  client  {client:<24} c0: no address but link-local, no route, no resolver");
    println!("  gateway {gateway:<24} g6 2001:db8:1::1/64, g4 192.0.2.1/24");
    println!("  server  {server:<24} s0 192.0.2.2/24, HTTP on port 80, BIND for example.test");
    let server_v4 = SERVER_V4.to_string();
    let named = Named::start(
        &topo.server,
        "example.test",
        &zone(),
        SERVER_V4,
        WEB,
        &server_v4,
    )?;
    let http = HttpServer::start(&topo.server, 80)?;
    let page = format!("Hello from the IPv4-only server {SERVER_V4}, reached over NAT64!\n");
    http.add_file("index.html", page.as_bytes())?;

    step("the client before the gateway runs");
    let mut addr = topo.client.command("ip");
    addr.args(["-6", "addr", "show", "dev", "c0"]);
    show(addr)?;
    let mut route = topo.client.command("ip");
    route.args(["-6", "route", "show", "default"]);
    look(route);
    // The client's resolver comes from router advertisements only: rdnssd writes the file
    // `ip netns exec` mounts over its /etc/resolv.conf.
    let etc = NetnsEtc::create(&topo.client)?;
    let scratch = TempDir::new("demo-client")?;
    let rdnssd = rdnssd(&topo.client, &etc, &scratch)?;
    println!(
        "rdnssd runs in the client and will write {}",
        etc.path("resolv.conf").display()
    );
    let capture = Capture::start(&topo.client, "c0")?;

    let mut config = topo.config();
    config.instance = INSTANCE.to_owned();
    config.extra = format!(
        "[dns64]\nenabled = true\nlisten = [\"[::]:53\"]\nupstreams = [\"{SERVER_V4}:53\"]\n\n\
         [ra]\nenabled = true\nprefixes = [\"2001:db8:1::/64\"]\ndnssl = [\"example.test\"]\n"
    );
    step("starting the gateway with this configuration");
    print!("{}", config.to_toml());
    let mut gw = Gateway::start_with(bin.clone(), &topo.gateway, config)?;
    gw.set_print_log_on_drop(false);
    println!("translator runs (log: {})", gw.log_path().display());

    let target = server_via_prefix().to_string();
    let mut clat_slot: Option<Clat<'_>> = None;
    let result = (|| -> Result<()> {
        step("what the client learnt from the gateway's router advertisements");
        let global = || {
            topo.client
                .ip(&["-6", "addr", "show", "dev", "c0", "scope", "global"])
                .map(|o| o.stdout_str())
                .unwrap_or_default()
        };
        let ready = wait_until(Duration::from_secs(20), || {
            let g = global();
            g.contains("2001:db8:1:") && !g.contains("tentative")
        }) && wait_until(Duration::from_secs(20), || {
            etc.read("resolv.conf").contains("nameserver")
        });
        if !ready {
            bail!(
                "the client did not configure itself within 20 s\naddresses: {}\nresolv.conf: {:?}\nrdnssd: {}",
                global(),
                etc.read("resolv.conf"),
                rdnssd.log()
            );
        }
        println!("address (SLAAC from the prefix information):");
        let mut addr = topo.client.command("ip");
        addr.args(["-6", "addr", "show", "dev", "c0", "scope", "global"]);
        show(addr)?;
        println!("default route (the router lifetime):");
        let mut route = topo.client.command("ip");
        route.args(["-6", "route", "show", "default"]);
        show(route)?;
        println!("resolver and search domain (RDNSS and DNSSL, written by rdnssd):");
        let mut cat = topo.client.command("cat");
        cat.arg("/etc/resolv.conf");
        show(cat)?;
        println!("NAT64 prefix (PREF64, RFC 8781), decoded from an advertisement captured on c0:");
        let ra = capture
            .adverts()
            .into_iter()
            .rev()
            .find(|f| router_lifetime(&f.bytes).is_some_and(|l| l > 0))
            .context("no advertisement captured")?;
        match pref64_of(&ra.bytes) {
            Some((prefix, len, lifetime)) => {
                println!("  PREF64 {prefix}/{len}, lifetime {lifetime} s")
            }
            None => println!("  (the advertisement has no PREF64 option)"),
        }
        println!(
            "the whole advertisement, as rdisc6 sees it (ndisc6 1.0.5 does not print PREF64):"
        );
        let mut rdisc6 = topo.client.command("rdisc6");
        rdisc6.args(["-1", "-n", "-r", "3", "-w", "4000", "c0"]);
        show(rdisc6)?;

        step(&format!(
            "curl http://{WEB}/ from the client: a name with only an A record"
        ));
        let mut curl = topo.client.command("curl");
        curl.args(["-sS", "--max-time", "20", &format!("http://{WEB}/")]);
        show(curl)?;

        step(&format!("ping {SERVER_V4} from the client as {target}"));
        let mut ping = topo.client.command("ping");
        ping.args(["-c", "3", "-i", "0.5", &target]);
        show(ping)?;

        step(&format!("curl http://[{target}]/ from the client"));
        let mut curl = topo.client.command("curl");
        curl.args(["-sS", "--max-time", "10", &format!("http://[{target}]/")]);
        show(curl)?;

        step(&format!("iperf3 from the client to {target} (3 s of TCP)"));
        let scratch = TempDir::new("demo-iperf")?;
        let _iperf_server = topo.server.spawn(
            &["iperf3", "-s", "-1", "-B", "192.0.2.2"],
            &scratch.join("iperf3-server.log"),
        )?;
        wait_until(Duration::from_secs(10), || {
            topo.server
                .try_run(&["ss", "-Hltn", "sport = :5201"], Duration::from_secs(5))
                .is_ok_and(|o| !o.stdout.is_empty())
        });
        let mut iperf = topo.client.command("iperf3");
        iperf.args(["-c", &target, "-t", "3", "-f", "g"]);
        show(iperf)?;

        step("translator clat on the client, with no settings (464XLAT, RFC 6877)");
        let clat = clat_slot.insert(Clat::start(bin.clone(), &topo.client, &[])?);
        clat.wait_active(Duration::from_secs(30))?;
        let mut status = Command::new(&bin);
        status.args(["--netns", client, "clat", "status"]);
        show(status)?;
        println!("the client's IPv4 side, which the CLAT made:");
        let mut addr4 = topo.client.command("ip");
        addr4.args(["-4", "addr", "show", "dev", "clat"]);
        show(addr4)?;
        let mut route4 = topo.client.command("ip");
        route4.args(["-4", "route", "show"]);
        show(route4)?;

        step(&format!(
            "ping {SERVER_V4} from the client: an IPv4 literal"
        ));
        let mut ping = topo.client.command("ping");
        ping.args(["-c", "3", "-i", "0.5", &server_v4]);
        show(ping)?;

        step(&format!(
            "curl http://{SERVER_V4}/ from the client: an IPv4 literal"
        ));
        let mut curl = topo.client.command("curl");
        curl.args(["-sS", "--max-time", "10", &format!("http://{SERVER_V4}/")]);
        show(curl)?;

        step("the router advertisement the gateway sends");
        let mut ra = gw.command();
        ra.args(["ra", "show", "--instance", INSTANCE]);
        show(ra)?;

        step("the gateway's session table");
        let mut sessions = gw.command();
        sessions.args(["sessions", "--instance", INSTANCE]);
        show(sessions)?;

        step("the gateway's counters");
        // The controller writes its own counters (DNS64, router advertisements) every few
        // seconds: wait for a snapshot taken after the lookups above.
        wait_until(Duration::from_secs(15), || {
            gw.cli(&["stats", "--json"]).is_ok_and(|o| {
                serde_json::from_slice::<serde_json::Value>(&o.stdout)
                    .is_ok_and(|v| v["dns64"]["queries"].as_u64().is_some_and(|n| n > 0))
            })
        });
        let mut stats = gw.command();
        stats.args(["stats", "--instance", INSTANCE]);
        show(stats)?;
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("--- translator log ---\n{}", gw.log());
        if let Some(c) = &clat_slot {
            eprintln!("--- translator clat log ---\n{}", c.log());
        }
        return Err(e);
    }

    if keep {
        let b = bin.display();
        println!(
            "\nThe demo keeps running. Press Ctrl-C to stop it and clean up. Things to try:
  ip netns exec {client} curl http://{WEB}/
  ip netns exec {client} ping {target}
  ip netns exec {client} ping {SERVER_V4}
  ip netns exec {client} curl http://{SERVER_V4}/
  {b} --netns {client} clat status
  ip netns exec {client} rdisc6 c0
  ip netns exec {client} cat /etc/resolv.conf
  ip netns exec {client} traceroute -6 {target}
  ip netns exec {server} tcpdump -ni s0
  ip netns exec {client} tcpdump -ni c0
  {b} --netns {gateway} status --instance {INSTANCE}
  {b} --netns {gateway} sessions --instance {INSTANCE}
  {b} --netns {gateway} stats --instance {INSTANCE}
  {b} --netns {gateway} ra show --instance {INSTANCE}
  {b} --netns {gateway} trace --instance {INSTANCE}
  {b} --netns {gateway} bib list --instance {INSTANCE}
(Use the translator's --netns option, not `ip netns exec`, for the translator itself:
`ip netns exec` remounts /sys and hides bpffs.)"
        );
        while !interrupted() {
            if !gw.is_running() {
                eprintln!("--- translator log ---\n{}", gw.log());
                bail!("the translator process exited on its own");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    step("cleaning up");
    drop(clat_slot);
    drop(capture);
    drop(gw);
    drop(rdnssd);
    drop(etc);
    drop(http);
    drop(named);
    drop(topo);
    println!("removed the namespaces and took instance {INSTANCE} down");
    Ok(())
}
