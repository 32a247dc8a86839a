//! Counters and a latency histogram through the `metrics` facade (feature
//! `metrics`); without the feature every function here compiles to nothing.
//! The names and labels are listed in the README; a test holds them.

use crate::store::StoreError;

/// A store operation, the `operation` label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Operation {
    Load,
    Create,
    Update,
    Delete,
    DeleteIfVersion,
}

impl Operation {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::DeleteIfVersion => "delete_if_version",
        }
    }
}

/// What a request found for its flow, the `outcome` label of
/// `pipeline_state_loads_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Found {
    Live,
    Expired,
    Corrupt,
    /// No usable id came with the request: no store command.
    NoId,
}

/// What a request wrote, the `outcome` label of `pipeline_state_writes_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wrote {
    Created,
    Regenerated,
    Updated,
    /// Updated on top of a concurrent writer's newer record.
    Merged,
    Cleared,
}

#[cfg(feature = "metrics")]
mod enabled {
    use std::time::Instant;

    use super::{Found, Operation, StoreError, Wrote};

    pub(crate) fn load(outcome: Found) {
        let outcome = match outcome {
            Found::Live => "loaded",
            Found::Expired => "expired",
            Found::Corrupt => "corrupt",
            Found::NoId => "no_id",
        };
        metrics::counter!("pipeline_state_loads_total", "outcome" => outcome).increment(1);
    }

    pub(crate) fn write(outcome: Wrote) {
        let outcome = match outcome {
            Wrote::Created => "created",
            Wrote::Regenerated => "regenerated",
            Wrote::Updated => "updated",
            Wrote::Merged => "merged",
            Wrote::Cleared => "cleared",
        };
        metrics::counter!("pipeline_state_writes_total", "outcome" => outcome).increment(1);
    }

    pub(crate) fn conflict() {
        metrics::counter!("pipeline_state_conflicts_total").increment(1);
    }

    pub(crate) fn store_failure(operation: Operation, error: &StoreError) {
        metrics::counter!(
            "pipeline_state_store_failures_total",
            "operation" => operation.label(),
            "kind" => error.kind(),
        )
        .increment(1);
    }

    /// Measures one store operation.
    pub(crate) struct Timer(Instant);

    impl Timer {
        pub(crate) fn start() -> Self {
            Self(Instant::now())
        }

        pub(crate) fn record(self, operation: Operation) {
            metrics::histogram!(
                "pipeline_state_store_duration_seconds",
                "operation" => operation.label(),
            )
            .record(self.0.elapsed().as_secs_f64());
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod enabled {
    use super::{Found, Operation, StoreError, Wrote};

    pub(crate) fn load(_: Found) {}
    pub(crate) fn write(_: Wrote) {}
    pub(crate) fn conflict() {}
    pub(crate) fn store_failure(_: Operation, _: &StoreError) {}

    pub(crate) struct Timer;

    impl Timer {
        pub(crate) fn start() -> Self {
            Self
        }

        pub(crate) fn record(self, _: Operation) {}
    }
}

pub(crate) use enabled::{Timer, conflict, load, store_failure, write};
