//! Starts the real gateway in-process on 127.0.0.1:0 from YAML text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gantry::RunningGateway;

/// A gateway started for one test, with its access log in a temporary file.
pub struct TestGateway {
    gateway: Option<RunningGateway>,
    /// Address of the first listener.
    pub addr: SocketAddr,
    log_dir: tempfile::TempDir,
}

impl TestGateway {
    /// Starts a gateway from a full YAML config. `${LOG}` in the text is the access-log path and
    /// `${VAR}` values come from `vars` first, then the process environment.
    pub async fn start_with(yaml: &str, vars: &[(&str, String)]) -> Self {
        let log_dir = tempfile::tempdir().expect("temp dir");
        let log_path = log_dir.path().join("access.log");
        let log = log_path.display().to_string();
        let env = |name: &str| -> Option<String> {
            if name == "LOG" {
                return Some(log.clone());
            }
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(name).ok())
        };
        let config = gantry::config::load_str_with_env("test.yaml", yaml, &env)
            .unwrap_or_else(|errors| panic!("test config rejected:\n{errors}"));
        let gateway = gantry::start(config).await.expect("gateway starts");
        let addr = gateway.addrs()[0].1;
        Self {
            gateway: Some(gateway),
            addr,
            log_dir,
        }
    }

    /// Starts a gateway with one upstream `backend` at `upstream_url` and the given routes YAML
    /// (a list under `routes:`), plus optional extra `server:` YAML.
    pub async fn simple(
        upstream_url: &str,
        upstream_extra: &str,
        routes: &str,
        server: &str,
    ) -> Self {
        let yaml = format!(
            "version: 1\n\
             listeners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\n\
             server:\n  shutdown_grace: 5s\n{server}\n\
             observability:\n  access_log: {{ format: json, output: \"${{LOG}}\" }}\n\
             upstreams:\n  backend:\n    targets: [{{ url: \"{upstream_url}\" }}]\n{upstream_extra}\n\
             routes:\n{routes}\n"
        );
        Self::start_with(&yaml, &[]).await
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The running gateway.
    pub fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("running")
    }

    /// GETs `path` on the admin listener (no token) and parses the JSON body.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let addr = self
            .gateway()
            .admin_addr()
            .expect("the config has an admin listener");
        let (status, _, body) = super::client::get(&format!("http://{addr}{path}")).await;
        assert_eq!(
            status,
            200,
            "admin {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("admin answers JSON")
    }

    /// The `/admin/upstreams` entry of upstream `name`.
    pub async fn admin_upstream(&self, name: &str) -> serde_json::Value {
        let all = self.admin_json("/admin/upstreams").await;
        all.as_array()
            .and_then(|list| list.iter().find(|u| u["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no upstream {name} in {all}"))
    }

    /// Polls `/admin/upstreams` until `check` holds for upstream `name` (10 s safety net); returns
    /// the entry that satisfied it.
    pub async fn wait_for_upstream(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        for _ in 0..1000 {
            last = self.admin_upstream(name).await;
            if check(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("safety net: upstream {name} never reached: {what}; last seen {last}");
    }

    /// Stops the gateway, waiting for in-flight requests (bounded by shutdown_grace).
    pub async fn shutdown(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
    }

    /// Starts a gateway from a config file (so it can be reloaded), with `${LOG}` as in
    /// [`TestGateway::start_with`] already substituted by the caller.
    pub async fn start_file(path: &std::path::Path) -> Self {
        let log_dir = tempfile::tempdir().expect("temp dir");
        let config = gantry::config::load_file(path)
            .unwrap_or_else(|errors| panic!("test config rejected:\n{errors}"));
        let gateway = gantry::start(config).await.expect("gateway starts");
        let addr = gateway.addrs()[0].1;
        Self {
            gateway: Some(gateway),
            addr,
            log_dir,
        }
    }

    /// Waits until the access log holds at least `n` lines (polling, bounded at 10 s), then
    /// returns every line parsed as JSON.
    pub async fn access_log(&self, n: usize) -> Vec<serde_json::Value> {
        let path: PathBuf = self.log_dir.path().join("access.log");
        for _ in 0..1000 {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).expect("access log line is JSON"))
                .collect();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("access log never reached {n} lines");
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            // Stop listening when a test ends without calling shutdown().
            drop(tokio::spawn(async move { gateway.shutdown().await }));
        }
    }
}
