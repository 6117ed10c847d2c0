//! Removing what killed test runs left behind: namespaces named `<tag>-<pid>-<n>` and translator
//! instances named `t<pid>-<n>` (the names this crate makes) whose process no longer exists.
//! Anything whose process is alive, or whose name does not follow the pattern, is left alone.

use std::path::Path;
use std::process::Command;

use crate::cmd::{self, SHORT};

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The pid in `<tag>-<pid>-<n>`.
fn netns_owner(name: &str) -> Option<u32> {
    let mut parts = name.rsplitn(3, '-');
    let n = parts.next()?;
    let pid = parts.next()?;
    let tag = parts.next()?;
    if tag.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// The pid in `t<pid>-<n>`.
fn instance_owner(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix('t')?.split_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Deletes stale namespaces (killing what still runs in them) and takes stale instances down
/// with `translator` (when a binary is given). Returns what it removed.
pub fn sweep_stale(translator: Option<&Path>) -> Vec<String> {
    let mut removed = Vec::new();
    if let Some(bin) = translator
        && let Ok(entries) = std::fs::read_dir("/sys/fs/bpf/translator")
    {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if instance_owner(&name).is_some_and(|pid| !pid_alive(pid))
                && cmd::run_cleanup(Command::new(bin).args(["down", "--instance", &name]), SHORT)
                    .is_ok()
            {
                removed.push(format!("instance {name}"));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if netns_owner(&name).is_none_or(pid_alive) {
                continue;
            }
            if let Ok(o) =
                cmd::run_cleanup(Command::new("ip").args(["netns", "pids", &name]), SHORT)
            {
                for pid in o.stdout_str().split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // SAFETY: kill(2) has no memory-safety preconditions.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            if cmd::run_cleanup(Command::new("ip").args(["netns", "del", &name]), SHORT).is_ok() {
                removed.push(format!("namespace {name}"));
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::{instance_owner, netns_owner};

    #[test]
    fn reads_owners_from_names() {
        assert_eq!(netns_owner("ping-cli-1234-0"), Some(1234));
        assert_eq!(netns_owner("demo-gw-99-12"), Some(99));
        assert_eq!(netns_owner("dbgc"), None);
        assert_eq!(netns_owner("fx-13367"), None);
        assert_eq!(netns_owner("a-b-c"), None);
        assert_eq!(instance_owner("t8068-2"), Some(8068));
        assert_eq!(instance_owner("demo"), None);
        assert_eq!(instance_owner("test-1"), None);
    }
}
