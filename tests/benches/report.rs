//! Merges the benchmark results into one table (`cargo xtask bench` runs this last).
//!
//! Reads `dataplane.json`, `live.json` and `clat.json` (rows written by those bench targets) and
//! `dns64.txt` (the output of the DNS64 bench in tests/tests/dns64.rs) from the results folder
//! (`$TRANSLATOR_BENCH_DIR`, default `results/`), adds the machine description and the issue's
//! targets (met or missed), prints the table and writes `bench.json` and `bench.md`.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use common::{Row, fmt_num};
use serde::Serialize;

#[derive(Serialize)]
struct Machine {
    nproc: usize,
    cpu: String,
    kernel: String,
    commit: String,
    date: String,
}

#[derive(Serialize)]
struct Target {
    target: String,
    measured: String,
    met: Option<bool>,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    rows: Vec<Row>,
    targets: Vec<Target>,
}

fn main() -> ExitCode {
    match report() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench report failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let root = translator_tests::workspace_root();
    let root = root.display().to_string();
    let commit = common::output("git", &["-C", &root, "rev-parse", "--short", "HEAD"])
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let dirty = common::output(
        "git",
        &["-C", &root, "status", "--porcelain", "--untracked-files=no"],
    )
    .map(|s| !s.trim().is_empty())
    .unwrap_or(false);
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, usize::from),
        cpu,
        kernel,
        commit: if dirty {
            format!("{commit} + uncommitted changes")
        } else {
            commit
        },
        date: common::output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

fn read_rows(dir: &Path, target: &str, section: &str) -> Vec<Row> {
    let path = dir.join(format!("{target}.json"));
    match std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))
        .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).context("parsing"))
    {
        Ok(values) => values.into_iter().filter_map(row_from_json).collect(),
        Err(e) => vec![Row::missing(
            section,
            &format!("{target} bench"),
            "-",
            &format!("no results ({e:#}); see the bench's output above"),
        )],
    }
}

fn row_from_json(v: serde_json::Value) -> Option<Row> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    Some(Row {
        section: s("section")?,
        name: s("name")?,
        unit: s("unit")?,
        median: f("median"),
        min: f("min"),
        max: f("max"),
        samples: v
            .get("samples")
            .and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default(),
        ratio: f("ratio"),
        ratio_to: s("ratio_to"),
        note: s("note").unwrap_or_default(),
    })
}

/// Rows from the DNS64 bench's printed table (`workload server qps latency [ratio]`).
fn dns64_rows(dir: &Path) -> Vec<Row> {
    let path = dir.join("dns64.txt");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            return vec![Row::missing(
                "dns64",
                "DNS64 queries per second",
                "queries/s",
                &format!("{}: {e}", path.display()),
            )];
        }
    };
    // The DNS64 bench may have run several times: one sample per run and (workload, server).
    let mut seen: Vec<(String, String, Vec<f64>, Vec<f64>)> = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 4 || !(w[1] == "ours" || w[1] == "unbound") {
            continue;
        }
        let (Ok(qps), Ok(lat)) = (w[2].parse::<f64>(), w[3].parse::<f64>()) else {
            continue;
        };
        match seen.iter_mut().find(|(a, b, _, _)| a == w[0] && b == w[1]) {
            Some((_, _, q, l)) => {
                q.push(qps);
                l.push(lat);
            }
            None => seen.push((w[0].to_owned(), w[1].to_owned(), vec![qps], vec![lat])),
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    for (workload, server, qps, lat) in seen {
        let who = if server == "ours" {
            "our DNS64"
        } else {
            "Unbound (dns64 module)"
        };
        let runs = qps.len();
        rows.push(Row::new(
            "dns64",
            &format!("{workload} workload: {who}"),
            "queries/s",
            qps,
            &format!(
                "dnsperf 10 s, {runs} run(s) (tests/tests/dns64.rs bench_against_unbound); \
                 median average latency {:.3} ms",
                common::stats(&lat).0.unwrap_or(0.0)
            ),
        ));
    }
    // Ratios: ours over Unbound, per workload.
    let mut out = Vec::new();
    for r in &rows {
        let workload = r.name.split(' ').next().unwrap_or("");
        let mut r = r.clone();
        if r.name.contains("our DNS64")
            && let Some(u) = rows
                .iter()
                .find(|u| u.name.starts_with(workload) && u.name.contains("Unbound"))
        {
            r = r.ratio_to(u);
        }
        out.push(r);
    }
    if out.is_empty() {
        let tail: String = text.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        out.push(Row::missing(
            "dns64",
            "DNS64 queries per second",
            "queries/s",
            &format!("the DNS64 bench printed no results: {tail}"),
        ));
    }
    out
}

fn find<'a>(rows: &'a [Row], name: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.name.contains(name))
}

fn targets(rows: &[Row]) -> Vec<Target> {
    let mut t = Vec::new();
    let mut add = |target: &str, measured: Option<(String, bool)>| {
        t.push(match measured {
            Some((m, met)) => Target {
                target: target.to_owned(),
                measured: m,
                met: Some(met),
            },
            None => Target {
                target: target.to_owned(),
                measured: "not measured".to_owned(),
                met: None,
            },
        });
    };
    for (cache, label) in [(false, ""), (true, ", route cache on")] {
        let worst = rows
            .iter()
            .filter(|r| {
                r.section == "testrun"
                    && r.name.starts_with("established")
                    && r.name.contains("route cache") == cache
            })
            .filter_map(|r| Some((r.median?, r.name.as_str())))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        add(
            &format!("established flow <= 100 ns/packet (test run{label})"),
            worst.map(|(v, n)| (format!("worst {v:.0} ns ({n})"), v <= 100.0)),
        );
    }
    add(
        "new session <= 1 us",
        find(rows, "new flow").and_then(|r| r.median).map(|v| {
            let eim = find(rows, "new session on an existing binding")
                .and_then(|r| r.median)
                .map(|x| format!("; {x:.0} ns when the binding exists"))
                .unwrap_or_default();
            (format!("{v:.0} ns{eim}"), v <= 1000.0)
        }),
    );
    let flat = ["6->4", "4->6"]
        .iter()
        .filter_map(|dir| {
            let small = find(rows, &format!("established UDP {dir}, 1k sessions"))?.median?;
            let big = rows
                .iter()
                .filter(|r| r.section == "scale" && r.name.contains(&format!("UDP {dir},")))
                .filter_map(|r| r.median)
                .next_back()?;
            Some((dir.to_string(), big / small))
        })
        .collect::<Vec<_>>();
    add(
        "flat within 20 % from 1k to 1M sessions",
        (!flat.is_empty()).then(|| {
            (
                flat.iter()
                    .map(|(d, x)| format!("{d} x{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                flat.iter().all(|(_, x)| *x <= 1.2),
            )
        }),
    );
    add(
        "<= 256 bytes of kernel memory per session",
        find(rows, "kernel memory per session")
            .and_then(|r| r.median)
            .map(|v| (format!("{v:.0} bytes"), v <= 256.0)),
    );
    for (via, ingress) in [("", "veth"), (" via TAP", "TAP")] {
        for (unit, what) in [
            ("packets/s", "delivered"),
            ("packets/s/core", "gateway capacity per core"),
        ] {
            let live = |n: &str| {
                rows.iter()
                    .find(|r| {
                        r.section == "live"
                            && r.unit == unit
                            && r.name.starts_with(&format!("64-byte UDP{via}"))
                            && (!via.is_empty() || !r.name.contains("via TAP"))
                            && r.name.contains(n)
                    })
                    .and_then(|r| r.median)
            };
            let ours = live("our gateway");
            let pair = |other: Option<f64>, need: f64| -> Option<(String, bool)> {
                let (a, b) = (ours?, other?);
                Some((format!("x{:.2}", a / b), a / b >= need))
            };
            add(
                &format!("live, {ingress} ({what}) >= 5x TAYGA"),
                pair(live("TAYGA"), 5.0),
            );
            add(
                &format!("live, {ingress} ({what}) >= kernel IPv6 forwarding"),
                pair(live("kernel IPv6"), 1.0),
            );
            add(
                &format!("live, {ingress} ({what}) >= 85 % of the bare XDP forwarder"),
                pair(live("bare XDP"), 0.85),
            );
        }
    }
    // Issue 11: the CLAT + NAT64 path against TAYGA as the CLAT.
    for (unit, what) in [
        ("packets/s", "CLAT + NAT64, 64-byte UDP"),
        ("packets/s/core", "CLAT capacity per core, 64-byte UDP"),
    ] {
        for via in ["injected", "from sockets"] {
            let clat = |n: &str| {
                rows.iter()
                    .find(|r| {
                        r.section == "clat"
                            && r.unit == unit
                            && r.name.starts_with(&format!("{what} {via}:"))
                            && r.name.contains(n)
                    })
                    .and_then(|r| r.median)
            };
            add(
                &format!("{what} {via} ({unit}) >= 5x TAYGA as the CLAT"),
                clat("our CLAT")
                    .zip(clat("TAYGA"))
                    .map(|(a, b)| (format!("x{:.2}", a / b), a / b >= 5.0)),
            );
        }
    }
    t
}

fn report() -> Result<()> {
    let dir = std::env::var_os("TRANSLATOR_BENCH_DIR").map_or_else(
        || translator_tests::workspace_root().join("results"),
        std::path::PathBuf::from,
    );
    let mut rows = read_rows(&dir, "dataplane", "testrun");
    rows.extend(read_rows(&dir, "live", "live"));
    rows.extend(read_rows(&dir, "clat", "clat"));
    rows.extend(dns64_rows(&dir));
    let machine = machine();
    let targets = targets(&rows);

    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), fmt_num);
    let mut md = String::new();
    let _ = writeln!(md, "# translator benchmarks\n");
    let _ = writeln!(
        md,
        "Machine: {} CPUs, {}, kernel {}; commit {}; {}.\n",
        machine.nproc, machine.cpu, machine.kernel, machine.commit, machine.date
    );
    let _ = writeln!(
        md,
        "Each figure: median of the runs, with min and max. Ratios: median over the median of \
         the named row, same bench run.\n"
    );
    let _ = writeln!(
        md,
        "| section | what | median | min | max | unit | ratio | notes |\n|---|---|---:|---:|---:|---|---|---|"
    );
    for r in &rows {
        let ratio = r
            .ratio
            .map(|x| format!("x{x:.2} of {}", r.ratio_to.as_deref().unwrap_or("?")))
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.section,
            r.name,
            cell(r.median),
            cell(r.min),
            cell(r.max),
            r.unit,
            ratio,
            r.note.replace('|', "/")
        );
    }
    let _ = writeln!(
        md,
        "\n## Targets (issues 6 and 11)\n\n| target | measured | met |\n|---|---|---|"
    );
    for t in &targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let _ = writeln!(md, "| {} | {} | {met} |", t.target, t.measured);
    }

    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let report = Report {
        machine,
        rows,
        targets,
    };
    std::fs::write(
        dir.join("bench.json"),
        serde_json::to_string_pretty(&report).context("serializing")?,
    )
    .context("writing bench.json")?;
    std::fs::write(dir.join("bench.md"), &md).context("writing bench.md")?;

    println!(
        "\n======================== benchmarks ========================\n{} CPUs, {}, kernel {}, \
         commit {}",
        report.machine.nproc, report.machine.cpu, report.machine.kernel, report.machine.commit
    );
    println!(
        "{:<8} {:<50} {:>10} {:>10} {:>10}  {:<13} ratio",
        "section", "what", "median", "min", "max", "unit"
    );
    for r in &report.rows {
        let ratio = r
            .ratio
            .map(|x| format!("x{x:.2} of {}", r.ratio_to.as_deref().unwrap_or("?")))
            .unwrap_or_else(|| {
                if r.median.is_none() {
                    r.note.chars().take(100).collect()
                } else {
                    String::new()
                }
            });
        println!(
            "{:<8} {:<50} {:>10} {:>10} {:>10}  {:<13} {ratio}",
            r.section,
            r.name,
            cell(r.median),
            cell(r.min),
            cell(r.max),
            r.unit
        );
    }
    println!("\ntargets:");
    for t in &report.targets {
        let met = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!("  {:<66} {:<40} {met}", t.target, t.measured);
    }
    println!(
        "\nwritten: {} and {} (notes on every row)",
        dir.join("bench.json").display(),
        dir.join("bench.md").display()
    );
    Ok(())
}
