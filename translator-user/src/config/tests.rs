//! Unit tests of the configuration's parsing and validation.

use super::*;

const GOOD: &str = r#"
[interfaces]
ipv6 = "eth0"
ipv4 = "eth1"
[nat64]
prefix = "2001:db8:64::/96"
clients = ["2001:db8:1::/64"]
[pool]
addresses = ["192.0.2.1", "198.51.100.0/30"]
block_size = 64
[[static]]
protocol = "tcp"
ipv6 = "2001:db8:1::10"
ipv6_port = 80
ipv4 = "192.0.2.1"
ipv4_port = 8080
"#;

#[test]
fn good_config_and_defaults() {
    let c = Config::parse(GOOD).expect("valid config");
    assert_eq!(c.instance, "default");
    assert_eq!(c.mode, AttachMode::Native);
    assert_eq!(c.pool.len(), 5);
    assert_eq!(c.filtering, Filtering::AddressDependent);
    assert_eq!(c.timeouts.udp, Duration::from_secs(300));
    assert_eq!(c.timeouts.tcp_established, Duration::from_secs(7440));
    assert_eq!(c.layouts[0].blocks_per_address(), (65536 - 1024) / 64);
    assert_eq!(c.statics.len(), 1);
    assert_eq!(c.total_blocks(Protocol::Udp), 5 * (65536 - 1024) / 64);
}

fn bad(replace: &str, with: &str, setting: &str) {
    let text = GOOD.replace(replace, with);
    assert_ne!(text, GOOD, "test edit {replace:?} did not apply");
    let e = Config::parse(&text).expect_err("config should be refused");
    let msg = e.to_string();
    assert!(
        msg.starts_with(setting) || msg.contains(setting),
        "{msg:?} should name {setting}"
    );
}

#[test]
fn bad_inputs_name_the_setting() {
    bad("2001:db8:64::/96", "2001:db8:64::/33", "nat64.prefix");
    bad("2001:db8:64::/96", "2001:db8:64::1/96", "nat64.prefix");
    bad("2001:db8:64::/96", "2001:db8:0:0:100::/96", "nat64.prefix");
    bad("2001:db8:64::/96", "not-an-address", "nat64.prefix");
    bad(
        "clients = [\"2001:db8:1::/64\"]",
        "clients = []",
        "nat64.clients",
    );
    bad(
        "clients = [\"2001:db8:1::/64\"]",
        "clients = [\"2001:db8:64::/112\"]",
        "nat64.clients[0]",
    );
    bad("block_size = 64", "block_size = 100", "pool.block_size");
    bad(
        "[\"192.0.2.1\", \"198.51.100.0/30\"]",
        "[]",
        "pool.addresses",
    );
    bad("198.51.100.0/30", "198.51.100.1/30", "pool.addresses[1]");
    bad("198.51.100.0/30", "192.0.2.1", "pool.addresses[1]");
    bad(
        "ipv4 = \"eth1\"",
        "ipv4 = \"eth1\"\nmode = \"fast\"",
        "interfaces.mode",
    );
    bad(
        "ipv4_port = 8080",
        "ipv4_port = 8080\nextra = 1",
        "unknown field",
    );
    bad(
        "ipv4 = \"192.0.2.1\"\nipv4_port",
        "ipv4 = \"203.0.113.1\"\nipv4_port",
        "static[0]",
    );
    bad(
        "ipv6 = \"2001:db8:1::10\"",
        "ipv6 = \"2001:db8:2::10\"",
        "static[0]",
    );
    bad("protocol = \"tcp\"", "protocol = \"sctp\"", "static[0]");
    bad(
        "block_size = 64",
        "block_size = 64\nmax_blocks_per_client = 17",
        "pool.max_blocks_per_client",
    );
    bad(
        "block_size = 64",
        "block_size = 64\nudp_ports = \"1025-1030\"",
        "pool.udp_ports",
    );
    bad(
        "[pool]",
        "route_cache_ms = 10001\n[pool]",
        "nat64.route_cache_ms",
    );
    bad(
        "block_size = 64",
        "block_size = 64\nsubscriber_prefix_len = 129",
        "pool.subscriber_prefix_len",
    );
    bad(
        "block_size = 64",
        "block_size = 64\nsubscriber_prefix_len = 16",
        "pool.subscriber_prefix_len",
    );
    bad(
        "[[static]]",
        "[timeouts]\nudp = 30\n[[static]]",
        "timeouts.udp",
    );
    bad(
        "[nat64]",
        "[nat64]\nfiltering = \"strict\"",
        "nat64.filtering",
    );
    bad(
        "[nat64]",
        "[nat64]\ninbound_syn = \"answer\"",
        "nat64.inbound_syn: \"answer\"; valid: \"hold\"",
    );
    bad(
        "[[static]]",
        "[ra]\nmax_interval = 2000\n[[static]]",
        "ra.max_interval: 2000 is outside 4..1800 seconds",
    );
    bad(
        "[[static]]",
        "[ra]\nprefixes = [\"2001:db8:2::/64\"]\n[[static]]",
        "ra.prefixes[0]",
    );
    bad(
        "[[static]]",
        "[ra]\nbogus = 1\n[[static]]",
        "unknown field `bogus`",
    );
}

#[test]
fn ra_takes_the_nat64_prefix_and_the_dns64_addresses() {
    let text = GOOD.replace(
        "[[static]]",
        "[dns64]\nenabled = true\nlisten = [\"[2001:db8:1::1]:53\"]\nupstreams = [\"192.0.2.53\"]\n\
         [ra]\nenabled = true\nprefixes = [\"2001:db8:1::/64\"]\n[[static]]",
    );
    let c = Config::parse(&text).expect("valid");
    assert!(c.ra.enabled);
    assert_eq!(c.ra.interface, "eth0");
    assert_eq!(c.ra.pref64, (c.prefix.addr, c.prefix.len));
    assert_eq!(
        c.ra.rdnss,
        crate::ra::RdnssSource::Dns64(vec!["[2001:db8:1::1]:53".parse().expect("literal")])
    );
    let plain = Config::parse(GOOD).expect("valid");
    assert!(!plain.ra.enabled);
    assert_eq!(plain.ra.rdnss, crate::ra::RdnssSource::None);
}

/// Mutated configuration text never panics the parser; it parses or names a problem.
#[test]
fn random_mutations_are_refused_cleanly() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base: Vec<char> = GOOD.chars().collect();
    for _ in 0..3000 {
        let mut t = base.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % t.len();
            match next() % 3 {
                0 => t[i] = char::from(b" =\"[]0123456789abcdef:/.-x\n"[(next() % 27) as usize]),
                1 => {
                    t.remove(i);
                }
                _ => t.insert(i, char::from(b"9/:\"]"[(next() % 5) as usize])),
            }
        }
        let text: String = t.into_iter().collect();
        if let Err(e) = Config::parse(&text) {
            assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn short_timeouts_allowed_when_asked() {
    let text = GOOD.replace(
        "[[static]]",
        "[timeouts]\nudp = 2\ntcp_transitory = 3\nenforce_rfc_minimums = false\n[[static]]",
    );
    let c = Config::parse(&text).expect("valid");
    assert_eq!(c.timeouts.udp, Duration::from_secs(2));
}

#[test]
fn dns64_errors_name_the_setting_once() {
    let text = format!(
        "{GOOD}\n[dns64]\nenabled = true\nlisten = [\"bogus\"]\nupstreams = [\"192.0.2.53\"]\n"
    );
    let msg = Config::parse(&text).expect_err("refused").to_string();
    assert!(
        msg.starts_with("dns64.listen: \"bogus\" is not valid"),
        "{msg:?}"
    );
    assert_eq!(msg.matches("dns64").count(), 1, "{msg:?}");
    let text = format!(
        "{GOOD}\n[dns64]\nenabled = true\nupstreams = [\"192.0.2.53\"]\nprefixes = [\"10.0.0.0/96\"]\n"
    );
    let msg = Config::parse(&text).expect_err("refused").to_string();
    assert!(msg.contains("expected an IPv6 prefix"), "{msg:?}");
}
