//! The committed inputs of a fuzz target, replayed by the stable tests of
//! the crate that owns its parser: the seed corpus, every crash the fuzzer
//! found (`fuzz/regressions/TARGET`), and cuts and bit flips of each.

use std::path::{Path, PathBuf};

/// `fuzz/` of this repository, from the manifest folder of the crate under test.
fn fuzz_dir(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir)
        .ancestors()
        .map(|a| a.join("fuzz"))
        .find(|f| f.join("checks").is_dir())
        .unwrap_or_else(|| panic!("no fuzz/checks above {manifest_dir}"))
}

/// The files of `fuzz/corpus/TARGET` and `fuzz/regressions/TARGET`.
pub fn files(manifest_dir: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = fuzz_dir(manifest_dir);
    let mut found = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if let Ok(bytes) = std::fs::read(entry.path()) {
                found.push((entry.path(), bytes));
            }
        }
    }
    found.sort();
    found
}

/// Runs `check` on every committed input of `target` and on `mutations`
/// variants of each (truncations and single-bit flips at spread-out
/// offsets); returns how many files there were, which a test asserts is
/// not zero.
pub fn replay(
    manifest_dir: &str,
    target: &str,
    mutations: usize,
    mut check: impl FnMut(&[u8]),
) -> usize {
    let files = files(manifest_dir, target);
    for (path, bytes) in &files {
        eprintln!("replaying {}", path.display());
        check(bytes);
        if bytes.is_empty() {
            continue;
        }
        for i in 0..mutations {
            // A stride coprime with most lengths spreads the offsets.
            let at = (i * 7919 + 13) % bytes.len();
            check(&bytes[..at]);
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << (i % 8);
            check(&flipped);
        }
    }
    files.len()
}

/// Writes `seeds` (made by the real encoders) into `fuzz/corpus/TARGET` as
/// `seed-NAME`, next to what the fuzzer added and minimised there.
pub fn write_seeds(manifest_dir: &str, target: &str, seeds: Vec<(&str, Vec<u8>)>) {
    let dir = fuzz_dir(manifest_dir).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("the corpus folder");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("a seed written");
    }
}

/// The two tests of a check file: `committed_inputs_hold` replays the
/// committed inputs of `$target` (and `$mutations` cuts and flips of each)
/// through `run`; `write_seeds`, ignored, writes `seeds()` into its corpus
/// (`cargo test -p CRATE write_seeds -- --ignored`).
macro_rules! replay_tests {
    ($target:literal, $mutations:literal) => {
        #[test]
        fn committed_inputs_hold() {
            assert!(inputs::replay(env!("CARGO_MANIFEST_DIR"), $target, $mutations, run) > 0);
        }

        #[test]
        #[ignore = "writes fuzz/corpus"]
        fn write_seeds() {
            inputs::write_seeds(env!("CARGO_MANIFEST_DIR"), $target, seeds());
        }
    };
}
