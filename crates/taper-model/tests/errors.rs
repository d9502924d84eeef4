//! Bad input is a typed error that names the problem: never a panic, an abort or
//! an allocation sized by a lying header.

mod common;

use std::path::Path;

use proptest::prelude::*;
use taper_model::gguf::{self, GgufHeader, TensorType};
use taper_model::{
    Architecture, CacheOptions, Error, KvDtype, LoadOptions, LogitsFor, Model, ModelWriter, Preset,
    Quant,
};

fn tiny(arch: Architecture) -> ModelWriter {
    ModelWriter::new(Preset::Tiny.config(arch, None)).seed(3)
}

fn tiny_gguf(dir: &Path, quant: Quant) -> std::path::PathBuf {
    let p = dir.join("tiny.gguf");
    tiny(Architecture::Llama)
        .quant(quant)
        .write_gguf(&p)
        .unwrap();
    p
}

fn load(p: &Path) -> Result<Model, Error> {
    Model::load(p, &LoadOptions::new())
}

/// Rewrites a GGUF file with its metadata edited by `edit`, keeping the tensors.
fn rewrite_gguf(src: &Path, dst: &Path, edit: impl FnOnce(&mut Vec<(String, gguf::Value)>)) {
    let bytes = std::fs::read(src).unwrap();
    let h = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
    let mut meta: Vec<(String, gguf::Value)> = h
        .metadata()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    edit(&mut meta);
    let specs: Vec<gguf::TensorSpec> = h
        .tensors
        .iter()
        .map(|t| gguf::TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            kind: t.kind,
        })
        .collect();
    let mut out = Vec::new();
    gguf::write(&mut out, &meta, &specs, |i, buf| {
        let t = &h.tensors[i];
        buf.extend_from_slice(&bytes[t.offset as usize..(t.offset + t.size) as usize]);
        Ok(())
    })
    .unwrap();
    std::fs::write(dst, out).unwrap();
}

#[test]
fn truncated_files_are_errors_at_every_length() {
    let d = tempfile::tempdir().unwrap();
    let p = tiny_gguf(d.path(), Quant::Pure(TensorType::Q8_0));
    let bytes = std::fs::read(&p).unwrap();
    let cut = d.path().join("cut.gguf");
    let h = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
    let header_len = h.data_offset as usize;
    let lengths = (0..header_len).step_by(7).chain([
        header_len,
        header_len + 10,
        bytes.len() / 2,
        bytes.len() - 1,
    ]);
    for len in lengths {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let e = load(&cut).unwrap_err();
        assert!(matches!(e, Error::Gguf { .. }), "cut at {len}: {e}");
    }
}

#[test]
fn unknown_architecture_and_missing_keys_are_named() {
    let d = tempfile::tempdir().unwrap();
    let p = tiny_gguf(d.path(), Quant::Pure(TensorType::Q8_0));
    let bad = d.path().join("bad.gguf");
    rewrite_gguf(&p, &bad, |m| {
        for (k, v) in m.iter_mut() {
            if k == "general.architecture" {
                *v = gguf::Value::String("gpt2".into());
            }
        }
    });
    let e = load(&bad).unwrap_err();
    assert!(
        matches!(&e, Error::UnknownArchitecture(a) if a == "gpt2"),
        "{e}"
    );
    rewrite_gguf(&p, &bad, |m| m.retain(|(k, _)| k != "llama.block_count"));
    let e = load(&bad).unwrap_err();
    assert!(
        matches!(&e, Error::MissingKey(k) if k == "llama.block_count"),
        "{e}"
    );
    rewrite_gguf(&p, &bad, |m| {
        for (k, v) in m.iter_mut() {
            if k == "llama.attention.head_count_kv" {
                *v = gguf::Value::U32(3);
            }
        }
    });
    let e = load(&bad).unwrap_err();
    assert!(e.to_string().contains("num_kv_heads"), "{e}");
}

#[test]
fn unsupported_tensor_type_names_the_tensor() {
    let d = tempfile::tempdir().unwrap();
    let p = tiny_gguf(d.path(), Quant::Pure(TensorType::F32));
    let mut bytes = std::fs::read(&p).unwrap();
    let h = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
    // The tensor directory entry of `output_norm.weight`: name, n_dims, dims, type.
    let name = b"output_norm.weight";
    let at = bytes.windows(name.len()).rposition(|w| w == name).unwrap();
    let type_at = at + name.len() + 4 + 8;
    assert_eq!(
        u32::from_le_bytes(bytes[type_at..type_at + 4].try_into().unwrap()),
        0
    );
    bytes[type_at..type_at + 4].copy_from_slice(&16u32.to_le_bytes()); // IQ2_XXS
    std::fs::write(&p, &bytes).unwrap();
    let e = load(&p).unwrap_err();
    assert!(
        matches!(&e, Error::UnsupportedTensorType { tensor, .. } if tensor == "output_norm.weight"),
        "{e}"
    );
    assert!(h.tensors.len() > 10);
}

#[test]
fn missing_extra_and_misshaped_tensors_name_the_tensor_and_shapes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("st");
    tiny(Architecture::Llama)
        .write_safetensors(&dir, None)
        .unwrap();
    let cfg_path = dir.join("config.json");
    let original = std::fs::read_to_string(&cfg_path).unwrap();
    let edit = |from: &str, to: &str| {
        std::fs::write(&cfg_path, original.replace(from, to)).unwrap();
        load(&dir).unwrap_err()
    };
    let e = edit("\"intermediate_size\":512", "\"intermediate_size\":1024");
    assert!(
        matches!(&e, Error::TensorShape { tensor, expected, found }
            if tensor == "model.layers.0.mlp.gate_proj.weight" && expected == &[1024, 256] && found == &[512, 256]),
        "{e}"
    );
    let e = edit("\"num_hidden_layers\":2", "\"num_hidden_layers\":3");
    assert!(
        matches!(&e, Error::MissingTensor(t) if t.starts_with("model.layers.2.")),
        "{e}"
    );
    let e = edit("\"num_hidden_layers\":2", "\"num_hidden_layers\":1");
    assert!(
        matches!(&e, Error::UnexpectedTensor(t) if t.starts_with("model.layers.1.")),
        "{e}"
    );
    let e = edit("LlamaForCausalLM", "MistralForCausalLM");
    assert!(
        matches!(&e, Error::UnknownArchitecture(a) if a == "MistralForCausalLM"),
        "{e}"
    );
    std::fs::write(&cfg_path, &original).unwrap();
    assert!(load(&dir).is_ok());
    // A safetensors header that lies about its length.
    let st = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&st, &bytes).unwrap();
    assert!(matches!(load(&dir).unwrap_err(), Error::Config(_)));
}

#[test]
fn context_overflow_and_bad_tokens_leave_the_cache_intact() {
    let d = tempfile::tempdir().unwrap();
    let m = load(&tiny_gguf(d.path(), Quant::Pure(TensorType::Q8_0))).unwrap();
    let mut c = m
        .new_cache(CacheOptions::new().context(16).dtype(KvDtype::F32))
        .unwrap();
    let before = m
        .forward(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], &mut c, LogitsFor::Last)
        .unwrap();
    let e = m.forward(&[1; 7], &mut c, LogitsFor::Last).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ContextOverflow {
                requested: 17,
                capacity: 16
            }
        ),
        "{e}"
    );
    assert_eq!(c.len(), 10);
    let e = m
        .forward(&[1, 99_999], &mut c, LogitsFor::Last)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TokenOutOfRange {
                token: 99_999,
                vocab: 512
            }
        ),
        "{e}"
    );
    assert_eq!(c.len(), 10);
    assert!(m.forward(&[], &mut c, LogitsFor::Last).is_err());
    // Exactly full still works, and the earlier state was not disturbed.
    c.truncate(9);
    let again = m.forward(&[10], &mut c, LogitsFor::Last).unwrap();
    assert_eq!(again.last(), before.last());
    m.forward(&[1; 6], &mut c, LogitsFor::Last).unwrap();
    assert_eq!(c.len(), 16);
    // Asking for more context than the model has, or than memory holds.
    let e = m
        .new_cache(CacheOptions::new().context(1 << 20))
        .unwrap_err();
    assert!(matches!(e, Error::ContextOverflow { .. }), "{e}");
    let default = m.new_cache(CacheOptions::new()).unwrap();
    assert_eq!(default.capacity(), m.config().max_context);
}

#[test]
fn a_cache_from_another_model_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let llama = load(&tiny_gguf(d.path(), Quant::Pure(TensorType::Q8_0))).unwrap();
    let p = d.path().join("q.gguf");
    let mut cfg = Preset::Tiny.config(Architecture::Qwen3, None);
    cfg.num_layers = 3;
    ModelWriter::new(cfg)
        .quant(Quant::Pure(TensorType::Q8_0))
        .write_gguf(&p)
        .unwrap();
    let qwen = load(&p).unwrap();
    let mut c = qwen.new_cache(CacheOptions::new().context(8)).unwrap();
    assert!(matches!(
        llama.forward(&[1], &mut c, LogitsFor::Last),
        Err(Error::Config(_))
    ));
}

#[test]
fn nan_weights_give_a_typed_error() {
    let d = tempfile::tempdir().unwrap();
    let p = tiny_gguf(d.path(), Quant::Pure(TensorType::F32));
    let mut bytes = std::fs::read(&p).unwrap();
    let h = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
    let t = h.tensor("output_norm.weight").unwrap();
    let at = t.offset as usize + 4 * 5;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let m = load(&p).unwrap();
    let mut c = m.new_cache(CacheOptions::new().context(8)).unwrap();
    let e = m.forward(&[1, 2], &mut c, LogitsFor::All).unwrap_err();
    assert!(matches!(e, Error::NonFiniteLogits { position: 0 }), "{e}");
    assert_eq!(c.len(), 0);
}

#[test]
fn a_model_and_a_tokenizer_that_do_not_fit_are_refused() {
    let tok = taper_model::Tokenizer::from_file(common::tokenizer_path("r1_llama")).unwrap();
    let cfg = Preset::Tiny.config(Architecture::Llama, None);
    let e = tok.check_model_vocab(cfg.vocab_size).unwrap_err();
    assert!(
        matches!(
            e,
            Error::VocabMismatch {
                tokenizer: 128_256,
                model: 512
            }
        ),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Random corruption of a real model file's header and first tensors: loading
    /// returns (an error or a model) and never panics or aborts.
    #[test]
    fn corrupted_files_never_panic(flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..6)) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.gguf");
        let bytes = fixture_bytes();
        let mut bytes = bytes.clone();
        for (at, v) in flips {
            let n = bytes.len().min(4096);
            bytes[at % n] = v;
        }
        std::fs::write(&p, &bytes).unwrap();
        if let Ok(m) = load(&p) {
            let mut c = m.new_cache(CacheOptions::new().context(4)).unwrap();
            let _ = m.forward(&[0, 1], &mut c, LogitsFor::Last);
        }
    }
}

fn fixture_bytes() -> &'static Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = Preset::Tiny.config(Architecture::Qwen3, Some(64));
        cfg.num_layers = 1;
        let p = d.path().join("m.gguf");
        ModelWriter::new(cfg)
            .quant(Quant::Pure(TensorType::Q8_0))
            .write_gguf(&p)
            .unwrap();
        std::fs::read(p).unwrap()
    })
}

/// A file whose writer packed the tensor data without alignment (`general.alignment`
/// 1, legal GGUF) loads, with the misaligned blocks copied into aligned memory, and
/// computes exactly what the aligned file does.
#[test]
fn misaligned_tensor_data_loads_and_computes_the_same() {
    let d = tempfile::tempdir().unwrap();
    for quant in [Quant::Pure(TensorType::Q8_0), Quant::Pure(TensorType::Q4K)] {
        let aligned = tiny_gguf(d.path(), quant);
        let packed = d.path().join("packed.gguf");
        // A padding key of 0-3 bytes moves the data section off a multiple of 4.
        let misaligned = (0..4).find_map(|pad| {
            rewrite_gguf(&aligned, &packed, |m| {
                m.retain(|(k, _)| k != "general.alignment");
                m.push(("general.alignment".into(), gguf::Value::U32(1)));
                m.push(("test.pad".into(), gguf::Value::String("x".repeat(pad))));
            });
            let bytes = std::fs::read(&packed).unwrap();
            let h = GgufHeader::read(&bytes[..], bytes.len() as u64).unwrap();
            (h.tensors
                .iter()
                .any(|t| t.kind == TensorType::Q8_0 || t.kind == TensorType::Q4K)
                && !h.data_offset.is_multiple_of(4))
            .then_some(())
        });
        assert!(
            misaligned.is_some(),
            "{quant:?}: no padding misaligned the data"
        );
        let tokens = [1, 2, 3, 4, 5];
        let logits = |p: &Path| {
            let m = load(p).unwrap();
            let mut c = m.new_cache(CacheOptions::new().context(8)).unwrap();
            m.forward(&tokens, &mut c, LogitsFor::All)
                .unwrap()
                .into_vec()
        };
        assert_eq!(logits(&aligned), logits(&packed), "{quant:?}");
    }
}
