//! [`Running`]: which step a request is running, shared by the steps that
//! [`Flow::next`](super::Flow::next) chains and the nested runs that
//! [`Flow::nest`](super::Flow::nest) enters, so a failure names where it
//! came from.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::InnerStep;
use crate::lock::lock;

/// Which step runs: the outer pipeline's step index (`None`: none yet, or
/// the finish hook), and the nested run's step when a step nests one; and
/// since when the request's steps run, for the funnel's step latency.
#[derive(Clone, Debug)]
pub(crate) struct Running(Arc<Mutex<Current>>);

#[derive(Debug)]
struct Current {
    step: Option<usize>,
    inner: Option<InnerStep>,
    started: Instant,
}

impl Default for Running {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Current {
            step: None,
            inner: None,
            started: Instant::now(),
        })))
    }
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, Current> {
        lock(&self.0)
    }

    /// The outer pipeline's step `index` runs (`None`: its finish hook).
    pub(crate) fn enter(&self, index: Option<usize>) {
        self.lock().step = index;
    }

    /// How long the request's steps have run.
    pub(crate) fn elapsed(&self) -> Duration {
        self.lock().started.elapsed()
    }

    /// The index of the outer step running, if one is.
    pub(crate) fn step(&self) -> Option<usize> {
        self.lock().step
    }

    /// Inner pipeline `pipeline` runs `step` (`None`: checking the run, or
    /// past its last step).
    pub(crate) fn enter_inner(&self, pipeline: &str, step: Option<&str>) {
        self.lock().inner = Some(InnerStep {
            pipeline: pipeline.to_owned(),
            step: step.map(str::to_owned),
        });
    }

    /// The nested run's step answered: no inner step runs any more.
    pub(crate) fn leave_inner(&self) {
        self.lock().inner = None;
    }

    /// The nested run's step running, if one is.
    pub(crate) fn inner(&self) -> Option<InnerStep> {
        self.lock().inner.clone()
    }
}
