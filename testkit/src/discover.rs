//! Finds the trials of a test module's source: every `pub async fn NAME() -> TestResult`
//! (no parameters), exclusive when its body opens with `exclusive!();`. Used by build.rs,
//! which writes the registry `trials!` expands to, and unit-tested here.
//!
//! The scan is lexical: comments, string and character literals are skipped, so a
//! signature quoted in a string or a comment is no trial.

/// One trial found in a module's source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The module (the file's stem), e.g. `chart_tests`.
    pub module: String,
    /// The function, e.g. `chart_rbac_is_enough_for_the_injector`.
    pub function: String,
    /// The trial's name within its group: the function's without a leading
    /// `<module without _tests>_` (`chart_rbac_is_enough_for_the_injector` in
    /// `chart_tests` is `rbac_is_enough_for_the_injector`).
    pub name: String,
    /// Runs alone: its body opens with `exclusive!();` (or `testkit::exclusive!();`).
    pub exclusive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Punct(char),
    /// A string, character or number literal (its text does not matter here).
    Lit,
}

/// The tokens of Rust source text, with their line numbers, without comments.
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let ident_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            // Block comments nest.
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(&c, i) {
            line += c[i..end].iter().filter(|&&x| x == '\n').count();
            out.push((Tok::Lit, line));
            i = end;
        } else if ch == '"' || (ch == 'b' && next == Some('"')) {
            i += if ch == 'b' { 2 } else { 1 };
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if c.get(i) == Some(&'\n') {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
            out.push((Tok::Lit, line));
        } else if ch == '\'' || (ch == 'b' && next == Some('\'')) {
            // A character literal ('x', '\n', b'x'), or a lifetime ('a).
            let q = if ch == 'b' { i + 1 } else { i };
            match (c.get(q + 1), c.get(q + 2)) {
                (Some('\\'), _) => {
                    i = q + 2;
                    while i < c.len() && c[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                    out.push((Tok::Lit, line));
                }
                (Some(_), Some('\'')) => {
                    i = q + 3;
                    out.push((Tok::Lit, line));
                }
                _ => {
                    out.push((Tok::Punct('\''), line));
                    i = q + 1;
                }
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (ident_char(c[i]) || c[i] == '.') {
                i += 1;
            }
            out.push((Tok::Lit, line));
        } else if ident_char(ch) {
            // Raw identifiers (r#type) are their name.
            if ch == 'r' && next == Some('#') && c.get(i + 2).is_some_and(|&x| ident_char(x)) {
                i += 2;
            }
            let start = i;
            while i < c.len() && ident_char(c[i]) {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// Where a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) starting at `i` ends.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&x| x == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"'
            && c[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&x| x == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

fn is_ident(t: Option<&(Tok, usize)>, want: &str) -> bool {
    matches!(t, Some((Tok::Ident(s), _)) if s == want)
}

fn is_punct(t: Option<&(Tok, usize)>, want: char) -> bool {
    matches!(t, Some((Tok::Punct(p), _)) if *p == want)
}

/// At `i`: `exclusive!();` or `testkit::exclusive!();`; returns the index after it.
fn marker_at(t: &[(Tok, usize)], mut i: usize) -> Option<usize> {
    if is_ident(t.get(i), "testkit") && is_punct(t.get(i + 1), ':') && is_punct(t.get(i + 2), ':') {
        i += 3;
    }
    let ok = is_ident(t.get(i), "exclusive")
        && is_punct(t.get(i + 1), '!')
        && is_punct(t.get(i + 2), '(')
        && is_punct(t.get(i + 3), ')')
        && is_punct(t.get(i + 4), ';');
    ok.then_some(i + 5)
}

/// The trials of test module `module` (a file stem such as `fault_tests`) in `src`, in
/// source order. Fails on an `exclusive!` that does not open a trial's body: it would
/// mark nothing, and the trial would run beside others.
pub fn trials_in(module: &str, src: &str) -> Result<Vec<Found>, String> {
    let t = tokens(src);
    let group = module.strip_suffix("_tests").unwrap_or(module);
    let mut found = Vec::new();
    // Where each `exclusive!` that opens a trial's body stands.
    let mut opening = Vec::new();
    for i in 0..t.len() {
        let signature = is_ident(t.get(i), "pub")
            && is_ident(t.get(i + 1), "async")
            && is_ident(t.get(i + 2), "fn")
            && is_punct(t.get(i + 4), '(')
            && is_punct(t.get(i + 5), ')')
            && is_punct(t.get(i + 6), '-')
            && is_punct(t.get(i + 7), '>')
            && is_ident(t.get(i + 8), "TestResult")
            && is_punct(t.get(i + 9), '{');
        let Some((Tok::Ident(function), _)) = t.get(i + 3).filter(|_| signature) else {
            continue;
        };
        let body = i + 10;
        let exclusive = marker_at(&t, body).is_some();
        if exclusive {
            let path = is_ident(t.get(body), "testkit");
            opening.push(if path { body + 3 } else { body });
        }
        let name = function
            .strip_prefix(group)
            .and_then(|rest| rest.strip_prefix('_'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(function);
        found.push(Found {
            module: module.to_owned(),
            function: function.clone(),
            name: name.to_owned(),
            exclusive,
        });
    }
    let stray = (0..t.len()).find(|&i| {
        is_ident(t.get(i), "exclusive") && is_punct(t.get(i + 1), '!') && !opening.contains(&i)
    });
    if let Some(i) = stray {
        return Err(format!(
            "tests/integration/{module}.rs:{}: `exclusive!()` must be the first statement of \
             a trial (`pub async fn name() -> TestResult {{ exclusive!(); ... }}`)",
            t[i].1
        ));
    }
    Ok(found)
}

/// The Rust source build.rs writes: `FOUND`, and per module a `__trials_in!` arm that
/// builds that module's trials with the caller's constructor.
pub fn render(found: &[Found]) -> String {
    let mut s = String::from(
        "// Written by testkit/build.rs from tests/integration/*_tests.rs. Do not edit.\n\n",
    );
    s.push_str("/// Every trial build.rs found: `(module, function, name, exclusive)`.\n");
    s.push_str("pub const FOUND: &[(&str, &str, &str, bool)] = &[\n");
    for f in found {
        s.push_str(&format!(
            "    ({:?}, {:?}, {:?}, {}),\n",
            f.module, f.function, f.name, f.exclusive
        ));
    }
    s.push_str("];\n\n");
    s.push_str(
        "/// The trials of one module, made by `$make(name, function, exclusive)`.\n\
         #[doc(hidden)]\n#[macro_export]\nmacro_rules! __trials_in {\n",
    );
    let mut modules: Vec<&str> = found.iter().map(|f| f.module.as_str()).collect();
    modules.dedup();
    for m in modules {
        s.push_str(&format!(
            "    ($make:path, $prefix:literal, {m}) => {{\n        vec![\n"
        ));
        for f in found.iter().filter(|f| f.module == m) {
            s.push_str(&format!(
                "            $make(concat!($prefix, \"::\", {:?}), {m}::{}, {}),\n",
                f.name, f.function, f.exclusive
            ));
        }
        s.push_str("        ]\n    };\n");
    }
    s.push_str(
        "    ($make:path, $prefix:literal, $module:ident) => {\n        \
         compile_error!(concat!(\"no trials found in tests/integration/\", \
         stringify!($module), \".rs (a trial is `pub async fn name() -> TestResult`)\"))\n    };\n}\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(function, name, exclusive)` of each trial of `src` as module `module`.
    fn scan(module: &str, src: &str) -> Vec<(String, String, bool)> {
        trials_in(module, src)
            .expect("scan")
            .into_iter()
            .map(|f| (f.function, f.name, f.exclusive))
            .collect()
    }

    /// `(function, name, exclusive)`.
    type Row<'a> = (&'a str, &'a str, bool);

    fn want(rows: &[Row]) -> Vec<(String, String, bool)> {
        rows.iter()
            .map(|(f, n, x)| (f.to_string(), n.to_string(), *x))
            .collect()
    }

    #[test]
    fn finds_trials_in_source_order_and_skips_helpers() {
        let src = r##"
use crate::support::*;

/// A helper with parameters is no trial.
pub async fn setup(ns: &TestNs) -> TestResult { Ok(()) }

pub async fn first_trial() -> TestResult {
    let s = "pub async fn in_a_string() -> TestResult {";
    Ok(())
}

// pub async fn commented_out() -> TestResult {}
/* pub async fn in_a_block_comment() -> TestResult { /* nested */ } */

async fn private_helper() -> TestResult { Ok(()) }
pub fn not_async() -> TestResult { Ok(()) }
pub async fn other_result() -> Result<(), String> { Ok(()) }

pub async fn a_very_long_trial_name_that_rustfmt_put_the_return_type_of_on_its_own_line()
-> TestResult {
    let c = '{';
    let l: &'static str = r#"exclusive!();"#;
    Ok(())
}
"##;
        let long = "a_very_long_trial_name_that_rustfmt_put_the_return_type_of_on_its_own_line";
        assert_eq!(
            scan("rollout_tests", src),
            want(&[("first_trial", "first_trial", false), (long, long, false)])
        );
        let found = trials_in("rollout_tests", src).expect("scan");
        assert!(found.iter().all(|f| f.module == "rollout_tests"));
    }

    /// `exclusive!();` opening the body marks a trial; a leading group name is dropped
    /// from the trial's name (only a whole word of it, and never the whole name).
    #[test]
    fn exclusive_marks_and_group_names() {
        let cases: [(&str, &str, &[Row]); 2] = [
            (
                "fault_tests",
                "pub async fn restarts() -> TestResult {\n    exclusive!(); // alone\n    Ok(())\n}\n\
                 pub async fn also() -> TestResult {\n    testkit::exclusive!();\n    Ok(())\n}\n\
                 pub async fn shared() -> TestResult {\n    Ok(())\n}\n",
                &[
                    ("restarts", "restarts", true),
                    ("also", "also", true),
                    ("shared", "shared", false),
                ],
            ),
            (
                "chart_tests",
                "pub async fn chart_lints() -> TestResult { Ok(()) }\n\
                 pub async fn chart_() -> TestResult { Ok(()) }\n\
                 pub async fn charted() -> TestResult { Ok(()) }\n",
                &[
                    ("chart_lints", "lints", false),
                    ("chart_", "chart_", false),
                    ("charted", "charted", false),
                ],
            ),
        ];
        for (module, src, rows) in cases {
            assert_eq!(scan(module, src), want(rows), "{module}");
        }
    }

    #[test]
    fn a_misplaced_exclusive_is_refused() {
        let src = "pub async fn late() -> TestResult {\n    let x = 1;\n    exclusive!();\n    Ok(())\n}\n";
        let err = trials_in("fault_tests", src).unwrap_err();
        assert!(
            err.starts_with("tests/integration/fault_tests.rs:3: `exclusive!()` must be the first"),
            "{err}"
        );
    }

    #[test]
    fn render_builds_one_arm_per_module() {
        let found = [
            Found {
                module: "a_tests".into(),
                function: "one".into(),
                name: "one".into(),
                exclusive: false,
            },
            Found {
                module: "b_tests".into(),
                function: "b_two".into(),
                name: "two".into(),
                exclusive: true,
            },
        ];
        let code = render(&found);
        assert!(
            code.contains("($make:path, $prefix:literal, a_tests) => {"),
            "{code}"
        );
        assert!(
            code.contains("$make(concat!($prefix, \"::\", \"two\"), b_tests::b_two, true),"),
            "{code}"
        );
        assert!(
            code.contains("(\"b_tests\", \"b_two\", \"two\", true),"),
            "{code}"
        );
    }

    /// The real test modules scan cleanly, and every one holds trials: a module whose
    /// trials all stopped matching (a changed signature) would otherwise silently run none.
    #[test]
    fn every_integration_module_has_trials() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/integration");
        let mut modules = 0;
        for entry in std::fs::read_dir(&dir).expect("tests/integration") {
            let path = entry.expect("entry").path();
            let Some(module) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| s.ends_with("_tests"))
            else {
                continue;
            };
            let src = std::fs::read_to_string(&path).expect("read");
            let found = trials_in(module, &src).expect("scan");
            assert!(!found.is_empty(), "{} has no trials", path.display());
            modules += 1;
        }
        assert!(modules > 0, "no *_tests.rs in {}", dir.display());
    }

    /// What build.rs generated is what the sources say now.
    #[test]
    fn the_registry_matches_the_sources() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/integration");
        let mut modules: Vec<&str> = crate::registry::FOUND.iter().map(|f| f.0).collect();
        modules.dedup();
        let mut want = Vec::new();
        for m in modules {
            let src = std::fs::read_to_string(dir.join(format!("{m}.rs"))).expect("read");
            want.extend(trials_in(m, &src).expect("scan"));
        }
        let got: Vec<(&str, &str, &str, bool)> = crate::registry::FOUND.to_vec();
        let want: Vec<(&str, &str, &str, bool)> = want
            .iter()
            .map(|f| {
                (
                    f.module.as_str(),
                    f.function.as_str(),
                    f.name.as_str(),
                    f.exclusive,
                )
            })
            .collect();
        assert_eq!(got, want);
    }
}
