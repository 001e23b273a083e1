//! The dashboard (`/ui`) in a real headless Chromium, driven through chromedriver
//! (`common::browser`), against the real daemon: pages are clicked and typed into as a person
//! would, and the result is checked in the page and through the API. Each test saves
//! screenshots of the pages it visits, at desktop (1280x900) and phone (390x844) sizes, to
//! `target/screenshots/<name>-<desktop|phone>.png`.
//!
//! Needs `chromium` and `chromedriver` (`apt-get install chromium chromium-driver`; `.ci/run`
//! installs them).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::browser::Browser;
use common::*;
use serde_json::{Value, json};

const ADA: (&str, &str) = ("ada", "ada-token-0123456789");
const VAL: (&str, &str) = ("val", "val-token-0123456789");
const OTTO: (&str, &str) = ("otto", "otto-token-0123456789");
const ABE: (&str, &str) = ("abe", "abe-token-0123456789");

const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// How long a run of the echo fixture may take, seen through the page's 2 s refresh.
const ECHO: Duration = Duration::from_secs(60);
const PAGE: Duration = Duration::from_secs(15);

/// The named tokens (admin, viewer, operator, approver) in `<data_dir>/config/default.toml`.
fn write_tokens(dir: &Path) {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    let tokens = [
        (ADA, "admin"),
        (VAL, "viewer"),
        (OTTO, "operator"),
        (ABE, "approver"),
    ]
    .iter()
    .map(|((name, token), role)| {
        format!("  {{ name = \"{name}\", role = \"{role}\", token = \"{token}\" }},\n")
    })
    .collect::<String>();
    std::fs::write(
        config.join("default.toml"),
        format!("[auth]\ntokens = [\n{tokens}]\n"),
    )
    .expect("write config/default.toml");
}

/// A daemon over `templates`; with `tokens`, the named tokens (and a login for `/ui`).
async fn daemon(
    db: &TestDb,
    dir: &tempfile::TempDir,
    templates: &str,
    tokens: bool,
    moto: Option<&Moto>,
) -> Daemon {
    if tokens {
        write_tokens(dir.path());
    }
    let mut cfg = DaemonConfig::new(Some(&db.url), dir.path(), templates)
        .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY)
        .set("MULTICLOUD__RUNNER__RUN_TIMEOUT_SECS", 300);
    if let Some(moto) = moto {
        cfg = cfg.with_moto(moto);
    }
    Daemon::start(cfg).await
}

/// `target/screenshots`.
fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("screenshots")
}

/// Screenshots of the current page at desktop and phone sizes (then back to desktop).
async fn snap(b: &Browser, name: &str) {
    for (size, (w, h)) in [("phone", PHONE), ("desktop", DESKTOP)] {
        b.set_viewport(w, h, size == "phone").await;
        // Let the layout settle at the new width.
        tokio::time::sleep(Duration::from_millis(150)).await;
        b.screenshot(&screenshots().join(format!("{name}-{size}.png")))
            .await;
    }
}

/// A browser at desktop size.
async fn browser() -> Browser {
    let b = Browser::start(DESKTOP.0, DESKTOP.1).await;
    b.set_viewport(DESKTOP.0, DESKTOP.1, false).await;
    b
}

/// Types `text` into the (cleared) field `css`.
async fn fill(b: &Browser, css: &str, text: &str) {
    let e = b.find(css).await;
    e.clear().await;
    e.send_keys(text).await;
}

/// Logs in through the login page (already shown, or reached by `goto`).
async fn log_in(b: &Browser, token: &str) {
    b.wait_for("form.login #token", PAGE).await;
    fill(b, "#token", token).await;
    b.find("form.login button[type=submit]").await.click().await;
    b.wait_path("left the login page", PAGE, |p| !p.starts_with("/ui/login"))
        .await;
}

async fn log_out(b: &Browser) {
    b.find("header form[action='/ui/logout'] button")
        .await
        .click()
        .await;
    b.wait_path("the login page", PAGE, |p| p.starts_with("/ui/login"))
        .await;
}

/// The deployment id of the deployment page shown.
async fn shown_deployment(b: &Browser) -> String {
    let path = b
        .wait_path("a deployment page", PAGE, |p| {
            p.starts_with("/ui/deployments/") && p.len() > "/ui/deployments/".len()
        })
        .await;
    path.trim_start_matches("/ui/deployments/").to_string()
}

/// The status badge of the deployment page (as the live section shows it now).
async fn status_badge(b: &Browser) -> Option<String> {
    b.text_of("#live p.status .badge").await
}

async fn wait_badge(b: &Browser, want: &str, timeout: Duration) {
    b.wait_until(&format!("status badge {want}"), timeout, || async move {
        (status_badge(b).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

/// The echo fixture deployed from its form with `message` (and "Plan first" when asked).
async fn deploy_echo(b: &Browser, d: &Daemon, message: &str, plan_first: bool) -> String {
    b.goto(&d.url("/ui/templates/terraform-aws/echo")).await;
    fill(b, "#p-message", message).await;
    if plan_first {
        let check = b.find("#plan_first").await;
        assert!(!check.selected().await, "Plan first starts unchecked");
        check.click().await;
        assert!(check.selected().await);
    }
    b.find("form.deploy button[type=submit]")
        .await
        .click()
        .await;
    shown_deployment(b).await
}

/// One API call with a bearer token.
async fn api(
    d: &Daemon,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = reqwest::Client::new()
        .request(method, d.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("API request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn api_status(d: &Daemon, id: &str) -> String {
    let (code, body) = api(d, "GET", &format!("/deployments/{id}/status"), ADA.1, None).await;
    assert_eq!(code, 200, "{body}");
    body["data"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_api_status(d: &Daemon, id: &str, want: &str) {
    let deadline = std::time::Instant::now() + ECHO;
    loop {
        let status = api_status(d, id).await;
        if status == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} is {status}, never {want}: {}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A POST from the page's own script (what a forged or replayed request would be); its status.
async fn post_from_page(b: &Browser, path: &str, form: Value) -> u64 {
    b.execute(
        "return fetch(arguments[0], {method: 'POST', body: new URLSearchParams(arguments[1]), redirect: 'manual'})
           .then(r => r.status);",
        vec![json!(path), form],
    )
    .await
    .as_u64()
    .expect("a status")
}

/// 1. The real storage-bucket template, deployed to moto from its generated form; the page
///    follows the run live (log lines over SSE, the status badge) without a reload.
#[tokio::test]
async fn storage_bucket_deploys_from_its_form_and_the_page_follows_the_run_live() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, TEMPLATES, false, Some(&moto)).await;
    let b = browser().await;

    // A browser asking for `/` gets the dashboard.
    b.goto(&d.url("/")).await;
    assert_eq!(b.path().await, "/ui");
    assert!(b.title().await.starts_with("Deployments"));
    b.wait_text("tbody#rows", "No deployments.", PAGE).await;

    b.goto(&d.url("/ui/templates")).await;
    b.find("a[href='/ui/templates/terraform-aws/storage-bucket']")
        .await
        .click()
        .await;
    assert_eq!(b.path().await, "/ui/templates/terraform-aws/storage-bucket");
    snap(&b, "template-form").await;

    // The form as the template declares it: a required text field, a JSON textarea.
    let name = b.find("#p-bucket_name").await;
    assert_eq!(
        name.attribute("name").await.as_deref(),
        Some("p.bucket_name")
    );
    assert_eq!(name.attribute("type").await.as_deref(), Some("text"));
    assert!(name.attribute("required").await.is_some());
    let tags = b.find("textarea#p-tags").await;
    assert_eq!(tags.value().await, "", "nothing is sent unless typed");
    assert_eq!(
        tags.attribute("placeholder").await.as_deref(),
        Some("default: {}"),
        "the default is shown"
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_nanos())
        .unwrap_or(0);
    let bucket = format!("mc-ui-{nanos:x}-{:x}", std::process::id());
    fill(&b, "#f-location", "eu-west-1").await;
    fill(&b, "#p-bucket_name", &bucket).await;
    fill(&b, "#p-tags", r#"{"team": "ui"}"#).await;
    b.find("form.deploy button[type=submit]")
        .await
        .click()
        .await;
    let id = shown_deployment(&b).await;

    // From here on, nothing reloads the page: the mark set now stays.
    b.execute("window.__sameDocument = 'yes';", vec![]).await;
    let mut lines_before_end = false;
    let mut badges = Vec::<String>::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let lines = b.find_all("pre#log span").await.len();
        let status = b.text_of("#log-status").await.unwrap_or_default();
        if status.starts_with("Run ended") {
            break;
        }
        if lines > 0 && !lines_before_end {
            lines_before_end = true;
            snap(&b, "deployment-running").await;
        }
        if let Some(badge) = status_badge(&b).await
            && badges.last() != Some(&badge)
        {
            badges.push(badge);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log never ended: {}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        b.text_of("#log-status").await.as_deref(),
        Some("Run ended: completed"),
        "{}",
        d.log_text()
    );
    wait_badge(&b, "completed", PAGE).await;
    assert!(
        lines_before_end,
        "log lines appeared while the run was going"
    );
    assert!(
        badges.iter().any(|s| s == "running" || s == "pending"),
        "the badge went from busy to completed: {badges:?}"
    );
    let log = b.find("pre#log").await.text().await;
    assert!(log.contains("Apply complete"), "{log}");
    assert_eq!(
        b.execute("return window.__sameDocument;", vec![]).await,
        "yes",
        "the page was not reloaded"
    );
    assert!(
        b.try_find("#progress").await.is_none(),
        "no progress bar once done"
    );

    // The outputs arrived with the run's end, without a reload, with copy buttons.
    assert_eq!(
        b.wait_for("#out-bucket_name", PAGE).await.text().await,
        bucket
    );
    assert_eq!(
        b.find("#out-bucket_arn").await.text().await,
        format!("arn:aws:s3:::{bucket}")
    );
    assert_eq!(
        b.find("button[data-copy='out-bucket_name']")
            .await
            .text()
            .await,
        "Copy"
    );
    snap(&b, "deployment").await;
    let head = reqwest::Client::new()
        .head(format!("{}/{bucket}", moto.url))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status().as_u16(), 200, "the bucket is in moto");

    // The list shows it, and so does the health page.
    b.goto(&d.url("/ui")).await;
    let row = b.wait_text("tbody#rows", &id, PAGE).await;
    assert!(
        row.contains("storage-bucket") && row.contains("completed"),
        "{row}"
    );
    snap(&b, "deployments").await;
    b.goto(&d.url("/ui/health")).await;
    assert_eq!(b.find("main h1").await.text().await, "Health");
    assert_eq!(
        b.text_of("dl.facts .badge").await.as_deref(),
        Some("healthy")
    );
    snap(&b, "health").await;
    b.goto(&d.url("/ui/templates")).await;
    snap(&b, "templates").await;
}

/// 2. A 422 comes back as the form with each problem next to its field, the values kept.
#[tokio::test]
async fn a_refused_value_is_shown_next_to_its_field_and_the_rest_is_kept() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, TEMPLATES, false, Some(&moto)).await;
    let b = browser().await;
    let form = "/ui/templates/terraform-aws/storage-bucket";
    b.goto(&d.url(form)).await;
    let tags = r#"{"team": "<script>window.__xss=3</script>"}"#;
    fill(&b, "#f-location", "eu-west-1").await;
    fill(&b, "#p-bucket_name", "Bad..Name").await;
    fill(&b, "#p-tags", tags).await;
    b.find("form.deploy button[type=submit]")
        .await
        .click()
        .await;

    b.wait_for("small.error", PAGE).await;
    assert_eq!(b.status().await, 422);
    assert_eq!(b.path().await, form);
    assert_eq!(
        b.text_of("main .alert").await.as_deref(),
        Some("Some fields need attention.")
    );
    let errors = b.find_all("small.error").await;
    assert_eq!(errors.len(), 1, "one problem, one message");
    let message = b.find("small.error#e-bucket_name").await.text().await;
    assert!(message.contains("lowercase"), "{message}");
    // Next to its field: the same .field, and the field points at it.
    assert_eq!(
        b.execute(
            "return document.getElementById('e-bucket_name').closest('.field') === document.getElementById('p-bucket_name').closest('.field');",
            vec![],
        )
        .await,
        true
    );
    let name = b.find("#p-bucket_name").await;
    assert_eq!(
        name.attribute("aria-invalid").await.as_deref(),
        Some("true")
    );
    assert!(
        name.attribute("aria-describedby")
            .await
            .is_some_and(|a| a.split(' ').any(|x| x == "e-bucket_name")),
        "the error is the field's description"
    );
    assert_eq!(
        name.value().await,
        "Bad..Name",
        "the refused value is kept to fix"
    );
    let tags_field = b.find("#p-tags").await;
    assert_eq!(tags_field.value().await, tags, "kept, literally");
    assert_eq!(tags_field.attribute("aria-invalid").await, None);
    assert_eq!(b.find("#f-location").await.value().await, "eu-west-1");
    assert_eq!(
        b.execute("return typeof window.__xss;", vec![]).await,
        "undefined"
    );
    snap(&b, "form-errors").await;

    // Two problems at once: a value that is not JSON and a name too short.
    fill(&b, "#p-bucket_name", "ab").await;
    fill(&b, "#p-tags", "{not json").await;
    b.find("form.deploy button[type=submit]")
        .await
        .click()
        .await;
    b.wait_for("small.error#e-tags", PAGE).await;
    assert_eq!(b.status().await, 422);
    assert!(
        b.find("#e-tags").await.text().await.contains("JSON"),
        "the conversion's problem"
    );
    assert!(
        b.try_find("#e-bucket_name").await.is_some(),
        "and the template's own check of the other field"
    );
    assert_eq!(b.find("#p-tags").await.value().await, "{not json");
    let (_, list) = d.get("/deployments").await;
    assert_eq!(
        list["data"]["deployments"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
}

/// 3. "Plan first": the plan shown as a diff, applied by an approver, run to completion.
#[tokio::test]
async fn a_plan_is_shown_as_a_diff_and_an_approver_applies_it() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, FIXTURES, true, None).await;
    let b = browser().await;
    b.goto(&d.url("/ui/login")).await;
    log_in(&b, OTTO.1).await;
    let id = deploy_echo(&b, &d, "planned hello", true).await;

    // The live section brings the plan when the run stops for a decision.
    let diff = b.wait_for("ul.diff li.add", ECHO).await;
    assert!(diff.text().await.contains("terraform_data.echo"));
    wait_badge(&b, "planned", PAGE).await;
    assert!(
        b.text_of("#live .planned")
            .await
            .unwrap_or_default()
            .contains("requested by otto")
    );
    // An operator may not apply.
    assert!(b.try_find("form[action$='/apply']").await.is_none());
    assert!(b.try_find("form[action$='/discard']").await.is_none());
    assert_eq!(api_status(&d, &id).await, "planned");

    // The approver, sent back to the deployment after logging in.
    log_out(&b).await;
    b.goto(&d.url(&format!("/ui/deployments/{id}"))).await;
    assert!(b.path().await.starts_with("/ui/login?next="));
    log_in(&b, ABE.1).await;
    assert_eq!(b.path().await, format!("/ui/deployments/{id}"));
    b.wait_for("ul.diff li.add", PAGE).await;
    snap(&b, "plan").await;
    b.find("form[action$='/apply'] button[type=submit]")
        .await
        .click()
        .await;
    assert_eq!(shown_deployment(&b).await, id);
    wait_badge(&b, "completed", ECHO).await;
    b.wait_text("#log-status", "Run ended: completed", PAGE)
        .await;
    let timeline = b.find("ol.timeline").await.text().await;
    assert!(timeline.contains("approved by abe"), "{timeline}");
    assert!(
        b.try_find("ul.diff").await.is_none(),
        "no plan waiting any more"
    );
    assert_eq!(api_status(&d, &id).await, "completed");
}

/// 4. Destroy waits for the deployment's id to be typed; the CSRF check refuses forms that
///    were not sent from the page.
#[tokio::test]
async fn destroy_needs_the_typed_id_and_a_valid_csrf_value() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, FIXTURES, true, None).await;
    let b = browser().await;
    b.goto(&d.url("/ui")).await;
    log_in(&b, OTTO.1).await;
    let id = deploy_echo(&b, &d, "short-lived", false).await;
    wait_badge(&b, "completed", ECHO).await;

    // The destroy form's own request, but with a wrong or no CSRF value: 403, nothing done.
    let path = format!("/ui/deployments/{id}/destroy");
    let wrong = "0".repeat(32);
    assert_eq!(
        post_from_page(&b, &path, json!({"csrf": wrong, "confirm": id})).await,
        403
    );
    assert_eq!(post_from_page(&b, &path, json!({"confirm": id})).await, 403);
    assert_eq!(api_status(&d, &id).await, "completed");

    let confirm = b.find("form.destroy #confirm").await;
    let button = b.find("form.destroy button[type=submit]").await;
    assert!(!button.enabled().await, "disabled until the id is typed");
    confirm.send_keys(&id[..id.len() - 1]).await;
    assert!(
        !button.enabled().await,
        "still disabled with part of the id"
    );
    confirm.send_keys(&id[id.len() - 1..]).await;
    assert!(button.enabled().await, "enabled with the whole id");
    snap(&b, "destroy").await;
    button.click().await;
    assert_eq!(shown_deployment(&b).await, id);
    wait_badge(&b, "destroyed", ECHO).await;
    assert_eq!(api_status(&d, &id).await, "destroyed");
    b.refresh().await;
    assert!(
        b.try_find("form.destroy").await.is_none(),
        "nothing left to destroy"
    );
}

/// 5. A viewer sees no action, and a forged POST (with a valid CSRF value) is refused.
#[tokio::test]
async fn a_viewer_sees_no_actions_and_forged_posts_are_refused() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, FIXTURES, true, None).await;
    let deploy = |auto_apply: bool| {
        json!({"template_name": "echo", "provider_type": "terraform-aws",
               "parameters": {"message": "for viewers"}, "auto_apply": auto_apply})
    };
    let (s, done) = api(&d, "POST", "/deploy", ADA.1, Some(deploy(true))).await;
    assert_eq!(s, 202, "{done}");
    let done = done["data"]["deployment_id"]
        .as_str()
        .expect("id")
        .to_string();
    let (s, planned) = api(&d, "POST", "/deploy", ADA.1, Some(deploy(false))).await;
    assert_eq!(s, 202, "{planned}");
    let planned = planned["data"]["deployment_id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_api_status(&d, &done, "completed").await;
    wait_api_status(&d, &planned, "planned").await;

    let b = browser().await;
    b.goto(&d.url("/ui")).await;
    log_in(&b, VAL.1).await;
    assert_eq!(
        b.text_of("header .who span").await.as_deref(),
        Some("val · viewer")
    );
    let rows = b.wait_text("tbody#rows", &done, PAGE).await;
    assert!(rows.contains(&planned), "{rows}");
    let actions = "main form[method=post], form.destroy, details.update, form[action$='/apply'], form[action$='/discard'], form[action$='/cancel'], form[action$='/destroy']";
    for id in [&done, &planned] {
        b.goto(&d.url(&format!("/ui/deployments/{id}"))).await;
        b.wait_for("#live", PAGE).await;
        assert!(
            b.find_all(actions).await.is_empty(),
            "no action for a viewer on {id}"
        );
        for button in b.find_all("main button").await {
            assert!(
                button.attribute("data-copy").await.is_some(),
                "only copy buttons for a viewer on {id}"
            );
        }
    }
    // The planned one shows its plan, without the decision's buttons.
    assert!(b.try_find("ul.diff li.add").await.is_some());
    snap(&b, "viewer").await;
    b.goto(&d.url("/ui/templates/terraform-aws/echo")).await;
    assert!(b.try_find("form.deploy").await.is_none(), "no Deploy form");
    assert!(b.find("main").await.text().await.contains("message"));

    // Forged: the page's valid CSRF value, posted by script or by an injected form.
    let csrf = b
        .find("header form[action='/ui/logout'] input[name=csrf]")
        .await
        .value()
        .await;
    assert_eq!(csrf.len(), 32);
    let destroy = format!("/ui/deployments/{done}/destroy");
    assert_eq!(
        post_from_page(&b, &destroy, json!({"csrf": csrf, "confirm": done})).await,
        403
    );
    let apply = format!("/ui/deployments/{planned}/apply");
    assert_eq!(post_from_page(&b, &apply, json!({"csrf": csrf})).await, 403);
    let create = "/ui/templates/terraform-aws/echo";
    assert_eq!(
        post_from_page(&b, create, json!({"csrf": csrf, "p.message": "forged"})).await,
        403
    );
    b.execute(
        "const f = document.createElement('form');
         f.method = 'post'; f.action = arguments[0];
         for (const [k, v] of Object.entries(arguments[1])) {
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
         }
         document.body.appendChild(f); f.submit();",
        vec![json!(destroy), json!({"csrf": csrf, "confirm": done})],
    )
    .await;
    b.wait_path("the refusal", PAGE, |p| p == destroy).await;
    b.wait_text("main h1", "403", PAGE).await;
    assert_eq!(b.status().await, 403);
    assert!(b.find("main .alert").await.text().await.contains("viewer"));

    // Nothing changed.
    assert_eq!(api_status(&d, &done).await, "completed");
    assert_eq!(api_status(&d, &planned).await, "planned");
    let (_, list) = api(&d, "GET", "/deployments", ADA.1, None).await;
    assert_eq!(
        list["data"]["deployments"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
}

/// 6. Under the strict CSP the page's own script runs, and script in a value is only text.
#[tokio::test]
async fn script_in_a_parameter_is_shown_as_text_and_never_runs() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, FIXTURES, false, None).await;
    let r = reqwest::get(d.url("/ui")).await.expect("GET /ui");
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );

    let b = browser().await;
    let payload = r#"<script>window.__xss=1</script><img src=x onerror="window.__xss=2">"#;
    let id = deploy_echo(&b, &d, payload, false).await;
    wait_badge(&b, "completed", ECHO).await;
    // The page's script ran: it ended the log stream and disabled the destroy button.
    b.wait_text("#log-status", "Run ended: completed", PAGE)
        .await;
    assert!(
        !b.find("form.destroy button[type=submit]")
            .await
            .enabled()
            .await
    );

    let shown = "return [...document.querySelectorAll('table.kv tr')]
        .filter(r => r.querySelector('th').textContent === arguments[0])
        .map(r => r.querySelector('td code').textContent);";
    // As the parameter, and as the output that arrived with the run's end.
    assert_eq!(
        b.execute(shown, vec![json!("message")]).await,
        json!([payload, payload])
    );
    b.refresh().await;
    assert_eq!(b.find("#out-message").await.text().await, payload);
    assert_eq!(
        b.execute(shown, vec![json!("message")]).await,
        json!([payload, payload])
    );
    assert!(b.find("main").await.text().await.contains(payload));
    assert_eq!(
        b.execute("return typeof window.__xss;", vec![]).await,
        "undefined"
    );
    assert!(
        b.find_all("main img, main script").await.is_empty(),
        "no element made of it"
    );
    snap(&b, "xss").await;
    assert_eq!(api_status_open(&d, &id).await, "completed");
}

async fn api_status_open(d: &Daemon, id: &str) -> String {
    let (_, body) = d.get(&format!("/deployments/{id}/status")).await;
    body["data"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// 7. Login: `/ui` without a session goes to the login page, a wrong token is refused (401),
///    the session is an HttpOnly cookie, and logging out ends it.
#[tokio::test]
async fn login_refuses_a_wrong_token_and_logout_ends_the_session() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, FIXTURES, true, None).await;
    let b = browser().await;
    b.goto(&d.url("/")).await;
    assert_eq!(b.path().await, "/ui/login?next=%2Fui");
    assert!(
        b.try_find("header nav").await.is_none(),
        "no navigation before login"
    );
    snap(&b, "login").await;

    fill(&b, "#token", "not-a-token-of-this-daemon").await;
    b.find("form.login button[type=submit]").await.click().await;
    b.wait_for("main .alert", PAGE).await;
    assert_eq!(b.status().await, 401);
    assert_eq!(
        b.text_of("main .alert").await.as_deref(),
        Some("That token is not valid.")
    );
    assert_eq!(
        b.find("#token").await.value().await,
        "",
        "the token is not sent back"
    );
    let session = |cookies: &[Value]| cookies.iter().find(|c| c["name"] == "mc_session").cloned();
    assert!(session(&b.cookies().await).is_none());

    log_in(&b, ADA.1).await;
    assert_eq!(b.path().await, "/ui", "back where it started");
    assert_eq!(
        b.text_of("header .who span").await.as_deref(),
        Some("ada · admin")
    );
    let cookie = session(&b.cookies().await).expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert!(!cookie["value"].as_str().unwrap_or_default().contains(ADA.1));
    let script_sees = b.execute("return document.cookie;", vec![]).await;
    assert!(
        !script_sees.to_string().contains("mc_session"),
        "{script_sees}"
    );
    b.goto(&d.url("/ui/health")).await;
    assert_eq!(b.path().await, "/ui/health");

    log_out(&b).await;
    assert!(session(&b.cookies().await).is_none(), "the cookie is gone");
    b.goto(&d.url("/ui/templates")).await;
    assert_eq!(b.path().await, "/ui/login?next=%2Fui%2Ftemplates");

    // `next` only leads into the dashboard.
    b.goto(&d.url("/ui/login?next=//example.com/ui")).await;
    log_in(&b, VAL.1).await;
    assert_eq!(b.path().await, "/ui");
}

/// 8. The list tables' columns line up with their headers, at desktop and phone widths.
#[tokio::test]
async fn list_columns_line_up_with_their_headers() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, FIXTURES, false, None).await;
    let id = d
        .deploy("echo", "terraform-aws", json!({"message": "columns"}))
        .await;
    d.wait_terminal(&id, ECHO).await;
    let b = browser().await;
    // For each list table: the left edges of the header cells and of the first row's cells.
    let edges = "return [...document.querySelectorAll('table.list')].map(t => [
        [...t.querySelectorAll('thead th')].map(c => Math.round(c.getBoundingClientRect().left)),
        [...t.querySelectorAll('tbody tr:first-child td')].map(c => Math.round(c.getBoundingClientRect().left)),
    ]);";
    for page in ["/ui", "/ui/health"] {
        for (w, h) in [DESKTOP, PHONE] {
            b.set_viewport(w, h, w == PHONE.0).await;
            b.goto(&d.url(page)).await;
            b.wait_for("table.list tbody tr td", PAGE).await;
            let tables = b.execute(edges, vec![]).await;
            for t in tables.as_array().expect("tables") {
                assert_eq!(t[0], t[1], "{page} at {w}px: header and cell edges");
            }
        }
    }
}
