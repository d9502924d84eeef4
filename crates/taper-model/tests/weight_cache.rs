//! The weight cache: a later load maps the repacked matrices the first one wrote,
//! with the same logits, and a cache that is corrupt, stale or unwritable never
//! fails a load.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use taper_model::{
    Architecture, CacheOptions, KERNELS_ENV, LoadOptions, LogitsFor, Model, ModelWriter, Preset,
    Quant,
};

/// Whether loading repacks Q4_K matrices here (our kernels run), so that there is
/// something to cache.
fn repacks() -> bool {
    let wanted = std::env::var(KERNELS_ENV).map_or(true, |v| v != "none");
    #[cfg(target_arch = "x86_64")]
    let cpu = std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c");
    #[cfg(not(target_arch = "x86_64"))]
    let cpu = false;
    wanted && cpu
}

fn write_model(dir: &Path, arch: Architecture) -> PathBuf {
    let path = dir.join(format!("{arch:?}.gguf"));
    ModelWriter::new(Preset::Tiny.config(arch, None))
        .quant(Quant::Q4KM)
        .seed(3)
        .write_gguf(&path)
        .unwrap();
    path
}

fn logits(path: &Path, opts: &LoadOptions) -> Vec<f32> {
    let model = Model::load(path, opts).unwrap();
    let mut cache = model.new_cache(CacheOptions::new().context(16)).unwrap();
    let out = model
        .forward(&[1, 7, 42, 300, 5], &mut cache, LogitsFor::All)
        .unwrap();
    (0..5).flat_map(|i| out.row(i).to_vec()).collect()
}

/// The cache files in `dir` (none half-written may be left behind).
fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    assert!(
        files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "taper-weights")),
        "{files:?}"
    );
    files
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn later_loads_map_the_cache_the_first_wrote_with_the_same_logits() {
    let d = tempfile::tempdir().unwrap();
    let cache_dir = d.path().join("weights");
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let model = write_model(d.path(), arch);
        let plain = logits(&model, &LoadOptions::new());
        let opts = LoadOptions::new().weight_cache(&cache_dir);
        assert_eq!(logits(&model, &opts), plain, "{arch:?}, first load");
        let files = cache_files(&cache_dir);
        if !repacks() {
            assert!(files.is_empty(), "nothing is repacked, so nothing cached");
            continue;
        }
        let file = files
            .iter()
            .find(|f| f.to_string_lossy().contains(&format!("{arch:?}")))
            .expect("the first load wrote a cache for the model")
            .clone();
        let written = inode(&file);
        assert_eq!(logits(&model, &opts), plain, "{arch:?}, from the cache");
        assert_eq!(inode(&file), written, "a valid cache is not written again");
    }
}

/// Loads through the cache after `spoil` damaged it (or the model file): the
/// logits are those of a load without cache, and the cache is written anew.
fn recovers(spoil: impl Fn(&Path, &Path)) {
    let d = tempfile::tempdir().unwrap();
    let cache_dir = d.path().join("weights");
    let model = write_model(d.path(), Architecture::Qwen3);
    let plain = logits(&model, &LoadOptions::new());
    let opts = LoadOptions::new().weight_cache(&cache_dir);
    logits(&model, &opts);
    let [file] = &cache_files(&cache_dir)[..] else {
        panic!("one cache file expected");
    };
    let good_len = std::fs::metadata(file).unwrap().len();
    let before = inode(file);
    spoil(&model, file);
    assert_eq!(logits(&model, &opts), plain);
    assert_ne!(inode(file), before, "the damaged cache is written again");
    assert_eq!(std::fs::metadata(file).unwrap().len(), good_len);
    assert_eq!(logits(&model, &opts), plain);
}

#[test]
fn a_truncated_cache_is_written_again() {
    if repacks() {
        recovers(|_, cache| {
            let f = std::fs::OpenOptions::new().write(true).open(cache).unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len / 2).unwrap();
        });
    }
}

#[test]
fn a_cache_with_corrupt_weights_is_written_again() {
    if repacks() {
        recovers(|_, cache| {
            use std::os::unix::fs::FileExt;
            // The first matrix starts right after the 4 KiB header.
            let f = std::fs::OpenOptions::new().write(true).open(cache).unwrap();
            f.write_all_at(&[0x5a; 64], 4096).unwrap();
        });
    }
}

#[test]
fn a_cache_with_a_garbage_header_is_written_again() {
    if repacks() {
        recovers(|_, cache| {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(cache).unwrap();
            f.write_all_at(b"not a cache at all", 0).unwrap();
        });
    }
}

#[test]
fn a_cache_of_a_model_file_since_rewritten_is_written_again() {
    if repacks() {
        recovers(|model, _| {
            // Same weights, a new file: the cache cannot know, so it is renewed.
            let copy = model.with_extension("copy");
            std::fs::copy(model, &copy).unwrap();
            std::fs::rename(&copy, model).unwrap();
        });
    }
}

#[test]
fn an_unwritable_cache_directory_does_not_fail_the_load() {
    let d = tempfile::tempdir().unwrap();
    let model = write_model(d.path(), Architecture::Llama);
    let blocker = d.path().join("a file");
    std::fs::write(&blocker, b"in the way").unwrap();
    let opts = LoadOptions::new().weight_cache(blocker.join("weights"));
    assert_eq!(logits(&model, &opts), logits(&model, &LoadOptions::new()));
    assert_eq!(std::fs::read(&blocker).unwrap(), b"in the way");
}

#[test]
fn a_cache_file_left_half_written_by_a_killed_load_is_removed() {
    if !repacks() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let cache_dir = d.path().join("weights");
    let model = write_model(d.path(), Architecture::Llama);
    let opts = LoadOptions::new().weight_cache(&cache_dir);
    logits(&model, &opts);
    let [file] = &cache_files(&cache_dir)[..] else {
        panic!("one cache file expected");
    };
    // No process has this id (above the kernel's limit of 2^22).
    let orphan = PathBuf::from(format!("{}.partial-4294967295", file.display()));
    std::fs::write(&orphan, b"half").unwrap();
    let ours = PathBuf::from(format!("{}.partial-{}", file.display(), std::process::id()));
    std::fs::remove_file(file).unwrap();
    logits(&model, &opts);
    assert!(!orphan.exists() && !ours.exists());
    assert_eq!(cache_files(&cache_dir).len(), 1);
}
