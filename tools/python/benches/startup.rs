//! Start-up latency of the Python sandbox, printed as a table: a one-shot
//! run, a fresh session's first call, and a call on a warm session, next to
//! the same interpreter started without any sandbox.
//!
//! Run with `cargo bench -p taper-python`; set `TAPER_PYTHON_BENCH_INTERPRETER`
//! to measure another interpreter than `python3` from `PATH`.

use std::time::{Duration, Instant};

use taper_python::{Outcome, Sandbox};

const CODE: &str = "print(1)";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut builder = Sandbox::builder();
    if let Some(interpreter) = std::env::var_os("TAPER_PYTHON_BENCH_INTERPRETER") {
        builder = builder.interpreter(interpreter);
    }
    let sandbox = builder.build().await?;
    let build = started.elapsed();
    println!(
        "interpreter {} (Python {:?}); build() took {:.1} ms",
        sandbox.interpreter().display(),
        sandbox.python_version(),
        ms(build)
    );
    for state in sandbox.protections() {
        println!(
            "  {:<20} {}",
            state.protection.to_string(),
            state.provided_by.as_deref().unwrap_or("MISSING")
        );
    }

    let mut rows = Vec::new();

    let mut plain = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let output = tokio::process::Command::new(sandbox.interpreter())
            .args(["-I", "-c", CODE])
            .output()
            .await?;
        plain.push(started.elapsed());
        assert!(output.status.success());
    }
    rows.push(("python3 -c, no sandbox", plain));

    let mut one_shot = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let run = sandbox.run(CODE).await?;
        one_shot.push(started.elapsed());
        assert_eq!(run.outcome, Outcome::Ok);
    }
    rows.push(("one-shot run", one_shot));

    let mut first_call = Vec::new();
    for _ in 0..50 {
        let mut session = sandbox.session()?;
        let started = Instant::now();
        let run = session.run(CODE).await?;
        first_call.push(started.elapsed());
        assert_eq!(run.outcome, Outcome::Ok);
        session.close().await;
    }
    rows.push(("session, first call", first_call));

    let mut session = sandbox.session()?;
    session.run(CODE).await?;
    let mut warm = Vec::new();
    for _ in 0..1000 {
        let started = Instant::now();
        let run = session.run(CODE).await?;
        warm.push(started.elapsed());
        assert_eq!(run.stdout, "1\n");
    }
    session.close().await;
    rows.push(("session, warm call", warm));

    println!();
    println!(
        "{:<24} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "latency (ms)", "runs", "mean", "p50", "p99", "max"
    );
    for (name, mut samples) in rows {
        samples.sort();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        println!(
            "{:<24} {:>6} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            name,
            samples.len(),
            ms(mean),
            ms(percentile(&samples, 50)),
            ms(percentile(&samples, 99)),
            ms(samples[samples.len() - 1]),
        );
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let index = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
