//! CPU time from Linux's per-thread scheduler statistics
//! (`/proc/<pid>/task/*/schedstat`): wall-clock figures on a shared machine
//! move with everyone else's load, CPU time per request much less.

use std::time::Duration;

/// The CPU time all threads of process `pid` have run (`self` for this
/// one). Zero where `/proc` has no scheduler statistics.
pub(crate) fn cpu_time(pid: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

pub(crate) fn cpu_times(redis_pids: &[String]) -> (Duration, Duration) {
    (
        cpu_time("self"),
        redis_pids.iter().map(|pid| cpu_time(pid)).sum(),
    )
}

/// The process id of the redis-server at `admin`.
pub(crate) fn process_id(admin: &mut redis::Connection) -> String {
    let info: String = redis::cmd("INFO").arg("server").query(admin).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .expect("INFO server names the process id")
        .trim()
        .to_owned()
}
