//! Parity with Hugging Face transformers and between weight formats, on the tiny
//! random models (llama3 rope scaling and YaRN on, positions far past the tiny
//! configs' original context of 64).
//!
//! The reference logits come from `scripts/make-parity-fixtures.sh` (transformers,
//! f32, CPU, one forward over all 320 tokens); the models are rebuilt here from the
//! same seed.

use std::path::{Path, PathBuf};

use taper_model::{
    Architecture, CacheOptions, KvCache, KvDtype, LoadOptions, LogitsFor, Model, ModelWriter,
    Preset, Quant, gguf::TensorType,
};

/// The seed `make-parity-fixtures.sh` writes the models with.
const MODEL_SEED: u64 = 1;
const TOLERANCE: f32 = 1e-4;

struct Reference {
    tokens: Vec<u32>,
    logits: Vec<f32>,
    vocab: usize,
}

impl Reference {
    fn load(arch: &str) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("parity_{arch}.json"))).unwrap(),
        )
        .unwrap();
        let tokens: Vec<u32> = meta["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let bytes = std::fs::read(dir.join(format!("parity_{arch}.logits.bin"))).unwrap();
        let logits = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect::<Vec<_>>();
        let vocab = meta["vocab"].as_u64().unwrap() as usize;
        assert_eq!(logits.len(), tokens.len() * vocab);
        Self {
            tokens,
            logits,
            vocab,
        }
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.logits[i * self.vocab..(i + 1) * self.vocab]
    }
}

fn arch_of(name: &str) -> Architecture {
    match name {
        "llama" => Architecture::Llama,
        _ => Architecture::Qwen3,
    }
}

fn writer(arch: &str) -> ModelWriter {
    ModelWriter::new(Preset::Tiny.config(arch_of(arch), None)).seed(MODEL_SEED)
}

fn safetensors_model(arch: &str, dir: &Path) -> Model {
    let path = dir.join(format!("{arch}-st"));
    writer(arch).write_safetensors(&path, None).unwrap();
    Model::load(&path, &LoadOptions::new()).unwrap()
}

fn gguf_model(arch: &str, quant: Quant, dir: &Path) -> Model {
    let path = dir.join(format!("{arch}-{quant:?}.gguf"));
    writer(arch).quant(quant).write_gguf(&path).unwrap();
    Model::load(&path, &LoadOptions::new()).unwrap()
}

fn cache(model: &Model) -> KvCache {
    model
        .new_cache(CacheOptions::new().context(512).dtype(KvDtype::F32))
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Logits of every position: prefill `split[0]` tokens, then single-token decodes
/// up to `split[1]`, then the rest as one chunk.
fn run_split(model: &Model, tokens: &[u32], prefill: usize, decode_to: usize) -> Vec<Vec<f32>> {
    let mut c = cache(model);
    let mut rows = Vec::new();
    let l = model
        .forward(&tokens[..prefill], &mut c, LogitsFor::All)
        .unwrap();
    rows.extend((0..l.rows()).map(|i| l.row(i).to_vec()));
    for &t in &tokens[prefill..decode_to] {
        rows.push(
            model
                .forward(&[t], &mut c, LogitsFor::Last)
                .unwrap()
                .last()
                .to_vec(),
        );
    }
    if decode_to < tokens.len() {
        let l = model
            .forward(&tokens[decode_to..], &mut c, LogitsFor::All)
            .unwrap();
        rows.extend((0..l.rows()).map(|i| l.row(i).to_vec()));
    }
    assert_eq!(c.len(), tokens.len());
    rows
}

fn check_against_reference(arch: &str, model: &Model, r: &Reference) {
    let n = r.tokens.len();
    for (label, prefill, decode_to) in [
        ("one prefill", n, n),
        ("prefill + decodes", 100, n),
        ("prefill + decodes + chunk", 70, 90),
    ] {
        let rows = run_split(model, &r.tokens, prefill, decode_to);
        let worst = (0..n)
            .map(|i| max_diff(&rows[i], r.row(i)))
            .fold(0.0, f32::max);
        assert!(
            worst <= TOLERANCE,
            "{arch} {label}: max |logit - transformers| = {worst}"
        );
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn llama_matches_transformers() {
    let d = tmp();
    let r = Reference::load("llama");
    check_against_reference("llama", &safetensors_model("llama", d.path()), &r);
}

#[test]
fn qwen3_matches_transformers() {
    let d = tmp();
    let r = Reference::load("qwen3");
    check_against_reference("qwen3", &safetensors_model("qwen3", d.path()), &r);
}

#[test]
fn truncate_and_refeed_gives_identical_logits() {
    let d = tmp();
    for arch in ["llama", "qwen3"] {
        let r = Reference::load(arch);
        let model = safetensors_model(arch, d.path());
        for k in [1, 63, 200, 319] {
            // Feed the prefix, then the rest: the reference for this split.
            let mut c = cache(&model);
            model
                .forward(&r.tokens[..k], &mut c, LogitsFor::Last)
                .unwrap();
            let first = model
                .forward(&r.tokens[k..], &mut c, LogitsFor::All)
                .unwrap();
            // Roll back to the split and feed the rest again.
            c.truncate(k);
            assert_eq!(c.len(), k);
            let again = model
                .forward(&r.tokens[k..], &mut c, LogitsFor::All)
                .unwrap();
            assert_eq!(
                again.into_vec(),
                first.into_vec(),
                "{arch}: after truncate({k})"
            );
        }
        // A different continuation after a rollback, then the original again.
        let mut c = cache(&model);
        model
            .forward(&r.tokens[..150], &mut c, LogitsFor::Last)
            .unwrap();
        let first = model
            .forward(&r.tokens[150..], &mut c, LogitsFor::All)
            .unwrap();
        c.truncate(150);
        model
            .forward(&[1, 2, 3, 4, 5], &mut c, LogitsFor::Last)
            .unwrap();
        c.truncate(150);
        let again = model
            .forward(&r.tokens[150..], &mut c, LogitsFor::All)
            .unwrap();
        assert_eq!(
            again.into_vec(),
            first.into_vec(),
            "{arch}: after a rejected continuation"
        );
    }
}

#[test]
fn gguf_and_safetensors_agree_and_quantized_stay_close() {
    let d = tmp();
    for arch in ["llama", "qwen3"] {
        let r = Reference::load(arch);
        let tokens = &r.tokens[..160];
        let all = |m: &Model| {
            let mut c = cache(m);
            m.forward(tokens, &mut c, LogitsFor::All)
                .unwrap()
                .into_vec()
        };
        let reference = all(&safetensors_model(arch, d.path()));
        let f32_gguf = all(&gguf_model(arch, Quant::Pure(TensorType::F32), d.path()));
        // The same weights; only llama's rope divisors round-trip through the f32
        // `rope_freqs.weight` tensor, a difference at the level of f32 rounding.
        let diff = max_diff(&reference, &f32_gguf);
        assert!(diff <= 1e-5, "{arch}: GGUF F32 vs safetensors: {diff}");
        // Tolerances on rms(error) / rms(logits). Each format's rounding error per
        // weight (relative to the weights' spread: f16 0.05%, bf16 0.4%, Q8_0 0.5%
        // plus the 8-bit quantized activations candle pairs with it, Q6_K 3%, Q5_K
        // 6%, Q4_K / Q4_0 12%) enters every one of the nine matmuls on the path to
        // a logit, and independent errors add up to about sqrt(9) = 3 times one
        // matmul's. Measured here: f16 0.0014, bf16 0.011, Q8_0 0.032, Q6_K 0.088,
        // Q5_K 0.17, Q4_K 0.33; the bounds leave about 50% headroom, and the
        // correlation bounds check the logits still rank tokens like f32.
        for (quant, rel, min_corr) in [
            (Quant::Pure(TensorType::F16), 0.003, 0.99999),
            (Quant::Pure(TensorType::BF16), 0.02, 0.9998),
            (Quant::Pure(TensorType::Q8_0), 0.05, 0.998),
            (Quant::Pure(TensorType::Q6K), 0.14, 0.99),
            (Quant::Pure(TensorType::Q5K), 0.26, 0.96),
            (Quant::Pure(TensorType::Q4K), 0.5, 0.87),
            (Quant::Pure(TensorType::Q4_0), 0.5, 0.87),
            (Quant::Q4KM, 0.5, 0.87),
        ] {
            let q = all(&gguf_model(arch, quant, d.path()));
            let err = relative_rms(&reference, &q);
            assert!(
                err <= rel,
                "{arch} {quant:?}: relative rms error {err} > {rel}"
            );
            // And it must be correlated with the f32 logits, not merely bounded.
            let corr = correlation(&reference, &q);
            assert!(corr >= min_corr, "{arch} {quant:?}: correlation {corr}");
        }
    }
}

/// `rms(a - b) / rms(a)`.
fn relative_rms(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
    (num / den).sqrt()
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().map(|&x| x as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&x| x as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn sharded_safetensors_load_like_one_file() {
    let d = tmp();
    let one = safetensors_model("qwen3", d.path());
    let dir: PathBuf = d.path().join("sharded");
    writer("qwen3")
        .write_safetensors(&dir, Some(1 << 20))
        .unwrap();
    assert!(dir.join("model.safetensors.index.json").exists());
    let sharded = Model::load(&dir, &LoadOptions::new()).unwrap();
    let toks = [5u32, 6, 7, 8];
    let a = one
        .forward(&toks, &mut cache(&one), LogitsFor::All)
        .unwrap();
    let b = sharded
        .forward(&toks, &mut cache(&sharded), LogitsFor::All)
        .unwrap();
    assert_eq!(a.into_vec(), b.into_vec());
}
