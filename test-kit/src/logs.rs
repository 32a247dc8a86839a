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
/// captured, at every level, formatted one per line; and every span that
/// closed on it, with the fields it had then.
#[derive(Clone, Debug, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>, Arc<Mutex<Vec<ClosedSpan>>>);

/// A span as it closed: its name and the fields recorded on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClosedSpan {
    /// The span's name.
    pub name: String,
    /// Its fields, by name, as text (`Empty` ones never recorded are
    /// absent).
    pub fields: std::collections::BTreeMap<String, String>,
}

/// Keeps each span's fields as they are recorded, and hands the span to
/// the capture of the thread it closes on.
struct SpanFields;

/// Writes fields into a [`ClosedSpan`].
struct Visitor<'a>(&'a mut ClosedSpan);

impl tracing::field::Visit for Visitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0
            .fields
            .insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .fields
            .insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for SpanFields
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut span = ClosedSpan {
            name: attrs.metadata().name().to_owned(),
            ..ClosedSpan::default()
        };
        attrs.record(&mut Visitor(&mut span));
        if let Some(entry) = ctx.span(id) {
            entry.extensions_mut().insert(span);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(entry) = ctx.span(id)
            && let Some(span) = entry.extensions_mut().get_mut::<ClosedSpan>()
        {
            values.record(&mut Visitor(span));
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(entry) = ctx.span(&id) else { return };
        let Some(span) = entry.extensions_mut().remove::<ClosedSpan>() else {
            return;
        };
        CAPTURE.with(|capture| {
            if let Some(logs) = &*capture.borrow() {
                logs.1.lock().unwrap().push(span);
            }
        });
    }
}

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
        // Every level: a test that no line carries a secret must see the
        // lines nobody reads by default too.
        let format = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| ThreadWriter)
            .with_filter(LevelFilter::TRACE.and(dynamic_filter_fn(|_, _| capturing())));
        let spans = SpanFields.with_filter(dynamic_filter_fn(|_, _| capturing()));
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(format).with(spans),
        )
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

    /// The spans named `name` that closed while this test captured, in
    /// the order they closed.
    pub fn spans(&self, name: &str) -> Vec<ClosedSpan> {
        self.1
            .lock()
            .unwrap()
            .iter()
            .filter(|span| span.name == name)
            .cloned()
            .collect()
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
