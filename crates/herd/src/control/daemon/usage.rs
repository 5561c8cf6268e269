//! CPU and memory of every worker for `herd ls`: the driver's [`Usage`] over every app's
//! workers, kept for the daemon's life so CPU is a rate between two `ls`.

use crate::control::protocol::AppInfo;

/// CPU time of each worker when last measured.
#[derive(Debug, Default)]
pub struct Usage(crate::driver::status::Usage);

impl Usage {
    /// Fills in `cpu_percent` and `memory` of every worker of `apps`.
    pub fn measure(&self, apps: &mut [AppInfo]) {
        self.0.measure(
            apps.iter_mut()
                .filter_map(|a| a.status.as_mut())
                .flat_map(|s| s.workers.iter_mut()),
        );
    }
}
