//! CPU and memory of every worker for `herd ls`: one scan of /proc for all apps (a scan
//! per worker made `ls` of 10 apps cost 20 ms), and each worker's CPU time remembered
//! between two `ls`, so CPU is a rate over the time between them (since its start the
//! first time).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::control::protocol::AppInfo;
use crate::observe::procstat;

/// CPU time of each worker when last measured, by pid.
#[derive(Debug, Default)]
pub struct Usage {
    seen: Mutex<HashMap<u32, (Instant, procstat::Sample)>>,
}

impl Usage {
    /// Fills in `cpu_percent` and `memory` of every worker of `apps`.
    pub fn measure(&self, apps: &mut [AppInfo]) {
        let pids: Vec<u32> = apps
            .iter()
            .filter_map(|a| a.status.as_ref())
            .flat_map(|s| s.workers.iter().filter_map(|w| w.pid))
            .collect();
        if pids.is_empty() {
            return;
        }
        let Ok(samples) = procstat::sample_groups(&pids) else {
            return;
        };
        let by_pid: HashMap<u32, procstat::Sample> = pids
            .into_iter()
            .zip(samples)
            .filter_map(|(pid, s)| Some((pid, s?)))
            .collect();
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::with_capacity(by_pid.len());
        for w in apps
            .iter_mut()
            .filter_map(|a| a.status.as_mut())
            .flat_map(|s| s.workers.iter_mut())
        {
            let Some(sample) = w.pid.and_then(|p| by_pid.get(&p)) else {
                continue;
            };
            let pid = w.pid.unwrap_or_default();
            // The first time: since the worker started, from no CPU time.
            let (since, before) = seen.get(&pid).copied().unwrap_or((
                now.checked_sub(Duration::from_millis(w.uptime_ms))
                    .unwrap_or(now),
                procstat::Sample::default(),
            ));
            w.cpu_percent =
                procstat::cpu_percent(&before, sample, now.saturating_duration_since(since));
            w.memory = sample.rss;
            next.insert(pid, (now, *sample));
        }
        // Workers gone since are forgotten.
        *seen = next;
    }
}
