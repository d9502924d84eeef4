//! A whole GGUF file as a user gets it: weights, tokenizer and chat template in one
//! file, loaded, prompted with the R1 markers, sampled and streamed.

mod common;

use taper_model::gguf::{GgufHeader, TensorType};
use taper_model::{
    Architecture, CacheOptions, LoadOptions, LogitsFor, Model, ModelWriter, Preset, Quant,
    SamplerConfig, Tokenizer,
};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn model_and_tokenizer_are_shareable_across_threads() {
    assert_send_sync::<Model>();
    assert_send_sync::<Tokenizer>();
}

fn write_with_tokenizer(
    arch: Architecture,
    name: &str,
    rows: usize,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.gguf"));
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/chat-templates/distill_llama_8b.jinja"),
    )
    .unwrap();
    ModelWriter::new(Preset::Tiny.config(arch, Some(rows)))
        .quant(Quant::Q4KM)
        .pooled_blocks(true)
        .seed(5)
        .tokenizer_json(common::tokenizer_json(name))
        .chat_template(template.clone())
        .write_gguf(&path)
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let h = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
    assert_eq!(
        h.get("tokenizer.chat_template").and_then(|v| v.as_str()),
        Some(template.as_str())
    );
    // Real Q4_K_M files mix Q4_K and Q6_K.
    let kinds: std::collections::HashSet<_> = h.tensors.iter().map(|t| t.kind).collect();
    assert!(
        kinds.contains(&TensorType::Q4K) && kinds.contains(&TensorType::Q6K),
        "{kinds:?}"
    );
    path
}

#[test]
fn gguf_with_embedded_tokenizer_generates_and_streams() {
    let d = tempfile::tempdir().unwrap();
    for (arch, name, rows) in [
        (Architecture::Llama, "r1_llama", 128_256),
        (Architecture::Qwen3, "r1_qwen3", 151_936),
    ] {
        let path = write_with_tokenizer(arch, name, rows, d.path());
        let model = Model::load(&path, &LoadOptions::new()).unwrap();
        let tok = Tokenizer::from_gguf_file(&path).unwrap();
        tok.check_model_vocab(model.config().vocab_size).unwrap();
        let reference = Tokenizer::from_file(common::tokenizer_path(name)).unwrap();
        let prompt_text =
            "<｜begin▁of▁sentence｜><｜User｜>What is 17 * 23?<｜Assistant｜><think>\n";
        let prompt = tok.encode(prompt_text).unwrap();
        assert_eq!(prompt, reference.encode(prompt_text).unwrap());
        assert_eq!(prompt[0], tok.bos_id().unwrap());

        let mut cache = model.new_cache(CacheOptions::new().context(128)).unwrap();
        let mut sampler = SamplerConfig::default().seed(11).build().unwrap();
        let mut logits = model.forward(&prompt, &mut cache, LogitsFor::Last).unwrap();
        let mut out = Vec::new();
        let mut stream = tok.decode_stream();
        let mut text = String::new();
        for _ in 0..24 {
            let t = sampler.sample(logits.last()).unwrap();
            out.push(t);
            text.push_str(&stream.step(t).unwrap());
            logits = model.forward(&[t], &mut cache, LogitsFor::Last).unwrap();
        }
        text.push_str(&stream.finish());
        assert_eq!(text, tok.decode(&out).unwrap());
        assert_eq!(cache.len(), prompt.len() + 24);

        // Rolling back into the prompt and resampling with the same seed reproduces
        // the same tokens.
        cache.truncate(prompt.len() - 1);
        let mut sampler = SamplerConfig::default().seed(11).build().unwrap();
        let mut logits = model
            .forward(&prompt[prompt.len() - 1..], &mut cache, LogitsFor::Last)
            .unwrap();
        let mut again = Vec::new();
        for _ in 0..24 {
            let t = sampler.sample(logits.last()).unwrap();
            again.push(t);
            logits = model.forward(&[t], &mut cache, LogitsFor::Last).unwrap();
        }
        assert_eq!(again, out, "{name}: rollback and resample must reproduce");
    }
}

#[test]
fn writer_is_deterministic_from_its_seed() {
    let d = tempfile::tempdir().unwrap();
    let cfg = Preset::Tiny.config(Architecture::Qwen3, None);
    let write = |seed, name: &str| {
        let p = d.path().join(name);
        ModelWriter::new(cfg.clone())
            .quant(Quant::Q4KM)
            .seed(seed)
            .write_gguf(&p)
            .unwrap();
        std::fs::read(p).unwrap()
    };
    let a = write(1, "a.gguf");
    assert_eq!(a, write(1, "b.gguf"));
    assert_ne!(a, write(2, "c.gguf"));
    let st = |seed, name: &str| {
        let p = d.path().join(name);
        ModelWriter::new(cfg.clone())
            .seed(seed)
            .write_safetensors(&p, None)
            .unwrap();
        std::fs::read(p.join("model.safetensors")).unwrap()
    };
    assert_eq!(st(3, "s1"), st(3, "s2"));
}

#[test]
fn real_8b_shapes_have_the_published_sizes() {
    // Parameter counts of the two distills (their model cards: 8.03B and 8.19B).
    let llama = Preset::Full8B.config(Architecture::Llama, None);
    let qwen = Preset::Full8B.config(Architecture::Qwen3, None);
    assert_eq!(llama.parameter_count() / 10_000_000, 803);
    assert_eq!(qwen.parameter_count() / 10_000_000, 819);
    assert_eq!(taper_model::tensor_plan(&llama).len(), 2 + 9 * 32 + 1);
    assert_eq!(taper_model::tensor_plan(&qwen).len(), 2 + 11 * 36 + 1);
}
