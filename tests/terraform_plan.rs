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
