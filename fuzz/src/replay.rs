//! Replaying a fuzz target without libFuzzer, on the stable toolchain: every file of its
//! committed corpus, then seeded mutations of them (bit flips, byte changes, cuts, splices
//! and insertions of interesting bytes), so `cargo test` runs each target on inputs nobody
//! wrote by hand, reproducibly.

use std::fs;
use std::path::{Path, PathBuf};

/// The committed corpus of `target` (`fuzz/corpus/<target>/`), sorted by file name.
pub fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find_map(|dir| {
            let candidate = dir.join("fuzz").join("corpus").join(target);
            candidate.is_dir().then_some(candidate)
        })
        .unwrap_or_else(|| panic!("no fuzz/corpus/{target} directory above this crate"));
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes =
                fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// A small, seeded pseudo-random generator (xorshift64*), so a failure replays exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Bytes that tend to matter to parsers: separators, quotes, digits, the chunk separator of
/// [`crate::input::Input`], and the ends of ranges.
const INTERESTING: &[u8] = b"\x00\x01\x7f\x80\xff,:;=[]{}\"\\ \t\r\n.0129-/%";

/// One mutation of a corpus entry (or, now and then, of two spliced together).
pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = match seeds.len() {
        0 => Vec::new(),
        n => seeds[rng.below(n)].clone(),
    };
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                bytes[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                bytes[at] = rng.next_u64() as u8;
            }
            2 if len > 0 => bytes.truncate(rng.below(len)),
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                bytes.drain(at..at + n);
            }
            4 => {
                let at = rng.below(len + 1);
                bytes.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let at = rng.below(len + 1);
                bytes.splice(at..at, other[from..].iter().copied().take(64));
            }
            _ => {
                let at = rng.below(len + 1);
                let n = rng.below(9);
                bytes.splice(at..at, (0..n).map(|_| rng.next_u64() as u8));
            }
        }
    }
    bytes
}

/// Runs `body` on every corpus entry of `target`, then on `mutations` seeded mutations of
/// them; a panic names the input that caused it (corpus file, or mutation number and bytes).
pub fn replay(target: &str, mutations: usize, body: impl Fn(&[u8])) {
    let corpus = corpus(target);
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is empty: the replay would prove nothing"
    );
    for (path, bytes) in &corpus {
        run_one(&body, bytes, &|| path.display().to_string());
    }
    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, bytes)| bytes).collect();
    let mut rng = Rng::new(0x5eed_f022_u64 ^ target.len() as u64);
    for index in 0..mutations {
        let bytes = mutate(&mut rng, &seeds);
        run_one(&body, &bytes, &|| format!("mutation {index}: {bytes:?}"));
    }
}

fn run_one(body: &impl Fn(&[u8]), bytes: &[u8], name: &dyn Fn() -> String) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(bytes)));
    if let Err(panic) = result {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("fuzz input {} failed: {message}", name());
    }
}
