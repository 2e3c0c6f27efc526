//! Finds the integration trials (`pub async fn name() -> TestResult` at column 0 in
//! tests/integration/*_tests.rs) and writes the registry `testkit::trials!` expands to,
//! so that no hand-kept list of test names can drift from the tests.

#[path = "src/discover.rs"]
mod discover;

use std::path::Path;

fn main() {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("../tests/integration");
    println!("cargo:rerun-if-changed={}", dir.display());
    println!("cargo:rerun-if-changed=src/discover.rs");
    // Outside a full checkout (an image build copies only what the binary needs) there
    // are no tests: an empty registry.
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.extension().is_some_and(|e| e == "rs")
            && p.file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| s.ends_with("_tests"))
    });
    files.sort();
    let mut found = Vec::new();
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let module = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name");
        let src = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        match discover::trials_in(module, &src) {
            Ok(f) => found.extend(f),
            Err(e) => panic!("{e}"),
        }
    }
    let out = Path::new(&std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("trials.rs");
    std::fs::write(&out, discover::render(&found))
        .unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
}
