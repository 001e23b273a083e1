//! The client half of the binary (design.md §9): `deploy`, `status`, `logs`, `cancel`,
//! `destroy`, `templates`, and the lifecycle: `plan`, `apply`, `discard`, `update`, `drift`,
//! `runs`, teams: `audit`, `webhooks`, talking to a daemon at `--url`; `token` makes a token
//! offline. Exit codes: 0 success; 1 the deployment or run did
//! not end as asked (failed, cancelled, drifted); 2 usage, connection or API errors.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// Where the daemon is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub token: Option<String>,
}

#[derive(Debug)]
pub enum CliError {
    /// The daemon answered with an error envelope, or could not be reached.
    Api(String),
    /// The deployment ended in a state other than the one asked for.
    Outcome(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api(_) => 2,
            CliError::Outcome(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Api(m) | CliError::Outcome(m) => f.write_str(m),
        }
    }
}

impl Remote {
    fn client(&self) -> awc::Client {
        let mut b = awc::Client::builder().timeout(Duration::from_secs(30));
        if let Some(t) = &self.token {
            b = b.bearer_auth(t);
        }
        b.finish()
    }

    async fn call(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let req = self.client().request(method, &url);
        let sent = match body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        };
        let mut res = sent.map_err(|e| CliError::Api(format!("cannot reach {}: {e}", self.url)))?;
        let envelope: Value = res
            .json()
            .limit(64 << 20)
            .await
            .map_err(|e| CliError::Api(format!("unexpected answer from {url}: {e}")))?;
        if envelope["success"] == true {
            Ok(envelope["data"].clone())
        } else {
            let mut msg = envelope["message"]
                .as_str()
                .unwrap_or("request failed")
                .to_string();
            if let Some(details) = envelope["error"]["details"].as_array() {
                for d in details {
                    msg.push_str(&format!(
                        "\n  {}: {}",
                        d["field"].as_str().unwrap_or("?"),
                        d["problem"].as_str().unwrap_or("?")
                    ));
                }
            }
            Err(CliError::Api(format!(
                "{msg} (HTTP {})",
                res.status().as_u16()
            )))
        }
    }

    async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(awc::http::Method::GET, path, None).await
    }
}

/// `key=value`: the value as JSON when it parses (numbers, booleans, lists, objects), else a string.
pub fn parse_param(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected key=value"))?;
    if k.is_empty() {
        return Err(format!("{s:?}: empty parameter name"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.to_string(), value))
}

pub struct DeployArgs {
    pub template: String,
    pub provider: String,
    pub params: Vec<(String, Value)>,
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    pub location: Option<String>,
    pub wait: bool,
    /// Plan only: the run waits (`planned`) for `apply` or `discard`.
    pub plan: bool,
}

pub async fn deploy(remote: &Remote, a: DeployArgs) -> Result<(), CliError> {
    let params: serde_json::Map<String, Value> = a.params.into_iter().collect();
    let body = json!({
        "template_name": a.template, "provider_type": a.provider, "parameters": params,
        "subscription_id": a.subscription_id, "resource_group": a.resource_group, "location": a.location,
        "auto_apply": !a.plan,
    });
    let data = remote
        .call(awc::http::Method::POST, "/deploy", Some(&body))
        .await?;
    let id = data["deployment_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!(
        "{id} accepted ({} {})",
        data["provider"].as_str().unwrap_or_default(),
        data["template"].as_str().unwrap_or_default()
    );
    if a.plan {
        // The plan is the point: wait for it and show it.
        wait(remote, &id, &["planned", "completed"]).await?;
        let runs = remote
            .get(&format!("/deployments/{id}/runs?limit=1"))
            .await?;
        print_plan(&runs["runs"][0]);
        println!("apply it with: multicloud apply {id}");
        Ok(())
    } else if a.wait {
        wait(remote, &id, &["completed"]).await
    } else {
        Ok(())
    }
}

/// Follows `/status` with a progress bar until the run ends; success when it ends in `want`.
pub async fn wait(remote: &Remote, id: &str, want: &[&str]) -> Result<(), CliError> {
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:>10} [{bar:30}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    loop {
        let st = remote.get(&format!("/deployments/{id}/status")).await?;
        let status = st["status"].as_str().unwrap_or("unknown").to_string();
        bar.set_prefix(status.clone());
        bar.set_position(st["progress"].as_u64().unwrap_or(0));
        bar.set_message(st["operation"].as_str().unwrap_or_default().to_string());
        if !["pending", "running"].contains(&status.as_str()) {
            bar.finish_and_clear();
            print_status(&st);
            return if want.contains(&status.as_str()) {
                Ok(())
            } else {
                Err(CliError::Outcome(format!("{id} ended {status}")))
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_status(st: &Value) {
    println!(
        "{} {} ({} {}, progress {}%)",
        st["deployment_id"].as_str().unwrap_or_default(),
        st["status"].as_str().unwrap_or_default(),
        st["operation"].as_str().unwrap_or_default(),
        st["template_name"].as_str().unwrap_or_default(),
        st["progress"]
    );
    if let Some(outputs) = st["outputs"].as_object().filter(|o| !o.is_empty()) {
        println!("outputs:");
        for (k, v) in outputs {
            println!("  {k} = {v}");
        }
    }
    if let Some(e) = st["error_message"].as_str() {
        println!("error: {e}");
    }
}

pub async fn status(remote: &Remote, id: &str, watch: bool) -> Result<(), CliError> {
    if watch {
        return wait(
            remote,
            id,
            &["completed", "destroyed", "cancelled", "failed"],
        )
        .await;
    }
    print_status(&remote.get(&format!("/deployments/{id}/status")).await?);
    Ok(())
}

pub async fn logs(remote: &Remote, id: &str, follow: bool) -> Result<(), CliError> {
    if !follow {
        let mut after = 0;
        loop {
            let page = remote
                .get(&format!("/deployments/{id}/logs?after={after}&limit=5000"))
                .await?;
            let lines = page["lines"].as_array().cloned().unwrap_or_default();
            for l in &lines {
                println!("{}", l["line"].as_str().unwrap_or_default());
            }
            if lines.len() < 5000 {
                return Ok(());
            }
            after = page["next_after"].as_i64().unwrap_or(after);
        }
    }
    // Server-Sent Events until the `end` event.
    let url = format!(
        "{}/deployments/{id}/logs?follow=true",
        remote.url.trim_end_matches('/')
    );
    let mut client = awc::Client::builder().disable_timeout();
    if let Some(t) = &remote.token {
        client = client.bearer_auth(t);
    }
    let mut res = client
        .finish()
        .get(&url)
        .send()
        .await
        .map_err(|e| CliError::Api(format!("cannot reach {}: {e}", remote.url)))?;
    if !res.status().is_success() {
        return Err(CliError::Api(format!(
            "{id}: HTTP {}",
            res.status().as_u16()
        )));
    }
    let mut buf = String::new();
    use futures_util::StreamExt;
    while let Some(chunk) = res.next().await {
        let chunk = chunk.map_err(|e| CliError::Api(e.to_string()))?;
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let kind = event
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default();
            let data: Value = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            match kind {
                "log" => println!("{}", data["line"].as_str().unwrap_or_default()),
                "end" => {
                    eprintln!(
                        "-- {id} ended {}",
                        data["status"].as_str().unwrap_or_default()
                    );
                    return Ok(());
                }
                "error" => {
                    return Err(CliError::Api(
                        data["error"].as_str().unwrap_or("stream error").to_string(),
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

pub async fn cancel(remote: &Remote, id: &str) -> Result<(), CliError> {
    let d = remote
        .call(
            awc::http::Method::POST,
            &format!("/deployments/{id}/cancel"),
            Some(&json!({})),
        )
        .await?;
    println!(
        "{id}: cancel accepted (status {})",
        d["status"].as_str().unwrap_or_default()
    );
    Ok(())
}

pub async fn destroy(remote: &Remote, id: &str, wait_for_it: bool) -> Result<(), CliError> {
    remote
        .call(
            awc::http::Method::DELETE,
            &format!("/deployments/{id}"),
            None,
        )
        .await?;
    println!("{id}: destroy queued");
    if wait_for_it {
        wait(remote, id, &["destroyed"]).await
    } else {
        Ok(())
    }
}

/// Prints a run's plan the way terraform does: one line per resource, then its count line.
pub fn print_plan(run: &Value) {
    let plan = &run["plan"];
    if plan.is_null() {
        println!("(no plan)");
        return;
    }
    for r in plan["resources"].as_array().cloned().unwrap_or_default() {
        let mark = match r["action"].as_str().unwrap_or_default() {
            "create" => "+",
            "update" => "~",
            "delete" => "-",
            "replace" => "-/+",
            _ => "?",
        };
        println!(
            "  {mark} {} ({})",
            r["address"].as_str().unwrap_or_default(),
            r["type"].as_str().unwrap_or_default()
        );
    }
    println!("{}", plan["headline"].as_str().unwrap_or_default());
}

/// Polls `/runs/{id}` until the run ended or waits for a decision; answers the run.
pub async fn wait_run(remote: &Remote, run_id: &str) -> Result<Value, CliError> {
    loop {
        let run = remote.get(&format!("/runs/{run_id}")).await?;
        let status = run["status"].as_str().unwrap_or("unknown");
        if !["pending", "running"].contains(&status) {
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// A run ended as asked, or the exit says why not.
fn run_outcome(run: &Value, want: &[&str]) -> Result<(), CliError> {
    let status = run["status"].as_str().unwrap_or("unknown");
    if want.contains(&status) {
        return Ok(());
    }
    let mut msg = format!(
        "run {} ended {status}",
        run["run_id"].as_str().unwrap_or_default()
    );
    if let Some(e) = run["error_message"].as_str() {
        msg.push_str(&format!(": {e}"));
    }
    Err(CliError::Outcome(msg))
}

/// `multicloud plan <id>`: a speculative plan (with proposed parameters), printed.
pub async fn plan(remote: &Remote, id: &str, params: Vec<(String, Value)>) -> Result<(), CliError> {
    let params: serde_json::Map<String, Value> = params.into_iter().collect();
    let run = remote
        .call(
            awc::http::Method::POST,
            &format!("/deployments/{id}/plan"),
            Some(&json!({ "parameters": params })),
        )
        .await?;
    let run = wait_run(remote, run["run_id"].as_str().unwrap_or_default()).await?;
    run_outcome(&run, &["completed", "no_changes"])?;
    print_plan(&run);
    Ok(())
}

/// `multicloud update <id> -p k=v`: an update run; `--plan` stops at its plan.
pub async fn update(
    remote: &Remote,
    id: &str,
    params: Vec<(String, Value)>,
    plan_only: bool,
    wait_for_it: bool,
) -> Result<(), CliError> {
    let params: serde_json::Map<String, Value> = params.into_iter().collect();
    let run = remote
        .call(
            awc::http::Method::PATCH,
            &format!("/deployments/{id}"),
            Some(&json!({ "parameters": params, "auto_apply": !plan_only })),
        )
        .await?;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_string();
    println!("{id}: update queued (run {run_id})");
    if plan_only {
        let run = wait_run(remote, &run_id).await?;
        run_outcome(&run, &["planned", "no_changes"])?;
        print_plan(&run);
        if run["status"] == "planned" {
            println!("apply it with: multicloud apply {id}");
        }
        return Ok(());
    }
    if wait_for_it {
        let run = wait_run(remote, &run_id).await?;
        run_outcome(&run, &["completed", "no_changes"])?;
        print_status(&remote.get(&format!("/deployments/{id}/status")).await?);
    }
    Ok(())
}

/// `multicloud apply <id>`: confirms the planned run.
pub async fn apply(remote: &Remote, id: &str, wait_for_it: bool) -> Result<(), CliError> {
    let run = remote
        .call(
            awc::http::Method::POST,
            &format!("/deployments/{id}/apply"),
            Some(&json!({})),
        )
        .await?;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_string();
    println!("{id}: apply of run {run_id} queued");
    if wait_for_it {
        let run = wait_run(remote, &run_id).await?;
        run_outcome(&run, &["completed"])?;
        print_status(&remote.get(&format!("/deployments/{id}/status")).await?);
    }
    Ok(())
}

/// `multicloud discard <id>`: drops the planned run's plan.
pub async fn discard(remote: &Remote, id: &str) -> Result<(), CliError> {
    let run = remote
        .call(
            awc::http::Method::POST,
            &format!("/deployments/{id}/discard"),
            Some(&json!({})),
        )
        .await?;
    println!(
        "{id}: plan of run {} discarded",
        run["run_id"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// `multicloud drift <id>`: checks for drift; exit 1 when the cloud drifted.
pub async fn drift(remote: &Remote, id: &str) -> Result<(), CliError> {
    let run = remote
        .call(
            awc::http::Method::POST,
            &format!("/deployments/{id}/drift-check"),
            Some(&json!({})),
        )
        .await?;
    let run = wait_run(remote, run["run_id"].as_str().unwrap_or_default()).await?;
    run_outcome(&run, &["completed"])?;
    let d = remote.get(&format!("/deployments/{id}")).await?;
    let drift = &d["drift"];
    let resources = drift["resources"].as_array().cloned().unwrap_or_default();
    for r in &resources {
        println!(
            "  ~ {} ({}) changed outside the daemon",
            r["address"].as_str().unwrap_or_default(),
            r["type"].as_str().unwrap_or_default()
        );
    }
    match drift["status"].as_str() {
        Some("in_sync") => {
            println!("{id}: in sync");
            Ok(())
        }
        Some(other) => Err(CliError::Outcome(format!(
            "{id}: {other} ({} resource(s))",
            resources.len()
        ))),
        None => Err(CliError::Api(format!("{id}: no drift result"))),
    }
}

/// `multicloud runs <id>`: the deployment's runs, newest first.
pub async fn runs(remote: &Remote, id: &str) -> Result<(), CliError> {
    let data = remote.get(&format!("/deployments/{id}/runs")).await?;
    for r in data["runs"].as_array().cloned().unwrap_or_default() {
        println!(
            "{:<22} {:<12} {:<11} {:<28} {}",
            r["run_id"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            r["status"].as_str().unwrap_or_default(),
            r["created_at"].as_str().unwrap_or_default(),
            r["plan"]["headline"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// `GET /health`: healthy → Ok; unhealthy or unreachable → an outcome error (exit 1).
pub async fn health(remote: &Remote) -> Result<(), CliError> {
    match remote.get("/health").await {
        Ok(h) => {
            println!("{}", h["status"].as_str().unwrap_or("healthy"));
            Ok(())
        }
        Err(e) => Err(CliError::Outcome(format!("unhealthy: {e}"))),
    }
}

pub async fn templates(remote: &Remote, provider: Option<&str>) -> Result<(), CliError> {
    let path = match provider {
        Some(p) => format!("/templates?provider_type={p}"),
        None => "/templates".to_string(),
    };
    let data = remote.get(&path).await?;
    for t in data["templates"].as_array().cloned().unwrap_or_default() {
        println!(
            "{:<16} {:<24} {}",
            t["provider_type"].as_str().unwrap_or_default(),
            t["name"].as_str().unwrap_or_default(),
            t["title"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// `multicloud audit`: the audit trail, newest first.
pub async fn audit(remote: &Remote, filters: &[(&str, Option<String>)]) -> Result<(), CliError> {
    let query: Vec<String> = filters
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", query_escape(v))))
        .collect();
    let data = remote.get(&format!("/audit?{}", query.join("&"))).await?;
    for e in data["events"].as_array().cloned().unwrap_or_default() {
        println!(
            "{:<24} {:<16} {:<9} {:<22} {:<24} {:<14} {}",
            e["at"].as_str().unwrap_or_default(),
            e["actor"].as_str().unwrap_or_default(),
            e["role"].as_str().unwrap_or("-"),
            e["action"].as_str().unwrap_or_default(),
            e["target"].as_str().unwrap_or("-"),
            e["outcome"].as_str().unwrap_or_default(),
            e["status_code"]
        );
    }
    Ok(())
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn webhooks_list(remote: &Remote) -> Result<(), CliError> {
    let data = remote.get("/webhooks").await?;
    for w in data["webhooks"].as_array().cloned().unwrap_or_default() {
        let events: Vec<&str> = w["events"]
            .as_array()
            .map(|e| e.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "{:<20} {:<40} {}",
            w["webhook_id"].as_str().unwrap_or_default(),
            w["url"].as_str().unwrap_or_default(),
            events.join(",")
        );
    }
    Ok(())
}

pub async fn webhooks_add(
    remote: &Remote,
    url: &str,
    events: &[String],
    secret: &str,
) -> Result<(), CliError> {
    let w = remote
        .call(
            awc::http::Method::POST,
            "/webhooks",
            Some(&json!({"url": url, "events": events, "secret": secret})),
        )
        .await?;
    println!("{}", w["webhook_id"].as_str().unwrap_or_default());
    Ok(())
}

pub async fn webhooks_delete(remote: &Remote, id: &str) -> Result<(), CliError> {
    remote
        .call(awc::http::Method::DELETE, &format!("/webhooks/{id}"), None)
        .await?;
    println!("{id}: deleted");
    Ok(())
}

pub async fn webhooks_deliveries(remote: &Remote, id: &str) -> Result<(), CliError> {
    let data = remote.get(&format!("/webhooks/{id}/deliveries")).await?;
    for d in data["deliveries"].as_array().cloned().unwrap_or_default() {
        println!(
            "{:<8} {:<22} {:<40} {:<9} {:>2} {}",
            d["delivery_id"],
            d["event_type"].as_str().unwrap_or_default(),
            d["event_id"].as_str().unwrap_or_default(),
            d["status"].as_str().unwrap_or_default(),
            d["attempts"],
            d["last_error"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn webhooks_redeliver(
    remote: &Remote,
    id: &str,
    delivery_id: &str,
) -> Result<(), CliError> {
    remote
        .call(
            awc::http::Method::POST,
            &format!("/webhooks/{id}/deliveries/{delivery_id}/redeliver"),
            None,
        )
        .await?;
    println!("{id}: delivery {delivery_id} queued again");
    Ok(())
}

/// `multicloud token`: a new random token (or one read from stdin) and its `auth.tokens` entry,
/// which holds only the token's SHA-256: the configuration never has to hold a usable secret.
pub fn token(name: &str, role: &str, from_stdin: bool) -> Result<(), CliError> {
    use rand::RngCore;
    let role: crate::domain::Role = role.parse().map_err(|_| {
        CliError::Api(format!(
            "--role {role:?}: expected viewer, operator, approver or admin"
        ))
    })?;
    let entry = crate::config::NamedToken {
        name: name.to_string(),
        role,
        token_sha256: String::new(),
        token: String::new(),
    };
    let token = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CliError::Api(format!("reading the token: {e}")))?;
        line.trim().to_string()
    } else {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("mc_{hex}")
    };
    let digest: String = crate::config::token_digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let entry = crate::config::AuthSettings {
        tokens: vec![crate::config::TokenEntry::Named(
            crate::config::NamedToken {
                token_sha256: digest.clone(),
                ..entry
            },
        )],
        ..Default::default()
    };
    entry.resolve().map_err(|e| CliError::Api(e.to_string()))?;
    if !from_stdin {
        println!("token for {name} (shown once; the daemon keeps only its SHA-256):\n  {token}\n");
    }
    println!("add to auth.tokens in the configuration:");
    println!("  {{ name = \"{name}\", role = \"{role}\", token_sha256 = \"{digest}\" }},");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_as_json_when_they_can() {
        assert_eq!(parse_param("n=3"), Ok(("n".into(), json!(3))));
        assert_eq!(parse_param("b=true"), Ok(("b".into(), json!(true))));
        assert_eq!(
            parse_param("name=my-bucket"),
            Ok(("name".into(), json!("my-bucket")))
        );
        assert_eq!(
            parse_param("tags={\"a\":\"b\"}"),
            Ok(("tags".into(), json!({"a": "b"})))
        );
        assert_eq!(parse_param("eq=a=b"), Ok(("eq".into(), json!("a=b"))));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=x").is_err());
    }
}
