//! Authentication, rate limit, security headers and CORS through the real daemon.

mod common;

use common::*;
use serde_json::json;

const TOKEN: &str = "test-token-0123456789abcdef";

#[tokio::test]
async fn tokens_rate_limit_headers_and_cors() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set(
                "MULTICLOUD__AUTH__TOKENS",
                format!("another-token-9876543210,{TOKEN}"),
            )
            .set("MULTICLOUD__SERVER__DEPLOY_RATE_PER_MINUTE", 3)
            .set(
                "MULTICLOUD__SERVER__CORS_ALLOWED_ORIGINS",
                "https://ui.example.com",
            )
            .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 0),
    )
    .await;
    let client = reqwest::Client::new();

    // `/` and `/health` are open; everything else needs a token.
    for path in ["/", "/health"] {
        assert_eq!(
            client
                .get(d.url(path))
                .send()
                .await
                .expect("GET")
                .status()
                .as_u16(),
            200,
            "{path}"
        );
    }
    for (path, auth) in [
        ("/templates", None),
        ("/deployments", Some("Bearer wrong-token-0000000000")),
        ("/providers", Some(TOKEN)),
    ] {
        let mut req = client.get(d.url(path));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.expect("GET");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"multicloud\""
        );
        let s = r.status().as_u16();
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(assert_error(s, &body, 401), "unauthorized", "{path}");
    }
    let r = client
        .get(d.url("/templates"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    // Security headers on every answer.
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("default-src 'none'")
    );

    // Rate limit on POST /deploy: 3 a minute for this token, then 429 with Retry-After.
    let body =
        json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "x"}});
    for _ in 0..3 {
        let r = client
            .post(d.url("/deploy"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status().as_u16(), 202);
    }
    let r = client
        .post(d.url("/deploy"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .expect("retry-after")
            .parse::<u64>()
            .expect("secs")
            >= 1
    );
    let s = r.status().as_u16();
    let b: serde_json::Value = r.json().await.expect("json");
    assert_eq!(assert_error(s, &b, 429), "rate_limited");
    // Another token has its own budget.
    let r = client
        .post(d.url("/deploy"))
        .bearer_auth("another-token-9876543210")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(db.count("SELECT count(*) AS n FROM deployments"), 4);

    // CORS: the allowed origin gets a grant, another does not.
    let pre = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, d.url("/deployments"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let ok = pre("https://ui.example.com").await.expect("preflight");
    assert_eq!(
        ok.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("https://ui.example.com")
    );
    let denied = pre("https://evil.example.com").await.expect("preflight");
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // No token ever reaches the log.
    assert!(!d.log_text().contains(TOKEN) && !d.log_text().contains("another-token-9876543210"));
}

#[test]
fn a_public_bind_without_tokens_refuses_to_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_multicloud"))
        .args(["serve"])
        .env(
            "MULTICLOUD__SERVER__BIND",
            format!("0.0.0.0:{}", free_port()),
        )
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.allow_anonymous"), "{err}");
}
