//! The tests that load the machine or depend on a pause or a timeout run one
//! at a time, whichever module they are in: they share one binary and two
//! cores, and one test's load must not push another's requests past a
//! timeout.

pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
