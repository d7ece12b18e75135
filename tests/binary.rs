#![allow(clippy::unwrap_used)]
//! The real binary, where signals are the point: graceful shutdown and the demo.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use support::{Upstream, empty, http1_client};

/// A running `gantry` process with its stderr lines.
struct Gantry {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Gantry {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for the line announcing the first listener and returns its base URL.
    fn listener_url(&self) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("gantry printed its listener");
            if let Some(rest) = line.strip_prefix("gantry: listener ") {
                return rest.split(" on ").nth(1).unwrap().trim().to_owned();
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit and returns its code.
    fn wait_exit(&mut self) -> Option<i32> {
        for _ in 0..3000 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        panic!("gantry did not exit");
    }
}

impl Drop for Gantry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_drains_in_flight_requests() {
    let upstream = Upstream::start("drain").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1
listeners:
  - {{ name: public, address: \"127.0.0.1:0\" }}
server:
  shutdown_grace: 20s
observability:
  access_log: {{ format: off }}
upstreams:
  backend:
    targets: [{{ url: \"{}\" }}]
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: backend }}
",
            upstream.url()
        ),
    )
    .unwrap();
    let mut gantry = Gantry::spawn(&["run", "-c", config.to_str().unwrap()]);
    let url = gantry.listener_url();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();

    // One request in flight, held by the upstream.
    let client = http1_client();
    let in_flight = client
        .send(
            Request::get(format!("{url}/gate/drain"))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(in_flight.status(), 200);

    gantry.signal("TERM");
    // New connections are refused once the listener is closed.
    let mut refused = false;
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener kept accepting after SIGTERM");

    // The in-flight request still completes in full.
    upstream.release("drain");
    let body = in_flight.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"first\ndone\n");
    assert_eq!(gantry.wait_exit(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_with_nothing_else_and_balances_its_users_service() {
    let mut gantry = Gantry::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let url = gantry.listener_url();
    let client = http1_client();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let (status, _, body) = client.get(&format!("{url}/v1/users/42")).await;
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["service"], "users");
        assert_eq!(json["path"], "/users/42");
        instances.push(json["instance"].as_str().unwrap().to_owned());
    }
    assert_ne!(instances[0], instances[1], "round robin over two instances");
    let (status, _, body) = client.get(&format!("{url}/v1/orders")).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["service"], "orders");
    let (status, _, _) = client.get(&format!("{url}/nope")).await;
    assert_eq!(status, 404);
    gantry.signal("INT");
    assert_eq!(gantry.wait_exit(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file() {
    let upstream = Upstream::start("hup").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.yaml");
    let text = |route: &str| {
        format!(
            "version: 1
listeners:
  - {{ name: public, address: \"127.0.0.1:0\" }}
observability:
  access_log: {{ format: off }}
upstreams:
  backend:
    targets: [{{ url: \"{}\" }}]
routes:
  - {{ name: r, match: {{ path: {route} }}, upstream: backend }}
",
            upstream.url()
        )
    };
    std::fs::write(&config, text("/before")).unwrap();
    let mut gantry = Gantry::spawn(&["run", "-c", config.to_str().unwrap()]);
    let url = gantry.listener_url();
    let client = http1_client();
    assert_eq!(client.get(&format!("{url}/before")).await.0, 200);

    // Write in place (no rename) so only SIGHUP, not necessarily the watcher, is what we rely on.
    std::fs::write(&config, text("/after")).unwrap();
    gantry.signal("HUP");
    let mut reloaded = false;
    for _ in 0..1000 {
        if client.get(&format!("{url}/after")).await.0 == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(reloaded, "SIGHUP did not reload the config");
    assert_eq!(client.get(&format!("{url}/before")).await.0, 404);
    gantry.signal("TERM");
    assert_eq!(gantry.wait_exit(), Some(0));
}
