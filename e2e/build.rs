//! The limit sends the crate's own compare-and-set script, read where the
//! crate keeps it: the one place that names the path.

use std::path::Path;

/// The script, from this package's directory.
const SCRIPT: &str = "../src/store/redis/compare_and_set.lua";

fn main() {
    println!("cargo::rerun-if-changed={SCRIPT}");
    let path = Path::new(SCRIPT).canonicalize().unwrap_or_else(|error| {
        panic!(
            "the crate's compare-and-set script is not at {SCRIPT} ({error}): \
             point SCRIPT in e2e/build.rs at where it moved"
        )
    });
    println!("cargo::rustc-env=COMPARE_AND_SET_LUA={}", path.display());
}
