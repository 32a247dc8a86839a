//! `cargo bench -p e2e`: see the `e2e` crate's documentation
//! (`e2e/src/lib.rs`) for what it measures and its settings.

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::select! {
            () = e2e::run() => {}
            // The redis-servers are killed by their guards either way.
            _ = tokio::signal::ctrl_c() => eprintln!("interrupted"),
        }
    });
}
