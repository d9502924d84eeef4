//! Load time, prefill and decode speed, and peak memory of the decoder on
//! random-weight files in the real 8B shapes.
//!
//! ```text
//! cargo bench -p taper-model --bench decode -- [--arch llama,qwen3] [--quant q4_k_m,q8_0]
//!     [--threads 1,2] [--prompt 512] [--gen 128] [--cache bench-cache]
//!     [--llama-bench PATH [--reps N]]
//! ```
//!
//! The files are written once into the cache directory (about 25 GB for all four),
//! with the real distill tokenizers embedded (`scripts/fetch-fixtures.sh` fetches
//! them) so that llama.cpp loads them too. Each measurement runs in a child process
//! with `RAYON_NUM_THREADS` set, so the thread count is exact and peak RSS (`VmHWM`)
//! belongs to that run alone.
//!
//! With `--llama-bench` (an absolute path: cargo runs benchmarks in the package's
//! directory), llama.cpp's `llama-bench` (built by `scripts/build-llama-bench.sh`,
//! which prints that path) measures the same file with the same thread count
//! right before or after ours (the order alternates from row to row, so that a
//! drift of the machine's memory bandwidth does not favour one side), and the table
//! gives both speeds and their ratio, and both sides' load to first token (a
//! one-token prompt, each side right after its speed runs, so from the page cache;
//! ours also with the weight cache, in `weights/` of the cache directory, written
//! by a load just before).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use taper_model::gguf::GgufHeader;
use taper_model::{
    Architecture, CacheOptions, LoadOptions, LogitsFor, Model, ModelWriter, Preset, Quant,
    SamplerConfig,
};

struct Opts {
    archs: Vec<String>,
    quants: Vec<String>,
    threads: Vec<usize>,
    prompt: usize,
    generate: usize,
    cache: PathBuf,
    llama_bench: Option<PathBuf>,
    reps: usize,
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::to_string).collect()
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        archs: list("llama,qwen3"),
        quants: list("q4_k_m,q8_0"),
        threads: vec![1, 2],
        prompt: 512,
        generate: 128,
        cache: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench-cache"),
        llama_bench: None,
        reps: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--arch" => o.archs = list(&val()?),
            "--quant" => o.quants = list(&val()?),
            "--threads" => {
                o.threads = list(&val()?)
                    .iter()
                    .map(|t| t.parse().map_err(|_| format!("bad thread count {t}")))
                    .collect::<Result<_, _>>()?
            }
            "--prompt" => o.prompt = val()?.parse().map_err(|_| "bad --prompt")?,
            "--gen" => o.generate = val()?.parse().map_err(|_| "bad --gen")?,
            "--cache" => o.cache = PathBuf::from(val()?),
            "--llama-bench" => o.llama_bench = Some(PathBuf::from(val()?)),
            "--reps" => o.reps = val()?.parse().map_err(|_| "bad --reps")?,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn main() {
    if let Some(pos) = std::env::args().position(|a| a == "--worker") {
        let args: Vec<String> = std::env::args().skip(pos + 1).collect();
        worker(&args);
        return;
    }
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let mut rows = Vec::new();
    let mut order = 0usize;
    for arch in &opts.archs {
        for quant in &opts.quants {
            let file = match ensure_file(&opts.cache, arch, quant) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
            };
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            for &t in &opts.threads {
                eprintln!("measuring {arch} {quant} with {t} thread(s)...");
                order += 1;
                let theirs_first = order.is_multiple_of(2);
                let mut theirs = None;
                if theirs_first {
                    theirs = opts
                        .llama_bench
                        .as_deref()
                        .map(|b| llama_bench(b, &file, t, &opts));
                }
                let ours = run_ours(&file, t, opts.prompt, opts.generate, None);
                if !theirs_first {
                    theirs = opts
                        .llama_bench
                        .as_deref()
                        .map(|b| llama_bench(b, &file, t, &opts));
                }
                // Load to first token, each side right after the other and after
                // its speed runs, so both read the file from the page cache; ours
                // without and with the weight cache (its first load writes it).
                let first_token = opts.llama_bench.as_deref().map(|b| {
                    let first = |cache: Option<&Path>| {
                        run_ours(&file, t, 1, 0, cache).map_or(f64::NAN, |r| {
                            let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                            f("load_s") + 1.0 / f("prefill_tps")
                        })
                    };
                    let plain = first(None);
                    let weights = opts.cache.join("weights");
                    first(Some(&weights));
                    FirstToken {
                        ours: plain,
                        cached: first(Some(&weights)),
                        theirs: llama_first_token(b, &file, t),
                    }
                });
                let row = Row {
                    name: format!("{arch} 8B {quant}"),
                    size,
                    threads: t,
                    ours,
                    theirs,
                    first_token,
                };
                eprintln!("{}", row.line(opts.llama_bench.is_some()));
                rows.push(row);
            }
        }
    }
    let compare = opts.llama_bench.is_some();
    if compare {
        println!(
            "\n| model | file GiB | threads | prefill {p} ours | prefill {p} llama.cpp | ratio | decode {g} ours | decode {g} llama.cpp | ratio | load to first token s ours | ours, weight cache | llama.cpp | our peak RSS GiB |",
            p = opts.prompt,
            g = opts.generate
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    } else {
        println!(
            "\n| model | file GiB | threads | load s | RSS after load GiB | prefill {} tok/s | decode {} tok/s | peak RSS GiB |",
            opts.prompt, opts.generate
        );
        println!("|---|---|---|---|---|---|---|---|");
    }
    for row in &rows {
        println!("{}", row.line(compare));
    }
}

/// What one side measured, in tokens/s (NaN where the run failed).
struct Speeds {
    prefill: f64,
    decode: f64,
}

/// One row of the table.
struct Row {
    name: String,
    size: u64,
    threads: usize,
    ours: Option<serde_json::Value>,
    theirs: Option<Option<Speeds>>,
    first_token: Option<FirstToken>,
}

/// Load to first token in seconds.
struct FirstToken {
    /// Ours, as by default.
    ours: f64,
    /// Ours with the weight cache written by an earlier load.
    cached: f64,
    /// llama.cpp's.
    theirs: f64,
}

fn gib(v: f64) -> f64 {
    v / (1u64 << 30) as f64
}

impl Row {
    fn line(&self, compare: bool) -> String {
        let f = |k: &str| {
            self.ours
                .as_ref()
                .and_then(|r| r[k].as_f64())
                .unwrap_or(f64::NAN)
        };
        if !compare {
            return format!(
                "| {} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                self.name,
                gib(self.size as f64),
                self.threads,
                f("load_s"),
                gib(f("load_rss")),
                f("prefill_tps"),
                f("decode_tps"),
                gib(f("peak_rss")),
            );
        }
        let theirs = self.theirs.as_ref().and_then(Option::as_ref);
        let (tp, td) = theirs.map_or((f64::NAN, f64::NAN), |s| (s.prefill, s.decode));
        let first = self.first_token.as_ref().unwrap_or(&FirstToken {
            ours: f64::NAN,
            cached: f64::NAN,
            theirs: f64::NAN,
        });
        format!(
            "| {} | {:.2} | {} | {:.2} | {:.2} | {:.2}x | {:.2} | {:.2} | {:.2}x | {:.2} | {:.2} | {:.2} | {:.2} |",
            self.name,
            gib(self.size as f64),
            self.threads,
            f("prefill_tps"),
            tp,
            f("prefill_tps") / tp,
            f("decode_tps"),
            td,
            f("decode_tps") / td,
            first.ours,
            first.cached,
            first.theirs,
            gib(f("peak_rss")),
        )
    }
}

/// Our side: this benchmark's worker in a child process with `threads` threads,
/// on a prompt of `prompt` tokens and `generate` more, with the weight cache in
/// `cache` if given.
fn run_ours(
    file: &Path,
    threads: usize,
    prompt: usize,
    generate: usize,
    cache: Option<&Path>,
) -> Option<serde_json::Value> {
    let out = Command::new(std::env::current_exe().expect("the bench binary exists"))
        .args([
            "--worker",
            &file.to_string_lossy(),
            &prompt.to_string(),
            &generate.to_string(),
        ])
        .args(cache)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .expect("the bench binary can run itself");
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    if parsed.is_none() {
        eprintln!("our run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parsed
}

/// llama.cpp's side: `llama-bench` on the same file and thread count, in two runs
/// that measure what ours does: the prompt from an empty cache, then the decode
/// with the prompt's tokens already in the cache (`-d`; its `-n` alone would
/// decode from an empty cache, where attention costs nothing).
fn llama_bench(bin: &Path, file: &Path, threads: usize, opts: &Opts) -> Option<Speeds> {
    let run = |prompt: usize, generate: usize, depth: usize| -> Option<f64> {
        let out = Command::new(bin)
            .arg("-m")
            .arg(file)
            .args(["-t", &threads.to_string()])
            .args(["-p", &prompt.to_string()])
            .args(["-n", &generate.to_string()])
            .args(["-d", &depth.to_string()])
            .args(["-r", &opts.reps.to_string()])
            .args(["-o", "json"])
            .output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            Ok(out) => {
                eprintln!(
                    "llama-bench failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                return None;
            }
            Err(e) => {
                eprintln!("cannot run {}: {e}", bin.display());
                return None;
            }
        };
        let tests: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
            .map_err(|e| eprintln!("llama-bench printed no JSON: {e}"))
            .ok()?;
        Some(
            tests
                .iter()
                .find(|t| t["n_prompt"] == prompt && t["n_gen"] == generate)
                .and_then(|t| t["avg_ts"].as_f64())
                .unwrap_or(f64::NAN),
        )
    };
    Some(Speeds {
        prefill: run(opts.prompt, 0, 0)?,
        decode: run(0, opts.generate, opts.prompt)?,
    })
}

/// llama.cpp's load to first token: the wall time of a `llama-bench` run of a
/// one-token prompt without warm-up (process start, load, one forward pass),
/// against our worker's load plus its one-token forward pass. NaN if it fails.
fn llama_first_token(bin: &Path, file: &Path, threads: usize) -> f64 {
    let start = Instant::now();
    let out = Command::new(bin)
        .arg("-m")
        .arg(file)
        .args(["-t", &threads.to_string()])
        .args(["-p", "1", "-n", "0", "-r", "1", "--no-warmup", "-o", "json"])
        .output();
    match out {
        Ok(out) if out.status.success() => start.elapsed().as_secs_f64(),
        _ => {
            eprintln!("llama-bench's one-token run failed");
            f64::NAN
        }
    }
}

/// Whether the GGUF file at `path` carries a tokenizer (llama.cpp needs one).
fn has_tokenizer(path: &Path) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let len = file.metadata().map_or(0, |m| m.len());
    GgufHeader::read(std::io::BufReader::new(&mut file), len)
        .is_ok_and(|h| h.get("tokenizer.ggml.model").is_some())
}

/// Writes the random 8B-shaped file for `arch` and `quant`, with the real distill
/// tokenizer embedded, unless it is cached (a cached file without a tokenizer, from
/// an older version of this benchmark, is written again).
fn ensure_file(cache: &Path, arch: &str, quant: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let path = cache.join(format!("{arch}-8b-{quant}.gguf"));
    if path.exists() && has_tokenizer(&path) {
        return Ok(path);
    }
    let a = match arch {
        "llama" => Architecture::Llama,
        "qwen3" => Architecture::Qwen3,
        other => return Err(format!("unknown arch {other}")),
    };
    let tokenizer = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../fixtures/cache/r1_{arch}.tokenizer.json"));
    let tokenizer = std::fs::read_to_string(&tokenizer).map_err(|e| {
        format!(
            "{}: {e} (run scripts/fetch-fixtures.sh)",
            tokenizer.display()
        )
    })?;
    let q = Quant::parse(quant).ok_or(format!("unknown quant {quant}"))?;
    let tmp = path.with_extension("partial");
    let start = Instant::now();
    let last = std::sync::Mutex::new(0u64);
    let label = format!("writing {}", path.display());
    ModelWriter::new(Preset::Full8B.config(a, None))
        .quant(q)
        .seed(8)
        .tokenizer_json(tokenizer)
        .pooled_blocks(true)
        .progress(move |done, total| {
            let pct = done * 100 / total.max(1);
            let mut l = last.lock().expect("no panics while holding the lock");
            if pct >= *l + 5 {
                *l = pct;
                eprintln!("{label}: {pct}%");
            }
        })
        .write_gguf(&tmp)
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {} in {:.0} s",
        path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(path)
}

fn worker(args: &[String]) {
    let (file, prompt, generate, cache) = match args {
        [file, prompt, generate] => (file, prompt, generate, None),
        [file, prompt, generate, cache] => (file, prompt, generate, Some(cache)),
        _ => {
            eprintln!("worker needs FILE PROMPT GEN [WEIGHT_CACHE_DIR]");
            std::process::exit(2);
        }
    };
    let prompt: usize = prompt.parse().expect("prompt length is a number");
    let generate: usize = generate.parse().expect("generation length is a number");
    let start = Instant::now();
    let mut opts = LoadOptions::new();
    if let Some(dir) = cache {
        opts = opts.weight_cache(dir);
    }
    let model = Model::load(file, &opts).expect("the benchmark file loads");
    let load_s = start.elapsed().as_secs_f64();
    let load_rss = taper_model::peak_rss().unwrap_or(0);
    let vocab = model.config().vocab_size as u64;
    let tokens: Vec<u32> = (0..prompt as u64)
        .map(|i| ((i * 2_654_435_761) % vocab) as u32)
        .collect();
    let mut cache = model
        .new_cache(CacheOptions::new().context(prompt + generate + 1))
        .expect("the cache fits");
    let mut sampler = SamplerConfig::greedy().build().expect("greedy is valid");
    let t = Instant::now();
    let logits = model
        .forward(&tokens, &mut cache, LogitsFor::Last)
        .expect("prefill runs");
    let prefill_s = t.elapsed().as_secs_f64();
    let mut next = sampler.sample(logits.last()).expect("a token");
    let t = Instant::now();
    for _ in 0..generate {
        let l = model
            .forward(&[next], &mut cache, LogitsFor::Last)
            .expect("decode runs");
        next = sampler.sample(l.last()).expect("a token");
    }
    let decode_s = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "load_s": load_s,
            "prefill_tps": prompt as f64 / prefill_s,
            "decode_tps": generate as f64 / decode_s,
            "load_rss": load_rss,
            "peak_rss": taper_model::peak_rss().unwrap_or(0),
        })
    );
}
