//! `cargo bench -p e2e --bench instructions`: instructions per request under
//! callgrind; see `e2e/src/instructions.rs`.

fn main() {
    e2e::instructions::run(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
}
