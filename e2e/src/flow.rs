//! The flow every stack keeps, shaped as a real one's (what a wizard or a
//! provider callback holds): a map of 8 answers and a counter.

use std::collections::BTreeMap;

/// How many answers a flow holds; a step replaces one, so it stays this size.
const ANSWERS: u64 = 8;

/// The answers a flow starts with.
pub(crate) fn first_answers() -> BTreeMap<String, String> {
    (0..ANSWERS).map(|i| (question(i), answer(i))).collect()
}

/// What a step does to the state it read: replaces one answer and counts.
/// Answers the new count.
pub(crate) fn step(answers: &mut BTreeMap<String, String>, count: &mut u64) -> u64 {
    *count += 1;
    answers.insert(question(*count), answer(*count));
    *count
}

fn question(n: u64) -> String {
    format!("q{}", n % ANSWERS)
}

fn answer(n: u64) -> String {
    format!("answer {n}")
}
