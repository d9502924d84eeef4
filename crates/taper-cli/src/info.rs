//! `taper info`: what a model is and how much memory it needs, read from its GGUF
//! header (or `config.json` and safetensors headers) without loading the weights.

use std::fs::File;
use std::io::{BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use clap::Args;
use taper_model::gguf::{GgufHeader, TensorType};
use taper_model::{KvDtype, ModelConfig};

use crate::error::CliError;

/// The example `taper info --help` shows.
pub const EXAMPLE: &str = "Example:\n  taper info --model DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf\n\nThe memory table adds the weights and an f16 KV cache for each context, and\ncompares the sum with the memory available now.";

/// Arguments of `taper info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The model: a GGUF file, or a Hugging Face directory (config.json and
    /// safetensors).
    #[arg(long, value_name = "FILE.gguf|DIR")]
    pub model: PathBuf,
}

/// What `info` reads from a file's header.
struct Summary {
    config: ModelConfig,
    /// Tensor types with their tensor count and bytes, most bytes first.
    types: Vec<(String, usize, u64)>,
    weight_bytes: u64,
    name: Option<String>,
    /// llama.cpp's name of the file's mix (`general.file_type`), where it has one.
    mix: Option<&'static str>,
}

/// Prints the model's description and memory table.
pub fn info(args: &InfoArgs) -> Result<(), CliError> {
    let summary = if args.model.is_dir() {
        read_directory(&args.model)
    } else {
        read_summary(&args.model)
    };
    let summary = summary.map_err(|source| CliError::Inspect {
        path: args.model.clone(),
        source,
    })?;
    let text = render(&args.model, &summary, taper_model::available_memory());
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(CliError::Output)
}

/// Reads the header, the config it describes and the tensor types.
fn read_summary(path: &Path) -> taper_model::Result<Summary> {
    let io = |e| taper_model::Error::Io {
        path: path.to_owned(),
        source: e,
    };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let header = GgufHeader::read(BufReader::new(&mut file), len)?;
    let embedding = header
        .tensor("token_embd.weight")
        .ok_or_else(|| taper_model::Error::MissingTensor("token_embd.weight".into()))?;
    let rows = embedding.shape().first().copied().unwrap_or(0);
    let tied = header.tensor("output.weight").is_none();
    let rope_freqs = match header.tensor("rope_freqs.weight") {
        None => None,
        Some(t) if t.kind != TensorType::F32 => {
            return Err(taper_model::Error::UnsupportedTensorType {
                tensor: t.name.clone(),
                kind: t.kind.to_string(),
            });
        }
        Some(t) => {
            let mut bytes = vec![0u8; usize::try_from(t.size).unwrap_or(usize::MAX)];
            file.seek(SeekFrom::Start(t.offset)).map_err(io)?;
            file.read_exact(&mut bytes).map_err(io)?;
            Some(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
    };
    let config = ModelConfig::from_gguf(&header, rows, tied, rope_freqs)?;
    let types = tally(header.tensors.iter().map(|t| (t.kind.name(), t.size)));
    Ok(Summary {
        weight_bytes: header.tensors.iter().map(|t| t.size).sum(),
        name: header
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        mix: header
            .get("general.file_type")
            .and_then(|v| v.as_u64())
            .and_then(file_type_name),
        config,
        types,
    })
}

/// Tensor counts and bytes per type, most bytes first.
fn tally<'a>(tensors: impl Iterator<Item = (&'a str, u64)>) -> Vec<(String, usize, u64)> {
    let mut types: Vec<(String, usize, u64)> = Vec::new();
    for (kind, size) in tensors {
        match types.iter_mut().find(|(k, _, _)| k == kind) {
            Some((_, count, bytes)) => {
                *count += 1;
                *bytes += size;
            }
            None => types.push((kind.to_owned(), 1, size)),
        }
    }
    types.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    types
}

/// Reads a Hugging Face directory: `config.json` and the safetensors headers.
fn read_directory(dir: &Path) -> taper_model::Result<Summary> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| taper_model::Error::Io { path, source }
    };
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let config = ModelConfig::from_hf_json(&text)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(taper_model::Error::Config(format!(
            "{} has no .safetensors files",
            dir.display()
        )));
    }
    let mut tensors = Vec::new();
    for path in &files {
        tensors.extend(safetensors_header(path)?);
    }
    Ok(Summary {
        weight_bytes: tensors.iter().map(|(_, size)| size).sum(),
        types: tally(tensors.iter().map(|(kind, size)| (kind.as_str(), *size))),
        name: None,
        mix: None,
        config,
    })
}

/// The dtype and byte size of each tensor of a safetensors file, from its header.
fn safetensors_header(path: &Path) -> taper_model::Result<Vec<(String, u64)>> {
    let io = |source| taper_model::Error::Io {
        path: path.to_owned(),
        source,
    };
    let bad = |reason: &str| taper_model::Error::Config(format!("{}: {reason}", path.display()));
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut size = [0u8; 8];
    file.read_exact(&mut size).map_err(io)?;
    let size = u64::from_le_bytes(size);
    if size > len.saturating_sub(8) || size > 1 << 30 {
        return Err(bad("the header length runs past the end of the file"));
    }
    let mut head = vec![0u8; size as usize];
    file.read_exact(&mut head).map_err(io)?;
    let head: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&head).map_err(|_| bad("the header is not a JSON object"))?;
    head.iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, entry)| {
            let dtype = entry["dtype"].as_str();
            let offsets = entry["data_offsets"]
                .as_array()
                .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)));
            match (dtype, offsets) {
                (Some(dtype), Some((start, end))) if start <= end => {
                    Ok((dtype.to_owned(), end - start))
                }
                _ => Err(bad(&format!(
                    "tensor `{name}` has no dtype or data offsets"
                ))),
            }
        })
        .collect()
}

/// llama.cpp's name for a `general.file_type` (`llama_ftype`) value.
fn file_type_name(id: u64) -> Option<&'static str> {
    Some(match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

/// The contexts of the memory table: 1k, 4k, 8k, 16k, ... below the model's
/// maximum, then the maximum itself.
fn contexts(max: usize) -> Vec<usize> {
    let mut out: Vec<usize> = [1024, 4096]
        .into_iter()
        .chain(std::iter::successors(Some(8192usize), |n| n.checked_mul(2)))
        .take_while(|&n| n < max)
        .collect();
    out.push(max);
    out
}

/// The whole report, as printed.
fn render(path: &Path, s: &Summary, available: Option<u64>) -> String {
    let c = &s.config;
    let mut out = String::new();
    let mut row = |key: &str, value: String| out.push_str(&format!("{key:<14}{value}\n"));
    row("model", path.display().to_string());
    if let Some(name) = &s.name {
        row("name", name.clone());
    }
    row(
        "architecture",
        format!(
            "{}: {} layers, hidden {}, {} heads ({} kv, dim {}), FFN {}, vocab {}",
            c.architecture.gguf_name(),
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim,
            c.intermediate_size,
            c.vocab_size
        ),
    );
    row("parameters", count(c.parameter_count()));
    let types: Vec<String> = s
        .types
        .iter()
        .map(|(kind, n, bytes)| {
            let noun = if *n == 1 { "tensor" } else { "tensors" };
            format!("{kind} ({n} {noun}, {})", size(*bytes))
        })
        .collect();
    let types = types.join(", ");
    row(
        "quantization",
        match s.mix {
            Some(mix) => format!("{mix}: {types}"),
            None => types,
        },
    );
    row("weights", size(s.weight_bytes));
    row("max context", format!("{} tokens", c.max_context));
    row(
        "available",
        available.map_or_else(|| "unknown".to_owned(), size),
    );
    out.push('\n');
    out.push_str(&memory_table(s, available));
    out
}

/// Weights, f16 KV cache and their sum at each context of [`contexts`], and whether
/// the sum fits in `available`.
fn memory_table(s: &Summary, available: Option<u64>) -> String {
    let c = &s.config;
    let kv = c.kv_bytes_per_token(KvDtype::F16.bytes());
    let mut out = format!(
        "{:>8}  {:>12}  {:>14}  {:>12}  {}\n",
        "context", "weights", "KV cache (f16)", "total", "memory"
    );
    for n in contexts(c.max_context) {
        let cache = kv.saturating_mul(n as u64);
        let total = s.weight_bytes.saturating_add(cache);
        let fits = match available {
            Some(avail) if total <= avail => "fits",
            Some(_) => "does not fit",
            None => "unknown",
        };
        out.push_str(&format!(
            "{n:>8}  {:>12}  {:>14}  {:>12}  {fits}\n",
            size(s.weight_bytes),
            size(cache),
            size(total)
        ));
    }
    out
}

/// Before a model loads: refuses a context longer than the model's maximum, or one
/// whose weights and KV cache need more memory than is available, with the memory
/// table. Without a context, refuses weights that alone do not fit.
pub fn check_context(path: &Path, context: Option<u64>) -> Result<(), CliError> {
    let summary = if path.is_dir() {
        read_directory(path)
    } else {
        read_summary(path)
    };
    // An unreadable header is reported by the load itself, with its cause.
    let Ok(summary) = summary else {
        return Ok(());
    };
    match context_problem(&summary, context, taper_model::available_memory()) {
        None => Ok(()),
        Some(reason) => Err(CliError::ContextTooLarge {
            reason,
            table: memory_table(&summary, taper_model::available_memory()),
        }),
    }
}

/// Why `context` (or the weights alone) cannot be served, if it cannot.
fn context_problem(s: &Summary, context: Option<u64>, available: Option<u64>) -> Option<String> {
    let max = s.config.max_context as u64;
    if let Some(n) = context
        && n > max
    {
        return Some(format!(
            "a context of {n} tokens is longer than the model's maximum of {max}"
        ));
    }
    let avail = available?;
    let kv = s.config.kv_bytes_per_token(KvDtype::F16.bytes());
    let (what, total) = match context {
        Some(n) => (
            format!("a context of {n} tokens needs"),
            s.weight_bytes.saturating_add(kv.saturating_mul(n)),
        ),
        None => ("the weights alone need".to_owned(), s.weight_bytes),
    };
    (total > avail).then(|| {
        format!(
            "{what} {} of memory (weights and f16 KV cache), more than the {} available",
            size(total),
            size(avail)
        )
    })
}

/// Bytes in binary units.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// A parameter count: 8.03 B, 78.5 M.
fn count(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} K", n / 1e3)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_double_up_to_the_maximum() {
        assert_eq!(contexts(2048), vec![1024, 2048]);
        assert_eq!(contexts(4096), vec![1024, 4096]);
        assert_eq!(
            contexts(131_072),
            vec![1024, 4096, 8192, 16384, 32768, 65536, 131_072]
        );
        assert_eq!(contexts(512), vec![512]);
        assert_eq!(contexts(10_000), vec![1024, 4096, 8192, 10_000]);
    }

    #[test]
    fn sizes_and_counts_read_naturally() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3 << 29), "1.50 GiB");
        assert_eq!(count(8_030_261_248), "8.03 B");
        assert_eq!(count(78_500_000), "78.5 M");
    }

    #[test]
    fn the_table_marks_what_fits() {
        let config = taper_model::Preset::Full8B.config(taper_model::Architecture::Qwen3, None);
        let summary = Summary {
            config,
            types: vec![("Q4_K".into(), 10, 4 << 30)],
            weight_bytes: 4 << 30,
            name: None,
            mix: file_type_name(15),
        };
        // 8 GiB: the weights and the short contexts fit, the long ones do not.
        let text = render(Path::new("m.gguf"), &summary, Some(8 << 30));
        let row = |n: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(n))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(row("1024 ").ends_with("  fits"), "{text}");
        assert!(row("131072 ").ends_with("does not fit"), "{text}");
        assert!(text.contains("qwen3: 36 layers"), "{text}");
        assert!(
            text.contains("context       weights  KV cache (f16)"),
            "{text}"
        );
        assert!(
            text.contains("quantization  Q4_K_M: Q4_K (10 tensors, 4.00 GiB)"),
            "{text}"
        );
    }

    #[test]
    fn a_context_that_cannot_fit_is_refused_with_its_reason() {
        let config = taper_model::Preset::Full8B.config(taper_model::Architecture::Llama, None);
        let summary = Summary {
            config,
            types: vec![("Q4_K".into(), 10, 4 << 30)],
            weight_bytes: 4 << 30,
            name: None,
            mix: None,
        };
        let gib = 1u64 << 30;
        assert_eq!(context_problem(&summary, Some(4096), Some(8 * gib)), None);
        assert_eq!(context_problem(&summary, None, Some(8 * gib)), None);
        // Llama-8B: 128 KiB of f16 KV cache per token, so 64k tokens need 8 GiB more.
        let why = context_problem(&summary, Some(65_536), Some(8 * gib)).unwrap();
        assert_eq!(
            why,
            "a context of 65536 tokens needs 12.00 GiB of memory (weights and f16 KV cache), more than the 8.00 GiB available"
        );
        let why = context_problem(&summary, None, Some(2 * gib)).unwrap();
        assert!(why.starts_with("the weights alone need 4.00 GiB"), "{why}");
        let why = context_problem(&summary, Some(200_000), None).unwrap();
        assert_eq!(
            why,
            "a context of 200000 tokens is longer than the model's maximum of 131072"
        );
        assert!(context_problem(&summary, Some(1 << 20), None).is_some());
    }
}
