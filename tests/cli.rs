//! The CLI client end to end against a running daemon (with a token).

mod common;

use std::process::Command;

use common::*;

const TOKEN: &str = "cli-token-0123456789abcdef";

/// Runs the CLI (off the async runtime) against `base` with the token; (exit code, stdout, stderr).
async fn run(base: &str, args: &[&str]) -> (i32, String, String) {
    let base = base.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_multicloud"))
            .args(&args)
            .env("MULTICLOUD_URL", base)
            .env("MULTICLOUD_TOKEN", TOKEN)
            .output()
            .expect("run the CLI");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test]
async fn the_cli_deploys_waits_follows_and_reports_with_its_exit_code() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__AUTH__TOKENS", TOKEN),
    )
    .await;
    let (code, out, _) = run(&d.base, &["health"]).await;
    assert_eq!((code, out.trim()), (0, "healthy"));
    let (code, _, _) = run("http://127.0.0.1:9", &["health"]).await;
    assert_eq!(code, 1, "unreachable is unhealthy");
    let (code, out, _) = run(&d.base, &["templates"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("echo") && out.contains("storage-demo"),
        "{out}"
    );

    // deploy --wait: 0 and the outputs when it completes.
    let (code, out, err) = run(
        &d.base,
        &[
            "deploy",
            "echo",
            "--provider",
            "aws",
            "-p",
            "message=from-cli",
            "-p",
            "lines=2",
            "--wait",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("completed") && out.contains("message = \"from-cli\""),
        "{out}"
    );
    let id = out.split_whitespace().next().expect("id").to_string();
    assert!(id.starts_with("deploy-"), "{out}");

    let (code, out, _) = run(&d.base, &["status", &id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("completed"));
    let (code, out, _) = run(&d.base, &["logs", &id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("line-1"), "{out}");
    let (code, out, err) = run(&d.base, &["logs", "--follow", &id]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("line-1") && err.contains("ended completed"),
        "{out}\n{err}"
    );

    // A failing deployment: exit code 1.
    let (code, out, _) = run(
        &d.base,
        &[
            "deploy",
            "echo",
            "--provider",
            "aws",
            "-p",
            "message=x",
            "-p",
            "fail=true",
            "--wait",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("failed") && out.contains("told to fail"),
        "{out}"
    );

    // API errors: exit code 2 with the daemon's words.
    let (code, _, err) = run(&d.base, &["cancel", &id]).await;
    assert_eq!(code, 2);
    assert!(err.contains("already ended"), "{err}");
    let (code, _, err) = run(&d.base, &["deploy", "nope", "--provider", "aws"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = run(
        &d.base,
        &["deploy", "echo", "--provider", "aws", "-p", "colour=red"],
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("parameters.colour"), "{err}");

    // destroy --wait.
    let (code, out, err) = run(&d.base, &["destroy", "--wait", &id]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("destroyed"), "{out}");

    // Without the token the daemon refuses, and the CLI says so.
    let out = Command::new(env!("CARGO_BIN_EXE_multicloud"))
        .args(["templates", "--url", &d.base])
        .env_remove("MULTICLOUD_TOKEN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bearer token"));
}
