//! Captures `tracing` output of the current thread, to check what the layer
//! logs. Use with a current-thread runtime so the server's events land here.
//!
//! One global subscriber, installed once, writes each event to the capture
//! of the thread that emitted it, if that thread captures. Not a subscriber
//! per test: tracing caches per call site whether any subscriber listens, and
//! a call site first reached on another test's thread while one test alone
//! captured would be cached as unheard, so that test would miss its events.

use std::{
    cell::RefCell,
    io::Write,
    sync::{Arc, Mutex, Once},
};

use tracing_subscriber::{
    Layer,
    filter::{FilterExt, LevelFilter, dynamic_filter_fn},
    layer::SubscriberExt,
};

/// What one test captured: every event its thread emitted while it
/// captured, formatted one per line.
#[derive(Clone, Debug, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    /// Where events of this thread go, while a test captures.
    static CAPTURE: RefCell<Option<Logs>> = const { RefCell::new(None) };
}

/// Ends this thread's capture when dropped.
#[derive(Debug)]
pub struct Capturing {
    previous: Option<Logs>,
}

impl Drop for Capturing {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CAPTURE.with(|capture| *capture.borrow_mut() = previous);
    }
}

/// Writes to the current thread's capture; nowhere if it has none.
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(logs) = &*capture.borrow() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capturing() -> bool {
    CAPTURE.with(|capture| capture.borrow().is_some())
}

/// Installs the global subscriber, once. Events of threads that do not
/// capture are filtered out before they are formatted.
fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let format = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| ThreadWriter)
            .with_filter(LevelFilter::DEBUG.and(dynamic_filter_fn(|_, _| capturing())));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(format))
            .expect("no other global subscriber in the tests");
    });
    // A call site first reached while the subscriber was being installed
    // may have cached that nobody listens; ask the subscriber again.
    tracing::callsite::rebuild_interest_cache();
}

impl Logs {
    /// Starts capturing on this thread until the guard drops.
    pub fn capture() -> (Self, Capturing) {
        install();
        let logs = Self::default();
        let previous = CAPTURE.with(|capture| capture.borrow_mut().replace(logs.clone()));
        (logs, Capturing { previous })
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The captured lines that contain every one of `parts`.
    pub fn matching(&self, parts: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| parts.iter().all(|part| line.contains(part)))
            .map(str::to_owned)
            .collect()
    }
}
