//! Compile time of the built-in Bicep compiler, per catalog template and for the official
//! compiler's 17,000-line stress baseline: median and p99 of many runs in this process (no
//! process start, which alone costs the official .NET compiler far more).
//!
//! `cargo bench --bench bicep_compile`

use std::time::{Duration, Instant};

fn measure(src: &str, runs: usize) -> (Duration, Duration) {
    for _ in 0..runs / 10 + 1 {
        let _ = std::hint::black_box(multicloud::bicep::compile(src));
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = multicloud::bicep::compile(std::hint::black_box(src));
            let elapsed = t.elapsed();
            assert!(out.is_ok(), "{out:?}");
            elapsed
        })
        .collect();
    times.sort();
    (times[runs / 2], times[runs * 99 / 100])
}

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<_> = std::fs::read_dir(format!("{root}/templates"))
        .expect("templates")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bicep"))
        .collect();
    files.sort();
    files.push(
        format!(
            "{root}/tests/fixtures/bicep-conformance/baselines/LargeTemplate_Stress_LF/main.bicep"
        )
        .into(),
    );
    println!("| template | lines | median | p99 |");
    println!("|---|---|---|---|");
    let mut total = Duration::ZERO;
    let mut slowest = Duration::ZERO;
    for (i, path) in files.iter().enumerate() {
        let stress = i == files.len() - 1;
        let src = std::fs::read_to_string(path).expect("read");
        let (median, p99) = measure(&src, if stress { 50 } else { 2000 });
        if !stress {
            total += median;
            slowest = slowest.max(median);
        }
        println!(
            "| {} | {} | {:.1} µs | {:.1} µs |",
            path.file_name().unwrap_or_default().to_string_lossy(),
            src.lines().count(),
            median.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    println!(
        "\ncatalog: {} templates, slowest median {:.1} µs, all together {:.2} ms",
        files.len() - 1,
        slowest.as_secs_f64() * 1e6,
        total.as_secs_f64() * 1e3
    );
}
