//! A saved plan's summary, from real terraform: `plan -out` then `show -json` on the echo
//! fixture (only terraform's built-in `terraform_data`: no provider, half a second).

use std::path::Path;
use std::process::Command;

use multicloud::domain::ChangeAction;
use multicloud::engines::terraform::plan::summarize;

const SECRET: &str = "plan-secret-value-42";

fn terraform(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", dir.join("terraformrc"))
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_VAR_message", "hello")
        .env("TF_VAR_secret", SECRET)
        .output()
        .expect("terraform on PATH");
    assert!(
        out.status.success(),
        "terraform {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_saved_plan_is_summarized_without_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("terraformrc"), "").expect("rc");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/templates/terraform/aws/echo.tf"
        ),
        dir.path().join("main.tf"),
    )
    .expect("template");
    terraform(dir.path(), &["init", "-input=false", "-no-color"]);
    terraform(
        dir.path(),
        &["plan", "-input=false", "-out=tfplan", "-no-color"],
    );
    let show = terraform(dir.path(), &["show", "-json", "tfplan"]);
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).expect("show -json");
    assert!(
        json.to_string().contains("sensitive"),
        "terraform marks sensitive values in show -json"
    );
    let s = summarize(&json).expect("summary");
    assert_eq!((s.add, s.change, s.destroy), (1, 0, 0), "{s:?}");
    assert_eq!(s.resources[0].address, "terraform_data.echo");
    assert_eq!(s.resources[0].resource_type, "terraform_data");
    assert_eq!(s.resources[0].action, ChangeAction::Create);
    assert_eq!(s.headline(), "Plan: 1 to add, 0 to change, 0 to destroy.");
    let text = serde_json::to_string(&s).expect("json");
    assert!(!text.contains(SECRET) && !text.contains("hello"), "{text}");

    // Applied, the same configuration plans no change.
    terraform(
        dir.path(),
        &["apply", "-input=false", "-no-color", "tfplan"],
    );
    terraform(
        dir.path(),
        &["plan", "-input=false", "-out=tfplan2", "-no-color"],
    );
    let show = terraform(dir.path(), &["show", "-json", "tfplan2"]);
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).expect("show -json");
    assert!(summarize(&json).expect("summary").is_empty());
}

#[test]
fn the_plans_own_stream_summarizes_it_as_show_json_does() {
    use multicloud::engines::terraform::plan::summarize_stream;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("terraformrc"), "").expect("rc");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/templates/terraform/aws/echo.tf"
        ),
        dir.path().join("main.tf"),
    )
    .expect("template");
    terraform(dir.path(), &["init", "-input=false", "-no-color"]);
    let compare = |out: &str| {
        let stream = terraform(
            dir.path(),
            &["plan", "-input=false", "-json", &format!("-out={out}")],
        );
        let changes: Vec<serde_json::Value> = String::from_utf8_lossy(&stream.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["type"] == "planned_change")
            .map(|e| e["change"].clone())
            .collect();
        let show = terraform(dir.path(), &["show", "-json", out]);
        let json: serde_json::Value = serde_json::from_slice(&show.stdout).expect("show -json");
        let from_stream = summarize_stream(&changes).expect("stream summary");
        assert_eq!(from_stream, summarize(&json).expect("summary"));
        assert!(
            !serde_json::to_string(&from_stream)
                .expect("json")
                .contains(SECRET)
        );
        from_stream
    };
    // A create, then (applied) an update of the input, then nothing to do.
    assert_eq!(
        compare("p1").headline(),
        "Plan: 1 to add, 0 to change, 0 to destroy."
    );
    terraform(dir.path(), &["apply", "-input=false", "-no-color", "p1"]);
    let changed = Command::new("terraform")
        .args(["plan", "-input=false", "-json", "-out=p2"])
        .current_dir(dir.path())
        .env("TF_CLI_CONFIG_FILE", dir.path().join("terraformrc"))
        .env("TF_VAR_message", "changed")
        .output()
        .expect("terraform");
    let changes: Vec<serde_json::Value> = String::from_utf8_lossy(&changed.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "planned_change")
        .map(|e| e["change"].clone())
        .collect();
    let s = summarize_stream(&changes).expect("summary");
    assert_eq!((s.add, s.change, s.destroy), (0, 1, 0), "{s:?}");
    assert!(compare("p3").is_empty());
}
