#![allow(clippy::unwrap_used)]
//! Config as code: reloads under load, listener and route changes, the file watcher, the admin API.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use support::{RawConn, TestGateway, Upstream, empty, h2_client, http1_client};

const TOKEN: &str = "admin-secret-token";

/// Version `n` of a config: `/probe` goes to upstream `a` when n is even, `b` when odd, rewritten
/// to `/probe/{n}`, so every response names the one config that routed it. `/extra-{n}` exists
/// only in version n. `extra_listener` adds a second listener.
fn config(n: usize, a: &Upstream, b: &Upstream, extra_listener: bool) -> String {
    let upstream = if n.is_multiple_of(2) { "up-a" } else { "up-b" };
    let second = if extra_listener {
        "  - { name: second, address: \"127.0.0.1:0\" }\n"
    } else {
        ""
    };
    format!(
        "version: 1
listeners:
  - {{ name: public, address: \"127.0.0.1:0\", protocols: [http1, h2c] }}
{second}admin:
  address: \"127.0.0.1:0\"
  token: {TOKEN}
observability:
  access_log: {{ format: off }}
upstreams:
  up-a:
    targets: [{{ url: \"{}\", weight: {} }}]
  up-b:
    targets: [{{ url: \"{}\" }}]
routes:
  - {{ name: probe, match: {{ path: /probe }}, upstream: {upstream}, rewrite: {{ path: /probe/{n} }} }}
  - {{ name: extra-{n}, match: {{ path: /extra-{n} }}, upstream: up-a }}
  - {{ name: gate, match: {{ path_prefix: /gate }}, upstream: up-b }}
",
        a.url(),
        n % 5 + 1,
        b.url(),
    )
}

/// A config that fails validation (unknown upstream) at a known line.
fn invalid_config(a: &Upstream, b: &Upstream) -> String {
    config(0, a, b, false).replace("upstream: up-a }\n", "upstream: up-z }\n")
}

/// Writes the config atomically (write, then rename), as editors and ConfigMaps do.
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn admin(
    gw: &TestGateway,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> support::Collected {
    let addr = gw.gateway().admin_addr().unwrap();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    http1_client().fetch(request.body(empty()).unwrap()).await
}

async fn start(dir: &tempfile::TempDir, text: &str) -> (TestGateway, std::path::PathBuf) {
    let path = dir.path().join("gantry.yaml");
    write_config(&path, text);
    (TestGateway::start_file(&path).await, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_load_lose_no_request_and_never_mix_configs() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let (gw, path) = start(&dir, &config(0, &a, &b, false)).await;
    let url = gw.url("/probe");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..6 {
        // Four HTTP/1.1 keep-alive clients and two h2 clients.
        let client = if i < 4 { http1_client() } else { h2_client() };
        let (stop, ok, url) = (Arc::clone(&stop), Arc::clone(&ok), url.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let request = Request::get(&url).body(empty()).unwrap();
                match client.send(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let body = support::collect(response).await;
                        match body {
                            Ok(body) if status == 200 => {
                                let echo = body.json();
                                let path = echo["path"].as_str().unwrap().to_owned();
                                let version: usize =
                                    path.trim_start_matches("/probe/").parse().unwrap();
                                let expected = if version.is_multiple_of(2) { "a" } else { "b" };
                                if echo["upstream"] != expected {
                                    failures.push(format!(
                                        "mixed: {path} served by {}",
                                        echo["upstream"]
                                    ));
                                }
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures
                                .push(format!("status {status}: {:?}", other.map(|b| b.text()))),
                        }
                    }
                    Err(err) => failures.push(format!("transport: {err}")),
                }
            }
            failures
        }));
    }

    let mut versions_seen = std::collections::BTreeSet::new();
    for n in 1..=100 {
        if n % 5 == 0 {
            // 20 invalid configs interleaved: rejected with located errors, traffic unaffected.
            write_config(&path, &invalid_config(&a, &b));
            let rejected = admin(&gw, "POST", "/admin/reload", Some(TOKEN)).await;
            assert_eq!(rejected.status, 400, "{}", rejected.text());
            let problem = rejected.json();
            assert_eq!(problem["type"], "urn:gantry:problem:invalid-config");
            let first = problem["errors"][0].as_str().unwrap();
            assert!(
                first.contains("gantry.yaml:") && first.contains("unknown upstream \"up-z\""),
                "{first}"
            );
        }
        write_config(&path, &config(n, &a, &b, false));
        let applied = admin(&gw, "POST", "/admin/reload", Some(TOKEN)).await;
        assert_eq!(applied.status, 200, "{}", applied.text());
        versions_seen.insert(applied.json()["version"].as_str().unwrap().to_owned());
        // The route of this version answers at once; the previous version's extra route is gone.
        let (status, _, _) = http1_client().get(&gw.url(&format!("/extra-{n}"))).await;
        assert_eq!(status, 200);
        let (status, _, _) = http1_client()
            .get(&gw.url(&format!("/extra-{}", n - 1)))
            .await;
        assert_eq!(status, 404);
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "load kept flowing during reloads"
    );
    assert_eq!(versions_seen.len(), 100);
    let status = gw.gateway().status();
    assert_eq!(status.reloads_succeeded, 100);
    assert_eq!(status.reloads_failed, 20);
    assert!(status.last_error.is_none());
    // Connections to the unchanged upstream `b` were carried over, not rebuilt per reload.
    assert!(
        b.connection_count() < 20,
        "b saw {} connections",
        b.connection_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_added_by_reload_serves_and_existing_connections_survive() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let (gw, path) = start(&dir, &config(0, &a, &b, false)).await;

    // A keep-alive connection opened before the reload.
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /probe HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        conn.read_response().await.unwrap().json()["path"],
        "/probe/0"
    );

    write_config(&path, &config(1, &a, &b, true));
    let applied = admin(&gw, "POST", "/admin/reload", Some(TOKEN)).await;
    assert_eq!(applied.status, 200);
    let second = gw
        .gateway()
        .addr("second")
        .expect("the new listener is bound");
    let (status, _, body) = http1_client().get(&format!("http://{second}/probe")).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["path"],
        "/probe/1"
    );

    // The old connection still works, and now sees the new config.
    conn.send(b"GET /probe HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        conn.read_response().await.unwrap().json()["path"],
        "/probe/1"
    );

    // Removing the listener again closes it for new connections.
    write_config(&path, &config(2, &a, &b, false));
    assert_eq!(
        admin(&gw, "POST", "/admin/reload", Some(TOKEN))
            .await
            .status,
        200
    );
    assert!(gw.gateway().addr("second").is_none());
    let mut refused = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(second).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the removed listener kept accepting");
}

/// Whether `path` answers 200 within 10 s (polled every 10 ms): a reload the watcher applies.
async fn served_within_10s(gw: &TestGateway, path: &str) -> bool {
    for _ in 0..1000 {
        let (status, _, _) = http1_client().get(&gw.url(path)).await;
        if status == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// The watcher's own read of the file is an open: counted as a change, it made every check
/// trigger the next, and the file was read every `debounce` for as long as the gateway ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_does_not_read_an_unchanged_file_again_and_again() {
    use notify::Watcher;
    use notify::event::{AccessKind, EventKind};

    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let (gw, path) = start(&dir, &config(0, &a, &b, false)).await;
    gw.gateway()
        .watch_config_file(Duration::from_millis(20))
        .unwrap();
    // Our own inotify watch counts every open of the config file, by anyone.
    let opens = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&opens);
    let name = path.file_name().unwrap().to_owned();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && matches!(event.kind, EventKind::Access(AccessKind::Open(_)))
            && event.paths.iter().any(|p| p.file_name() == Some(&name))
        {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    })
    .unwrap();
    watcher
        .watch(dir.path(), notify::RecursiveMode::NonRecursive)
        .unwrap();
    // Twenty debounce periods of quiet.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        opens.load(Ordering::SeqCst),
        0,
        "the gateway kept opening its unchanged config file"
    );
    // A real change is still seen, read and applied.
    write_config(&path, &config(7, &a, &b, false));
    assert!(
        served_within_10s(&gw, "/extra-7").await,
        "the watcher never applied the new file"
    );
    assert!(opens.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_change_is_reloaded_by_the_watcher() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let (gw, path) = start(&dir, &config(0, &a, &b, false)).await;
    gw.gateway()
        .watch_config_file(Duration::from_millis(50))
        .unwrap();
    write_config(&path, &config(7, &a, &b, false));
    assert!(
        served_within_10s(&gw, "/extra-7").await,
        "the watcher never applied the new file"
    );
    // An invalid file is rejected and the running config keeps serving.
    write_config(&path, &invalid_config(&a, &b));
    for _ in 0..1000 {
        if gw.gateway().status().reloads_failed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.gateway().status().reloads_failed, 1);
    let (status, _, _) = http1_client().get(&gw.url("/extra-7")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_shows_the_running_config() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let (gw, _path) = start(&dir, &config(0, &a, &b, false)).await;

    for path in [
        "/admin/config",
        "/admin/routes",
        "/admin/upstreams",
        "/admin/status",
        "/admin/openapi.json",
    ] {
        let denied = admin(&gw, "GET", path, None).await;
        assert_eq!(denied.status, 401, "{path}");
        assert_eq!(denied.headers["content-type"], "application/problem+json");
        assert_eq!(denied.headers["www-authenticate"], "Bearer");
        assert_eq!(
            admin(&gw, "GET", path, Some("wrong")).await.status,
            401,
            "{path}"
        );
        assert_eq!(
            admin(&gw, "GET", path, Some(TOKEN)).await.status,
            200,
            "{path}"
        );
    }
    // Probes and metrics need no token.
    assert_eq!(admin(&gw, "GET", "/healthz", None).await.status, 200);
    let ready = admin(&gw, "GET", "/readyz", None).await;
    assert_eq!(ready.status, 200);
    let version = ready.json()["version"].as_str().unwrap().to_owned();
    let metrics = admin(&gw, "GET", "/metrics", None).await.text();
    assert!(
        metrics.contains(&format!("gantry_config_info{{version=\"{version}\"}} 1")),
        "{metrics}"
    );
    assert!(metrics.contains("gantry_config_reloads_total{result=\"success\"} 0"));

    let config = admin(&gw, "GET", "/admin/config", Some(TOKEN)).await;
    assert_eq!(config.json()["config"]["admin"]["token"], "REDACTED");
    assert!(!config.text().contains(TOKEN));
    let routes = admin(&gw, "GET", "/admin/routes", Some(TOKEN)).await.json();
    assert_eq!(routes[0]["name"], "probe");
    assert_eq!(routes[0]["upstream"], "up-a");
    let upstreams = admin(&gw, "GET", "/admin/upstreams", Some(TOKEN))
        .await
        .json();
    assert_eq!(upstreams[0]["name"], "up-a");
    assert_eq!(upstreams[0]["targets"][0]["target"], a.addr().to_string());
    assert_eq!(upstreams[0]["targets"][0]["in_flight"], 0);

    let wrong_method = admin(&gw, "GET", "/admin/reload", Some(TOKEN)).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["allow"], "POST");
    assert_eq!(
        admin(&gw, "GET", "/admin/nothing", Some(TOKEN))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn the_admin_config_shows_tls_file_paths_and_still_hides_the_token() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::tls::TestCa::new("Gantry Test CA")
        .server(&["localhost"])
        .write(dir.path(), "site");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let text = config(0, &a, &b, false).replace(
        "listeners:\n",
        &format!(
            "listeners:\n  - {{ name: secure, address: \"127.0.0.1:0\", tls: {{ certificates: [{{ cert: \"{cert}\", key: \"{key}\" }}] }} }}\n"
        ),
    );
    let (gw, _path) = start(&dir, &text).await;
    let shown = admin(&gw, "GET", "/admin/config", Some(TOKEN)).await;
    assert_eq!(shown.status, 200);
    let certificate = &shown.json()["config"]["listeners"][0]["tls"]["certificates"][0];
    assert_eq!(certificate["cert"], cert.as_str());
    assert_eq!(certificate["key"], key.as_str());
    assert_eq!(shown.json()["config"]["admin"]["token"], "REDACTED");
    assert!(!shown.text().contains(TOKEN));
    assert!(!shown.text().contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_draining_and_in_flight_requests_finish() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let (gw, _path) = start(&dir, &config(0, &a, &b, false)).await;
    let admin_addr = gw.gateway().admin_addr().unwrap();
    // A request held in flight by the upstream while the gateway shuts down.
    let in_flight = http1_client()
        .send(Request::get(gw.url("/gate/drain")).body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(in_flight.status(), 200);
    let gateway = gw.gateway().clone();
    let shutdown = tokio::spawn(async move { gateway.shutdown().await });
    let mut draining = false;
    for _ in 0..1000 {
        let (status, _, _) = http1_client()
            .get(&format!("http://{admin_addr}/readyz"))
            .await;
        if status == 503 {
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(draining, "readyz never reported draining");
    // The held request still completes in full, then shutdown returns.
    b.release("drain");
    let body = support::collect(in_flight).await.unwrap();
    assert_eq!(body.text(), "first\ndone\n");
    shutdown.await.unwrap();
}
