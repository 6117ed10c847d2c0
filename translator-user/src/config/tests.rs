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

fn deterministic(extra: &str) -> anyhow::Result<Config> {
    Config::parse(&GOOD.replace(
        "block_size = 64",
        &format!("block_size = 64\ndeterministic = true\n{extra}"),
    ))
}

#[test]
fn deterministic_blocks_follow_from_the_subscriber_index() {
    // 256 subscribers (the /72s of 2001:db8:1::/64) x 8 blocks of the 5 x 1008 blocks.
    let c = deterministic("subscriber_prefix_len = 72").expect("valid config");
    let det = c.deterministic.expect("deterministic layout");
    assert_eq!((det.subscribers(), det.stride), (256, 2048));
    let sub = |i: u128| Ipv6Addr::from(0x2001_0db8_0001_0000_0000_0000_0000_0000 | i << 56);
    let b = |i, slot| {
        let h = c
            .deterministic_block(Protocol::Udp, sub(i), slot)
            .expect("a block");
        (h.pool, h.first_port, h.last_port)
    };
    let pool1 = Ipv4Addr::new(192, 0, 2, 1);
    assert_eq!(b(0, 0), (pool1, 1024, 1087));
    assert_eq!(b(0, 7), (pool1, 1024 + 7 * 64, 1024 + 8 * 64 - 1));
    assert_eq!(b(1, 0), (pool1, 1024 + 8 * 64, 1024 + 9 * 64 - 1));
    // Block 1008 is the first of the next pool address.
    assert_eq!(b(126, 0), (Ipv4Addr::new(198, 51, 100, 0), 1024, 1087));
    // Any address of the subscriber prefix, the same blocks.
    let host = Ipv6Addr::from(u128::from(sub(126)) | 0xdead_beef);
    assert_eq!(
        c.deterministic_block(Protocol::Udp, host, 0),
        c.deterministic_block(Protocol::Udp, sub(126), 0)
    );
    assert_eq!(c.deterministic_block(Protocol::Udp, sub(0), 8), None);
    // The inverse, for every block of every subscriber and both ends of each.
    for i in 0..256 {
        for slot in 0..8 {
            let h = c
                .deterministic_block(Protocol::Udp, sub(i), slot)
                .expect("a block");
            assert_eq!((h.client, h.client_prefix_len, h.slot), (sub(i), 72, slot));
            for port in [h.first_port, h.last_port] {
                assert_eq!(
                    c.deterministic_holder(Protocol::Udp, h.pool, port).as_ref(),
                    Some(&h)
                );
            }
        }
    }
    // Blocks after the last subscriber's, and ports outside the layout, are nobody's.
    let last = Ipv4Addr::new(198, 51, 100, 3);
    assert_eq!(c.deterministic_holder(Protocol::Udp, last, 1024), None);
    assert_eq!(c.deterministic_holder(Protocol::Udp, pool1, 80), None);
    // The table the data plane gets is the same blocks in the same order.
    let table = c.deterministic_blocks(Protocol::Udp);
    assert_eq!(table.len(), 2048);
    assert_eq!(table[9].start, 1024 + 9 * 64);
    assert_eq!(
        rfc6052::from_raw4(table[1008].pool),
        u32::from(Ipv4Addr::new(198, 51, 100, 0))
    );
    // A static mapping holds its port, whatever block the port is in.
    let s = c
        .deterministic_holder(Protocol::Tcp, pool1, 8080)
        .expect("the static mapping");
    assert_eq!(
        (s.client, s.static_client_port),
        ("2001:db8:1::10".parse().expect("address"), Some(80))
    );
    let u = c
        .deterministic_holder(Protocol::Udp, pool1, 8080)
        .expect("a subscriber");
    assert_eq!((u.client, u.slot), (sub(13), 6));
}

#[test]
fn deterministic_layouts_that_cannot_work_are_refused_by_name() {
    let msg = |extra: &str| {
        deterministic(extra)
            .expect_err("config should be refused")
            .to_string()
    };
    // 4096 subscribers x 8 blocks is more than the pool's 5040.
    let m = msg("subscriber_prefix_len = 76");
    assert!(
        m.starts_with("pool.deterministic: tcp: 4096 subscribers"),
        "{m}"
    );
    assert!(m.contains("need 32768 blocks, the pool has 5040"), "{m}");
    // ... but with one block each it fits.
    deterministic("subscriber_prefix_len = 76\nmax_blocks_per_client = 1").expect("fits");
    let m = msg("subscriber_prefix_len = 56");
    assert!(
        m.contains("shorter than the nat64.clients prefix 2001:db8:1::/64"),
        "{m}"
    );
    let m = msg("subscriber_prefix_len = 96");
    assert!(m.contains("at most 2^24 subscribers"), "{m}");
    let two = GOOD.replace(
        "clients = [\"2001:db8:1::/64\"]",
        "clients = [\"2001:db8:1::/64\", \"2001:db8:2::/64\"]",
    );
    let e = Config::parse(&two.replace(
        "block_size = 64",
        "block_size = 64\ndeterministic = true\nsubscriber_prefix_len = 72",
    ))
    .expect_err("two client prefixes");
    assert!(
        e.to_string()
            .starts_with("pool.deterministic: needs exactly one nat64.clients prefix"),
        "{e}"
    );
}

#[test]
fn settings_sessions_depend_on_are_named_when_they_change() {
    let base = deterministic("subscriber_prefix_len = 72").expect("valid config");
    let changed = |extra: &str, text: &str| {
        let new = Config::parse(
            &GOOD
                .replace("block_size = 64", &format!("block_size = 64\n{extra}"))
                .replace("2001:db8:1::/64", text),
        )
        .expect("valid config");
        base.session_setting_changed(&new)
    };
    let same = "deterministic = true\nsubscriber_prefix_len = 72";
    assert_eq!(changed(same, "2001:db8:1::/64"), None);
    assert_eq!(
        changed("subscriber_prefix_len = 72", "2001:db8:1::/64"),
        Some("pool.deterministic")
    );
    assert_eq!(
        changed(
            &format!("{same}\nmax_blocks_per_client = 4"),
            "2001:db8:1::/64"
        ),
        Some("pool.max_blocks_per_client (with pool.deterministic)")
    );
    assert_eq!(
        changed(same, "2001:db8:1::/63"),
        Some("nat64.clients (with pool.deterministic)")
    );
    assert_eq!(
        changed(
            "deterministic = true\nsubscriber_prefix_len = 70",
            "2001:db8:1::/64"
        ),
        Some("pool.subscriber_prefix_len")
    );
    // Without deterministic blocks the client prefixes and the limit may change.
    let plain = Config::parse(GOOD).expect("valid config");
    let more = Config::parse(&GOOD.replace(
        "block_size = 64",
        "block_size = 64\nmax_blocks_per_client = 4",
    ))
    .expect("valid config");
    assert_eq!(plain.session_setting_changed(&more), None);
}
