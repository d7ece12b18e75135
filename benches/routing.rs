//! Route matching and compiling on a 10,000-route table (100 hosts × 100 param paths), and loading
//! a 10,000-route config file (parse, validate, compile). `cargo bench --bench routing`.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gantry::router::{Lookup, PathPattern, RequestView, RouteSpec, Router};
use http::{HeaderMap, Method};

const HOSTS: usize = 100;
const PATHS: usize = 100;

fn specs() -> Vec<RouteSpec<usize>> {
    let mut specs = Vec::with_capacity(HOSTS * PATHS);
    for h in 0..HOSTS {
        for p in 0..PATHS {
            specs.push(RouteSpec {
                hosts: vec![format!("h{h}.example.com")],
                path: PathPattern::Template(format!("/api/v{}/items{p}/{{id}}", p % 7)),
                methods: vec![Method::GET],
                headers: Vec::new(),
                query: Vec::new(),
                value: h * PATHS + p,
            });
        }
    }
    specs
}

fn config_file() -> String {
    let mut text = String::from(
        "version: 1\nlisteners:\n  - { name: public, address: \"127.0.0.1:0\" }\n\
         upstreams:\n  u:\n    targets: [{ url: \"http://127.0.0.1:9\" }]\nroutes:\n",
    );
    for h in 0..HOSTS {
        for p in 0..PATHS {
            text.push_str(&format!(
                "  - {{ name: r{h}-{p}, match: {{ hosts: [h{h}.example.com], path: \"/api/v{}/items{p}/{{id}}\" }}, upstream: u }}\n",
                p % 7
            ));
        }
    }
    text
}

fn routing(c: &mut Criterion) {
    let router = Router::build(specs()).unwrap_or_else(|_| panic!("the table builds"));
    let headers = HeaderMap::new();
    let method = Method::GET;
    c.bench_function("match one of 10k routes", |b| {
        b.iter(|| {
            let view = RequestView {
                host: black_box("h57.example.com"),
                path: black_box("/api/v3/items73/12345"),
                method: &method,
                headers: &headers,
                query: None,
            };
            match router.lookup(&view) {
                Lookup::Matched { value, .. } => black_box(*value),
                _ => panic!("no match"),
            }
        });
    });
    c.bench_function("miss among 10k routes (404)", |b| {
        b.iter(|| {
            let view = RequestView {
                host: black_box("h57.example.com"),
                path: black_box("/nothing/here"),
                method: &method,
                headers: &headers,
                query: None,
            };
            black_box(matches!(router.lookup(&view), Lookup::NotFound))
        });
    });
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.bench_function("compile a 10k-route table", |b| {
        b.iter_batched(
            specs,
            |s| black_box(Router::build(s).is_ok()),
            criterion::BatchSize::LargeInput,
        );
    });
    let text = config_file();
    group.bench_function("load a 10k-route config (parse, validate, compile)", |b| {
        b.iter(|| {
            black_box(gantry::config::load_str_with_env("bench.yaml", &text, &|_| None).is_ok())
        });
    });
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
