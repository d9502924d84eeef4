//! Throughput of the calculator on a corpus of 1,000 GSM8K-style expressions
//! (money with cents, percentages, multi-step arithmetic with parentheses, a few
//! roots and powers), generated from a fixed seed. Prints a table, asserts nothing.
//!
//! Run with `cargo bench -p taper-calculator`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use taper_calculator::Calculator;

const EXPRESSIONS: usize = 1_000;
const ROUNDS: usize = 20;
const SEED: u64 = 0x7a9e_5eed;

/// SplitMix64: a small, fixed, dependency-free generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// A price such as `12.50`, `3.99` or `125`.
    fn money(&mut self) -> String {
        let dollars = self.int(1, 400);
        match self.int(0, 3) {
            0 => format!("{dollars}"),
            1 => format!("{dollars}.{}0", self.int(1, 9)),
            2 => format!("{dollars}.99"),
            _ => format!("{dollars}.{:02}", self.int(1, 99)),
        }
    }

    /// A percentage such as `15%` or `7.5%`.
    fn percent(&mut self) -> String {
        if self.int(0, 3) == 0 {
            format!("{}.5%", self.int(1, 30))
        } else {
            format!("{}%", 5 * self.int(1, 12))
        }
    }
}

/// One GSM8K-style expression.
fn expression(rng: &mut Rng) -> String {
    let (a, b, c) = (rng.int(2, 60), rng.int(2, 60), rng.int(2, 60));
    match rng.int(0, 15) {
        0 => format!("{} * {a} + {} * {b}", rng.money(), rng.money()),
        1 => format!("({} - {}) / {a}", rng.money(), rng.money()),
        2 => format!("{} * {a} * (1 - {})", rng.money(), rng.percent()),
        3 => format!("{} + {}", rng.money(), rng.percent()),
        4 => format!("{} - {}", rng.money(), rng.percent()),
        5 => format!("({a} + {b} + {c}) / 3"),
        6 => format!(
            "{a} * {b} - {c} * ({} - {})",
            rng.int(20, 90),
            rng.int(1, 19)
        ),
        7 => format!(
            "{} * (1 + {})^{}",
            rng.int(1, 50) * 100,
            rng.percent(),
            rng.int(1, 10)
        ),
        8 => format!("sqrt({})", rng.int(1, 40).pow(2)),
        9 => format!("sqrt({a}^2 + {b}^2)"),
        10 => format!("{a} * {} + {b} * {} * 1.5", rng.money(), rng.money()),
        11 => format!("{a} / {} * 100", a + b),
        12 => format!("round({} * {a} / {b}, 2)", rng.money()),
        13 => format!("{} % {a}", rng.int(100, 999)),
        14 => format!("2^{a} - {b} * {c}"),
        _ => format!(
            "(({} * {a}) + ({} * {b})) * {} / {c}",
            rng.money(),
            rng.money(),
            rng.percent()
        ),
    }
}

struct Row {
    label: &'static str,
    samples: Vec<Duration>,
    total: Duration,
}

impl Row {
    fn print(&self) {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let n = sorted.len();
        let mean = micros(self.total) / n as f64;
        let p50 = micros(sorted[n / 2]);
        let p99 = micros(sorted[(n * 99 / 100).min(n - 1)]);
        println!(
            "| {:<22} | {:>11} | {:>10} | {:>8.1} ms | {:>10.0} | {:>7.2} | {:>7.2} | {:>7.2} |",
            self.label,
            EXPRESSIONS,
            n,
            self.total.as_secs_f64() * 1e3,
            n as f64 / self.total.as_secs_f64(),
            mean,
            p50,
            p99
        );
    }
}

fn measure(label: &'static str, corpus: &[String], mut run: impl FnMut(&str)) -> Row {
    let mut samples = Vec::with_capacity(corpus.len() * ROUNDS);
    let mut total = Duration::ZERO;
    for _ in 0..ROUNDS {
        for expr in corpus {
            let start = Instant::now();
            run(expr);
            let elapsed = start.elapsed();
            total += elapsed;
            samples.push(elapsed);
        }
    }
    Row {
        label,
        samples,
        total,
    }
}

fn main() {
    let mut rng = Rng(SEED);
    let corpus: Vec<String> = (0..EXPRESSIONS).map(|_| expression(&mut rng)).collect();
    let calc = Calculator::new();

    let (mut exact, mut approximate, mut errors) = (0, 0, 0);
    for expr in &corpus {
        match calc.evaluate(expr) {
            Ok(v) if v.is_exact() => exact += 1,
            Ok(_) => approximate += 1,
            Err(e) => {
                errors += 1;
                eprintln!("{expr}: {e}");
            }
        }
    }
    // Warm up caches and the allocator before timing.
    for expr in &corpus {
        black_box(calc.evaluate(expr).ok());
    }

    let evaluate = measure("evaluate", &corpus, |e| {
        black_box(calc.evaluate(black_box(e)).ok());
    });
    let answer = measure("evaluate + to_string", &corpus, |e| {
        black_box(calc.evaluate(black_box(e)).map(|v| v.to_string()).ok());
    });

    println!(
        "taper-calculator: {EXPRESSIONS} GSM8K-style expressions (seed {SEED:#x}), {ROUNDS} rounds; \
         {exact} exact, {approximate} approximate, {errors} errors"
    );
    println!("examples: {}", corpus[..4].join("  |  "));
    println!(
        "| {:<22} | {:>11} | {:>10} | {:>11} | {:>10} | {:>7} | {:>7} | {:>7} |",
        "", "expressions", "evals", "total", "evals/s", "mean us", "p50 us", "p99 us"
    );
    let rule: Vec<String> = [22, 11, 10, 11, 10, 7, 7, 7]
        .iter()
        .map(|w| "-".repeat(w + 2))
        .collect();
    println!("|{}|", rule.join("|"));
    evaluate.print();
    answer.print();
}
