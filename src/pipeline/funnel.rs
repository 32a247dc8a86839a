//! Where people stop: the engine's funnel through the `metrics` facade
//! (feature `metrics`); without the feature every function here compiles to
//! nothing. Labels are only ever the pipeline's and its steps' names, a
//! flow kind the pipeline declared, and outcome kinds: never an id, a
//! reference, a nonce or anything a user sent. The names are listed in the
//! README; a test holds them.

/// A flow kind fit for a label: one the pipeline declared, else `unknown`
/// (a stored or requested kind is the client's to choose).
pub(crate) fn kind_label<'k>(kinds: &[String], kind: Option<&'k str>) -> &'k str {
    match kind {
        Some(kind) if kinds.iter().any(|known| known == kind) => kind,
        Some(_) => "unknown",
        None => "none",
    }
}

#[cfg(feature = "metrics")]
mod enabled {
    use std::time::Duration;

    fn labels(pipeline: &str, flow: &str) -> [(&'static str, String); 2] {
        [("pipeline", pipeline.to_owned()), ("flow", flow.to_owned())]
    }

    /// A flow started (a restart counts here too).
    pub(crate) fn started(pipeline: &str, flow: &str) {
        metrics::counter!("pipeline_flows_started_total", &labels(pipeline, flow)).increment(1);
    }

    /// An expired flow started again by itself.
    pub(crate) fn restarted(pipeline: &str, flow: &str) {
        metrics::counter!("pipeline_flows_restarted_total", &labels(pipeline, flow)).increment(1);
    }

    /// A step was entered.
    pub(crate) fn entered(pipeline: &str, flow: &str, step: &str) {
        let [pipeline, flow] = labels(pipeline, flow);
        metrics::counter!(
            "pipeline_steps_entered_total",
            &[pipeline, flow, ("step", step.to_owned())]
        )
        .increment(1);
    }

    /// A request of a flow ended at `step` (`None`: before any step ran)
    /// with `outcome`: `answered` (the step's own answer: the flow waits
    /// for the person, or moved on), `replay_answered`, or the
    /// [`FlowError::kind`](super::super::FlowError::kind) it failed with;
    /// and how long its steps took, when a step ran.
    pub(crate) fn request(
        pipeline: &str,
        flow: &str,
        step: Option<&str>,
        outcome: &'static str,
        took: Option<Duration>,
    ) {
        let [pipeline_label, flow] = labels(pipeline, flow);
        let step = ("step", step.unwrap_or("-").to_owned());
        metrics::counter!(
            "pipeline_step_outcomes_total",
            &[
                pipeline_label.clone(),
                flow,
                step.clone(),
                ("outcome", outcome.to_owned())
            ]
        )
        .increment(1);
        if let Some(took) = took {
            metrics::histogram!("pipeline_step_duration_seconds", &[pipeline_label, step])
                .record(took.as_secs_f64());
        }
    }

    /// A flow ended: `finished`, `cancelled`, `failed` or `expired`.
    pub(crate) fn ended(pipeline: &str, flow: &str, how: &'static str) {
        let [pipeline, flow] = labels(pipeline, flow);
        metrics::counter!(
            "pipeline_flows_ended_total",
            &[pipeline, flow, ("how", how.to_owned())]
        )
        .increment(1);
    }

    /// A finished flow's replay was sent where the flow landed.
    pub(crate) fn replay_answered(pipeline: &str, flow: &str) {
        metrics::counter!("pipeline_replays_answered_total", &labels(pipeline, flow)).increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod enabled {
    use std::time::Duration;

    pub(crate) fn started(_: &str, _: &str) {}
    pub(crate) fn restarted(_: &str, _: &str) {}
    pub(crate) fn entered(_: &str, _: &str, _: &str) {}
    pub(crate) fn request(_: &str, _: &str, _: Option<&str>, _: &'static str, _: Option<Duration>) {
    }
    pub(crate) fn ended(_: &str, _: &str, _: &'static str) {}
    pub(crate) fn replay_answered(_: &str, _: &str) {}
}

pub(crate) use enabled::{ended, entered, replay_answered, request, restarted, started};
