use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::dataplane::Instance;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub instance: super::InstanceArgs,
    /// Seconds to wait for the controller's answer.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// Asks the running controller to re-read its configuration file (SIGHUP) and reports what
/// it did. Exit status 1 when the new configuration was refused (the old one stays in force).
pub fn main(a: Args) -> anyhow::Result<()> {
    let inst = Instance::new(&a.instance.instance);
    let state = inst.read_state()?;
    if !state.controller_running() {
        bail!(
            "the controller of instance {:?} (pid {}) is not running; start it with `translator run`",
            inst.name,
            state.pid
        );
    }
    let report = inst.run.join("reload.json");
    let before = std::fs::metadata(&report).and_then(|m| m.modified()).ok();
    // SAFETY: plain kill(2) on the recorded controller pid.
    if unsafe { libc::kill(state.pid as i32, libc::SIGHUP) } != 0 {
        bail!(
            "signalling pid {}: {}",
            state.pid,
            std::io::Error::last_os_error()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    loop {
        let now = std::fs::metadata(&report).and_then(|m| m.modified()).ok();
        if now.is_some() && now != before {
            break;
        }
        if Instant::now() > deadline {
            bail!("no answer from the controller within {} s", a.timeout);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&report)
        .with_context(|| format!("reading {}", report.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let message = v["message"].as_str().unwrap_or("").to_owned();
    if v["ok"].as_bool() == Some(true) {
        println!("reloaded: {message}");
        Ok(())
    } else {
        bail!("reload refused, the running configuration stays in force: {message}")
    }
}
