//! `Router::find` among 1,000 routes, against an exact-path `HashMap` lookup.
//!
//! Run with `cargo bench -p fnhost-benches --bench route`; set
//! `FNHOST_BENCH_QUICK=1` for a smoke run.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use fnhost_benches::{format_duration, iterations, measure, report};
use fnhost_core::route::{Method, MethodSet, RouteMatch, RouteTemplate, RouterBuilder};

const SERVICES: usize = 250;

fn main() {
    let get = MethodSet::from(Method::Get);
    let templates: Vec<(String, MethodSet)> = (0..SERVICES)
        .flat_map(|i| {
            [
                (format!("api/svc{i}/items/{{id:int}}"), get),
                (format!("api/svc{i}/items"), get.with(Method::Post)),
                (format!("api/svc{i}/{{name}}/detail"), get),
                (format!("api/svc{i}/files/{{*path}}"), get),
            ]
        })
        .collect();

    let started = Instant::now();
    let mut builder = RouterBuilder::new();
    for (i, (text, methods)) in templates.iter().enumerate() {
        let template = RouteTemplate::parse(text).expect("benchmark templates parse");
        builder
            .add(template, *methods, i)
            .expect("benchmark routes do not conflict");
    }
    let router = builder.build();
    println!(
        "built a router of {} routes in {}",
        router.len(),
        format_duration(started.elapsed())
    );

    // A mix of matching paths over all route shapes and many services.
    let paths: Vec<String> = (0..64)
        .map(|k| {
            let svc = (k * 37) % SERVICES;
            match k % 4 {
                0 => format!("/api/svc{svc}/items/{}", k * 1000 + 7),
                1 => format!("/API/Svc{svc}/Items"),
                2 => format!("/api/svc{svc}/Widget-{k}/detail/"),
                _ => format!("/api/svc{svc}/files/docs/2024/report-{k}.pdf"),
            }
        })
        .collect();
    for p in &paths {
        assert!(
            matches!(router.find(Method::Get, p), RouteMatch::Matched { .. }),
            "{p} should match"
        );
    }

    // Baseline: the cheapest conceivable exact lookup, lower-casing the path
    // and probing a HashMap of every benchmark path.
    let exact: HashMap<String, usize> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.to_ascii_lowercase(), i))
        .collect();

    let iters = iterations(2_000_000);
    let mut k = 0usize;
    let find = measure("Router::find, 1000 routes", iters, || {
        let p = &paths[k % paths.len()];
        k = k.wrapping_add(1);
        black_box(router.find(Method::Get, black_box(p)));
    });
    let mut k = 0usize;
    let baseline = measure("HashMap<String, usize> exact lookup", iters, || {
        let p = &paths[k % paths.len()];
        k = k.wrapping_add(1);
        black_box(exact.get(&black_box(p).to_ascii_lowercase()));
    });
    // The literal-only fast path, for reference.
    let literal: Vec<&String> = paths.iter().skip(1).step_by(4).collect();
    let mut k = 0usize;
    measure("Router::find, literal-only route", iters, || {
        let p = literal[k % literal.len()];
        k = k.wrapping_add(1);
        black_box(router.find(Method::Get, black_box(p)));
    });
    let mut k = 0usize;
    measure("Router::find, no match (404)", iters, || {
        k = k.wrapping_add(1);
        black_box(router.find(Method::Get, black_box("/api/nosuch/items/1")));
    });

    println!();
    report(
        "Router::find per match (1000 routes)",
        find,
        "HashMap exact-path lookup",
        baseline,
        Duration::from_micros(1),
    );
}
