//! [`lock`]: the one way this crate takes its mutexes.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, poisoned or not. The crate holds its locks only around
/// plain reads and assignments, never around user code or an `await`, so a
/// panic elsewhere cannot leave the data half-changed: a poisoned lock still
/// holds consistent data, and refusing it would turn one panicking handler
/// into failures of every later request.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
