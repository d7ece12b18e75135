#![allow(clippy::unwrap_used)]
//! The command line, driven as users run it: validate, schema.

use std::process::Command;

fn gantry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const GOOD: &str = "version: 1
listeners:
  - { name: public, address: \"127.0.0.1:0\" }
upstreams:
  users:
    targets: [{ url: \"http://127.0.0.1:9\" }]
routes:
  - name: users
    match: { path: \"/v1/users/{id}\" }
    upstream: users
";

#[test]
fn validate_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "good.yaml", GOOD);
    let out = gantry()
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn validate_reports_a_structural_error_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD.replace("    upstream: users\n", "    upstrem: users\n");
    let path = write(&dir, "typo.yaml", &text);
    let out = gantry()
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:10:5: routes[0].upstrem: unknown field `upstrem`",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("did you mean `upstream`"), "{stderr}");
}

#[test]
fn validate_reports_every_semantic_error_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        format!("{GOOD}  - name: users\n    match: {{ path: /other }}\n    upstream: user\n");
    let path = write(&dir, "semantic.yaml", &text);
    let out = gantry()
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{file}:11:11: routes[1].name: duplicate route name"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:13:15: routes[1].upstream: unknown upstream \"user\" (did you mean \"users\"?)"
        )),
        "{stderr}"
    );
}

#[test]
fn validate_rejects_a_bad_duration_at_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD.replace(
        "    targets: [{ url: \"http://127.0.0.1:9\" }]\n",
        "    targets: [{ url: \"http://127.0.0.1:9\" }]\n    timeouts: { connect: 5 parsecs }\n",
    );
    let path = write(&dir, "duration.yaml", &text);
    let out = gantry()
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:7:26: upstreams.users.timeouts.connect:",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = gantry().arg("schema").output().unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/gantry.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        printed, committed,
        "schema/gantry.schema.json is stale: run `cargo run -- schema > schema/gantry.schema.json`"
    );
    assert!(printed["properties"]["routes"].is_object());
    assert!(printed["properties"]["upstreams"].is_object());
}

#[test]
fn every_example_config_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = gantry()
                .args(["validate", "-c"])
                .arg(&path)
                .env("DEMO_USERS_1", "127.0.0.1:1")
                .env("DEMO_USERS_2", "127.0.0.1:2")
                .env("DEMO_ORDERS", "127.0.0.1:3")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2);
}
