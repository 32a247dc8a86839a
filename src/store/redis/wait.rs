//! [`Durability`]: how many replicas must acknowledge a write, and how long
//! `WAIT` may wait for them.

use std::time::Duration;

/// How many replicas must acknowledge a write, and how long to wait for
/// them (`WAIT replicas timeout`); set with
/// [`PipelineStateLayer::durability`](crate::PipelineStateLayer::durability).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Durability {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

impl Durability {
    /// `WAIT`'s timeout in whole milliseconds, at least 1 (0 would block
    /// forever).
    pub(super) fn millis(self) -> u64 {
        let millis = self.timeout.as_millis()
            + u128::from(!self.timeout.subsec_nanos().is_multiple_of(1_000_000));
        u64::try_from(millis).unwrap_or(u64::MAX).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_timeouts_round_up_to_whole_milliseconds_and_never_reach_zero() {
        let millis = |timeout| {
            Durability {
                replicas: 1,
                timeout,
            }
            .millis()
        };
        assert_eq!(millis(Duration::from_millis(250)), 250);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::from_nanos(1)), 1);
    }
}
