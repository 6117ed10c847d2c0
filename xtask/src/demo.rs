//! `cargo xtask demo`: an IPv6-only client reaches an IPv4-only server through the gateway.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use translator_tests::cmd::{describe, run_cleanup, run_visible};
use translator_tests::{
    Gateway, HttpServer, SERVER_V4, TempDir, Topology, interrupted, request_interrupt,
    require_root, server_via_prefix, wait_until,
};

use crate::run::build_release;
use crate::setup;

const INSTANCE: &str = "demo";

fn step(title: &str) {
    println!("\n==> {title}");
}

fn show(mut cmd: Command) -> Result<()> {
    println!("$ {}", describe(&cmd));
    run_visible(&mut cmd, Duration::from_secs(30))
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

    step("creating namespaces: IPv6-only client, gateway, IPv4-only server");
    let topo = Topology::two_armed("demo")?;
    let (client, gateway, server) = (topo.client.name(), topo.gateway.name(), topo.server.name());
    println!("  client  {client:<24} c0 2001:db8:1::2/64, default via 2001:db8:1::1");
    println!("  gateway {gateway:<24} g6 2001:db8:1::1/64, g4 192.0.2.1/24");
    println!("  server  {server:<24} s0 192.0.2.2/24, HTTP on port 80");
    let http = HttpServer::start(&topo.server, 80)?;
    let page = format!("Hello from the IPv4-only server {SERVER_V4}, reached over NAT64!\n");
    http.add_file("index.html", page.as_bytes())?;

    let mut config = topo.config();
    config.instance = INSTANCE.to_owned();
    step("starting the gateway with this configuration");
    print!("{}", config.to_toml());
    let mut gw = Gateway::start_with(bin.clone(), &topo.gateway, config)?;
    gw.set_print_log_on_drop(false);
    println!("translator runs (log: {})", gw.log_path().display());

    let target = server_via_prefix().to_string();
    let result = (|| -> Result<()> {
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

        step("the gateway's session table");
        let mut sessions = gw.command();
        sessions.args(["sessions", "--instance", INSTANCE]);
        show(sessions)?;

        step("the gateway's counters");
        let mut stats = gw.command();
        stats.args(["stats", "--instance", INSTANCE]);
        show(stats)?;
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("--- translator log ---\n{}", gw.log());
        return Err(e);
    }

    if keep {
        let b = bin.display();
        println!(
            "\nThe demo keeps running. Press Ctrl-C to stop it and clean up. Things to try:
  ip netns exec {client} ping {target}
  ip netns exec {client} curl http://[{target}]/
  ip netns exec {client} traceroute -6 {target}
  ip netns exec {server} tcpdump -ni s0
  ip netns exec {client} tcpdump -ni c0
  {b} --netns {gateway} status --instance {INSTANCE}
  {b} --netns {gateway} sessions --instance {INSTANCE}
  {b} --netns {gateway} stats --instance {INSTANCE}
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
    drop(gw);
    drop(http);
    drop(topo);
    println!("removed the namespaces and took instance {INSTANCE} down");
    Ok(())
}
