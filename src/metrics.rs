//! Prometheus metrics (`GET /metrics`, text format). Counters and histograms are recorded where
//! things happen (HTTP middleware, deployment actors, the terraform engine); gauges that
//! describe the database (deployments by status, queue depth, pool use) are read at scrape
//! time, so every node reports the same truth.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub provider_type: String,
    pub template: String,
    pub operation: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: String,
}

/// Gauges by status (deployments, runs).
pub type StatusGauges = Family<StatusLabels, Gauge>;

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Histogram>,
    pub run_duration: Family<RunLabels, Histogram>,
    pub terraform_steps: Family<StepLabels, Histogram>,
    pub deployments: Family<StatusLabels, Gauge>,
    pub runs: Family<StatusLabels, Gauge>,
    pub webhook_deliveries: Family<StatusLabels, Gauge>,
    pub queue_depth: Gauge,
    pub runs_running: Gauge,
    pub runner_capacity: Gauge,
    pub db_pool: Family<PoolLabels, Gauge>,
}

/// 0.5 ms to 16 s.
fn http_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// 1 s to about 2.3 h.
fn run_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

/// 50 ms to about 27 min.
fn step_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("multicloud");
    let http_requests = Family::<HttpLabels, Histogram>::new_with_constructor(http_buckets);
    registry.register(
        "http_request_duration_seconds",
        "HTTP request durations by route and status",
        http_requests.clone(),
    );
    let run_duration = Family::<RunLabels, Histogram>::new_with_constructor(run_buckets);
    registry.register(
        "run_duration_seconds",
        "Run durations by provider type, template, operation and final status",
        run_duration.clone(),
    );
    let terraform_steps = Family::<StepLabels, Histogram>::new_with_constructor(step_buckets);
    registry.register(
        "terraform_step_duration_seconds",
        "Durations of terraform steps (init, plan, apply...)",
        terraform_steps.clone(),
    );
    let deployments = Family::<StatusLabels, Gauge>::default();
    registry.register(
        "deployments",
        "Deployments in the database by status",
        deployments.clone(),
    );
    let runs = Family::<StatusLabels, Gauge>::default();
    registry.register(
        "runs",
        "Runs in the database by status (planned: waiting for a decision)",
        runs.clone(),
    );
    let webhook_deliveries = Family::<StatusLabels, Gauge>::default();
    registry.register(
        "webhook_deliveries",
        "Webhook deliveries by status (pending: to be tried, dead: gave up)",
        webhook_deliveries.clone(),
    );
    let queue_depth = Gauge::default();
    registry.register(
        "queue_depth",
        "Pending runs waiting for a runner",
        queue_depth.clone(),
    );
    let runs_running = Gauge::default();
    registry.register(
        "runs_running",
        "Runs this node is running",
        runs_running.clone(),
    );
    let runner_capacity = Gauge::default();
    registry.register(
        "runner_capacity",
        "Runs this node may run at once",
        runner_capacity.clone(),
    );
    let db_pool = Family::<PoolLabels, Gauge>::default();
    registry.register(
        "db_pool_connections",
        "Database pool connections by state",
        db_pool.clone(),
    );
    Metrics {
        registry,
        http_requests,
        run_duration,
        terraform_steps,
        deployments,
        runs,
        webhook_deliveries,
        queue_depth,
        runs_running,
        runner_capacity,
        db_pool,
    }
});

pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn observe_step(&self, step: &str, took: Duration) {
        self.terraform_steps
            .get_or_create(&StepLabels {
                step: step.to_string(),
            })
            .observe(took.as_secs_f64());
    }
}
