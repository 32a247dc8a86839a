//! The programs the tests run, what to say when one is missing, and where
//! the tests leave files for a person to look at.

use std::path::PathBuf;

/// How to install what the tests need, printed when something is missing.
pub const INSTALL: &str = "run `./scripts/test` from the repository root, which installs what \
     the tests need (Debian packages, through sudo when not root) and runs them; or install by \
     hand as root: `apt-get update && apt-get install -y redis-server redis-tools chromium \
     chromium-driver nodejs npm`, then `npm ci --prefix test-kit/oidc-provider`";

/// A program's path: `$variable`, or `name` found on `PATH`. Missing: the
/// test fails with the install instruction.
pub fn tool(variable: &str, name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(variable) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{variable}={}: no such program; {INSTALL}",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| panic!("`{name}` is not installed: {INSTALL}"))
}

/// The Cargo target directory the running test was built in (`target/`
/// unless `CARGO_TARGET_DIR` says otherwise): test binaries run from
/// `<target>/<profile>/deps/`. Screenshots and logs go there.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("the test binary is in <target>/<profile>/deps/")
        .to_path_buf()
}
