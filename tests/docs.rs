//! The documentation's relative links resolve: every `[text](path#anchor)` of the README,
//! docs/ and the other READMEs names a file that exists and, with an anchor, a heading
//! in it (GitHub's slugs). Links to other sites are not followed (no network here).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files whose links are checked.
fn documents() -> Vec<PathBuf> {
    let r = root();
    let mut out: Vec<PathBuf> = [
        "README.md",
        "BENCHMARKS.md",
        "certs/README.md",
        "charts/stellar-peer-injector/README.md",
        "tests/testbed/README.md",
    ]
    .iter()
    .map(|p| r.join(p))
    .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(r.join("docs"))
        .expect("docs/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// The text outside fenced code blocks and inline code spans, line by line.
fn prose(text: &str) -> Vec<(usize, String)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut kept = String::new();
        for (n, part) in line.split('`').enumerate() {
            if n % 2 == 0 {
                kept.push_str(part);
            }
        }
        out.push((i + 1, kept));
    }
    out
}

/// The targets of the inline links of `line`: `[text](target)`.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        out.push(after[..end].trim().to_owned());
        rest = &after[end..];
    }
    out
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor the headings of `text` define (a repeated heading gets `-1`, `-2`, ...).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = slug(&heading.replace('`', ""));
        let mut a = base.clone();
        let mut n = 0;
        while out.contains(&a) {
            n += 1;
            a = format!("{base}-{n}");
        }
        out.insert(a);
    }
    out
}

fn check(doc: &Path, broken: &mut Vec<String>) {
    let text = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let dir = doc.parent().expect("a directory");
    let shown = doc
        .strip_prefix(root())
        .unwrap_or(doc)
        .display()
        .to_string();
    for (line, kept) in prose(&text) {
        for target in link_targets(&kept) {
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                doc.to_path_buf()
            } else {
                dir.join(path)
            };
            if !file.exists() {
                broken.push(format!("{shown}:{line}: ({target}): no {}", file.display()));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if file.extension().is_none_or(|e| e != "md") {
                continue; // anchors into source files are line numbers on GitHub
            }
            let there = std::fs::read_to_string(&file).unwrap_or_default();
            if !anchors(&there).contains(anchor) {
                broken.push(format!("{shown}:{line}: ({target}): no heading #{anchor}"));
            }
        }
    }
}

#[test]
fn every_relative_link_of_the_docs_resolves() {
    let mut broken = Vec::new();
    let docs = documents();
    assert!(docs.len() > 5, "{docs:?}");
    for doc in &docs {
        check(doc, &mut broken);
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_finds_a_broken_file_and_a_broken_anchor() {
    assert_eq!(slug("Config modes"), "config-modes");
    assert_eq!(
        slug("Configuration (stellar-peer-injector serve)"),
        "configuration-stellar-peer-injector-serve"
    );
    let a = anchors("# A\n## Day 2: pause, windows\n```\n# not a heading\n```\n## A\n");
    assert_eq!(
        a,
        BTreeSet::from(["a".into(), "a-1".into(), "day-2-pause-windows".into()])
    );
    assert_eq!(
        link_targets("see [x](a.md#b) and [y](c.md)"),
        ["a.md#b", "c.md"]
    );
    let dir = std::env::temp_dir().join(format!("spi-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("t.md"),
        "# T\n[ok](#t) [gone](missing.md) [bad](#nope) `[code](x.md)`\n",
    )
    .expect("write");
    let mut broken = Vec::new();
    check(&dir.join("t.md"), &mut broken);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(
        broken[0].contains("missing.md") && broken[1].contains("#nope"),
        "{broken:?}"
    );
}
