//! In-process reload timing: `reload_file` on the 10,000-route config that `bench/reload`
//! generates, each time with every route path rewritten (`full`) or with 1 % of the routes
//! changed (`gitops`, a typical GitOps diff). Prints timings, asserts nothing.
//!
//! `cargo bench --bench reload` (env `RELOAD_ITERS`, default 20; `RELOAD_MODE` = `full`,
//! `gitops` or `both`). For instruction counts, build with `--profile profiling` and run the
//! binary under `valgrind --tool=callgrind` with `RELOAD_ITERS=3`.
#![allow(missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

/// Same allocator as the `gantry` binary, so the numbers are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUTES: usize = 10_000;

/// The config of `bench/reload`: route `i` has path `/v{version}/items{i}/{id}`; with
/// `changed_every` = 100, only every 100th route gets the new version (1 % of the routes).
fn config(version: usize, changed_every: usize) -> String {
    let mut text = String::with_capacity(ROUTES * 100);
    text.push_str(
        "version: 1\nlisteners:\n  - { name: public, address: \"127.0.0.1:18103\" }\n\
         admin: { address: \"127.0.0.1:18190\" }\nserver: { worker_threads: 1 }\n\
         observability: { access_log: { format: off } }\nupstreams:\n  \
         backend: { targets: [{ url: \"http://127.0.0.1:18100\" }], pool: { max_idle_per_target: 1024 } }\n\
         routes:\n  - { name: all, match: { path_prefix: / }, upstream: backend }\n",
    );
    for i in 0..ROUTES {
        let v = if i % changed_every == 0 { version } else { 0 };
        text.push_str(&format!(
            "  - {{ name: r{i}, match: {{ hosts: [h{}.example.com], path: \"/v{v}/items{i}/{{id}}\" }}, upstream: backend }}\n",
            i % 100
        ));
    }
    text
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run(mode: &str, changed_every: usize, iters: usize, dir: &Path) {
    let path = dir.join(format!("reload-{mode}.yaml"));
    std::fs::write(&path, config(0, changed_every)).expect("write");
    let mut current = gantry::config::load_file(&path).expect("the config loads");
    let mut times = Vec::with_capacity(iters);
    for n in 1..=iters {
        std::fs::write(&path, config(n, changed_every)).expect("write");
        let started = Instant::now();
        let next = gantry::config::reload_file(&path, Some(&current.runtime)).expect("reload");
        times.push(started.elapsed());
        // Like the gateway: the old snapshot is freed off the reload path.
        let old = std::mem::replace(&mut current, next);
        std::thread::spawn(move || drop(old));
    }
    let first: Vec<String> = times
        .iter()
        .take(3)
        .map(|t| format!("{:.1}", millis(*t)))
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    if let (Some(min), Some(max)) = (sorted.first(), sorted.last()) {
        println!(
            "{mode}: first 3 [{}] ms; median {:.1} ms (min {:.1}, max {:.1}, n={iters})",
            first.join(", "),
            millis(sorted[sorted.len() / 2]),
            millis(*min),
            millis(*max)
        );
    }
}

fn main() {
    let iters = std::env::var("RELOAD_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mode = std::env::var("RELOAD_MODE").unwrap_or_else(|_| "both".to_owned());
    let dir = std::env::temp_dir().join(format!("gantry-reload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    if mode == "full" || mode == "both" {
        run("full", 1, iters, &dir);
    }
    if mode == "gitops" || mode == "both" {
        run("gitops", 100, iters, &dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
