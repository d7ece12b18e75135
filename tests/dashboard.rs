#![allow(clippy::unwrap_used)]
//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) loads `/dashboard`
//! while traffic runs, and the rendered page must show the routes' numbers, the targets' states,
//! the config version and the recent errors with their request ids, and the numbers must change
//! as traffic goes on. Skips (with a message) when Chromium is not installed:
//! `apt-get install -y chromium` (`.ci/run` installs it and sets `GANTRY_REQUIRE_BROWSER`, which
//! turns the skip into a failure).
//! `GANTRY_DASHBOARD_SCREENSHOT=docs/dashboard.png` also saves a screenshot.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::{TestGateway, Upstream, http1_client};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `url` with `extra` flags (the JS runs for 4 s of virtual time).
fn chromium(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text of the `<td class="num total">` of `route` in the routes table.
fn route_total(dom: &str, route: &str) -> Option<u64> {
    let row_start = dom.find(&format!("<td>{route}</td>"))?;
    let row = &dom[row_start..];
    let row = &row[..row.find("</tr>")?];
    let marker = "<td class=\"num total\">";
    let at = row.find(marker)? + marker.len();
    row[at..].split('<').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_numbers_targets_and_errors() {
    if !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("GANTRY_REQUIRE_BROWSER").is_none(),
            "{CHROMIUM} is required here (GANTRY_REQUIRE_BROWSER is set; .ci/run installs it)"
        );
        eprintln!("SKIPPED: {CHROMIUM} is not installed (apt-get install -y chromium)");
        return;
    }
    let app = Upstream::start("app").await;
    let dead = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr
    };
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
admin: {{ address: \"127.0.0.1:0\" }}
observability: {{ access_log: {{ format: off }} }}
upstreams:
  app:
    targets: [{{ url: \"{}\" }}]
  gone:
    targets: [{{ url: \"http://{dead}\" }}]
    health_check:
      passive: {{ consecutive_failures: 1, eject_for: 1h, max_ejected_percent: 100 }}
routes:
  - {{ name: users, match: {{ path_prefix: /users }}, upstream: app }}
  - {{ name: broken, match: {{ path_prefix: /broken }}, upstream: gone }}
",
        app.url()
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let admin = gw.gateway().admin_addr().unwrap();
    let client = http1_client();
    let (status, headers, _) = client.get(&gw.url("/broken/1")).await;
    assert_eq!(status, 502);
    let failed_id = headers["x-request-id"].to_str().unwrap().to_owned();

    // Traffic runs while the browser looks.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = Arc::clone(&stop);
        let url = gw.url("/users/1");
        tokio::spawn(async move {
            let client = http1_client();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(client.get(&url).await.0, 200);
                sent += 1;
            }
            sent
        })
    };
    while client.get(&gw.url("/users/warm")).await.0 != 200 {}
    let url = format!("http://{admin}/dashboard");
    let first = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || chromium(&url, &["--dump-dom".to_owned()]))
            .await
            .unwrap()
    };
    let second = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || chromium(&url, &["--dump-dom".to_owned()]))
            .await
            .unwrap()
    };
    if let Ok(path) = std::env::var("GANTRY_DASHBOARD_SCREENSHOT") {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            chromium(
                &url,
                &[
                    format!("--screenshot={path}"),
                    "--window-size=1280,900".to_owned(),
                    "--hide-scrollbars".to_owned(),
                ],
            )
        })
        .await
        .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(traffic.await.unwrap() > 0);

    let version = gw.gateway().status().version;
    assert!(
        first.contains(&version[..16]),
        "config version shown:\n{first}"
    );
    assert!(
        first.contains("class=\"ok\">live"),
        "the page is polling:\n{first}"
    );
    let before = route_total(&first, "users").expect("the users route has a row");
    let after = route_total(&second, "users").expect("the users route has a row");
    assert!(before > 0, "{first}");
    assert!(
        after > before,
        "numbers change as traffic runs: {before} then {after}"
    );
    assert!(second.contains("<td>broken</td>"));
    // Targets with their states: the dead one is ejected, the live one is not.
    assert!(second.contains(&format!("<td>{dead}</td>")), "{second}");
    assert!(
        second.contains("<td class=\"bad\">ejected</td>"),
        "{second}"
    );
    assert!(second.contains(&format!("<td>{}</td>", app.addr())));
    // The recent error with its request id.
    assert!(second.contains(&failed_id), "{second}");
    assert!(second.contains("<td>upstream-unreachable</td>"), "{second}");
}
