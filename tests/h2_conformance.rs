#![allow(clippy::unwrap_used)]
//! Runs `tests/h2_conformance.py` (frame-level HTTP/2 conformance and attack cases, Python `h2`
//! package) against a gateway started here with an h2c listener, and fails when the script fails.
//! Skipped, with a message, only when `python3` is not installed; a missing `h2` package is a
//! failure (`.ci/run` installs it).

mod support;

use std::process::Stdio;

use support::{TestGateway, Upstream};

#[tokio::test(flavor = "multi_thread")]
async fn the_h2_conformance_script_passes() {
    if std::process::Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("SKIPPED: python3 is not installed, so tests/h2_conformance.py cannot run");
        return;
    }
    let up = Upstream::start("echo").await;
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\", protocols: [http1, h2c] }}]
server:
  limits:
    h2_max_concurrent_streams: 5
    h2_max_pending_reset_streams: 20
    h2_max_header_list_size: 64KiB
upstreams:
  backend: {{ targets: [{{ url: \"{}\" }}] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: backend }}
",
        up.url()
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    // The floods (CONTINUATION, SETTINGS, PING, rapid reset) must not grow the gateway's memory:
    // this process holds the gateway and the upstream, the script runs outside it.
    let before = vm_kib("VmRSS:");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2_conformance.py");
    let addr = gw.addr.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(addr)
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "tests/h2_conformance.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // The h2→h1 downgrade cases never got a hidden request to the HTTP/1.1 upstream.
    let paths: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.uri.path().to_owned())
        .collect();
    assert!(paths.iter().all(|p| !p.contains("smuggled")), "{paths:?}");
    let peak = vm_kib("VmHWM:");
    println!(
        "peak RSS growth during the h2 cases: {} KiB",
        peak.saturating_sub(before)
    );
    assert!(
        peak.saturating_sub(before) < 64 * 1024,
        "peak RSS grew by {} KiB during the h2 cases",
        peak - before
    );
    // The gateway still serves after every case (the script checks it too; this is the Rust view).
    let (status, _, _) = support::get(&gw.url("/echo")).await;
    assert_eq!(status, 200);
}

/// A `/proc/self/status` field in KiB.
fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
