//! Finds the trials of a test module's source: every `pub async fn NAME() -> TestResult`
//! (no parameters), exclusive when its body opens with `exclusive!();`. Used by build.rs,
//! which writes the registry `trials!` expands to, and unit-tested here.
//!
//! The scan reads lines of rustfmt-formatted source (see [`trials_in`]): no lexer.

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

/// The opening line of a trial's body that makes it exclusive.
fn is_marker(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("exclusive!();") || l.starts_with("testkit::exclusive!();")
}

/// The trials of `module`'s source, in source order.
///
/// The source is rustfmt's (`cargo fmt --check` is part of the lint), so an item's
/// signature starts at column 0: a trial is a line `pub async fn NAME() -> TestResult {`,
/// or, where rustfmt wraps a long one, `pub async fn NAME()` then `-> TestResult {`, or
/// `pub async fn NAME() -> TestResult` then `{`.
/// Anything indented (inside a string, a block or another item) or behind `//` is no trial.
pub fn trials_in(module: &str, src: &str) -> Result<Vec<Found>, String> {
    let lines: Vec<&str> = src.lines().collect();
    let group = module.strip_suffix("_tests").unwrap_or(module);
    let mut found = Vec::new();
    // The lines where an `exclusive!` opens a trial's body.
    let mut opening = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("pub async fn ") else {
            continue;
        };
        let (function, body) = if let Some(f) = rest.strip_suffix("() -> TestResult {") {
            (f, i + 1)
        } else if let Some(f) = rest.strip_suffix("()")
            && lines.get(i + 1).map(|l| l.trim()) == Some("-> TestResult {")
        {
            (f, i + 2)
        } else if let Some(f) = rest.strip_suffix("() -> TestResult")
            && lines.get(i + 1).map(|l| l.trim()) == Some("{")
        {
            (f, i + 2)
        } else {
            continue;
        };
        if function.is_empty() || !function.chars().all(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let exclusive = lines.get(body).is_some_and(|l| is_marker(l));
        if exclusive {
            opening.push(body);
        }
        let name = function
            .strip_prefix(group)
            .and_then(|rest| rest.strip_prefix('_'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(function);
        found.push(Found {
            module: module.to_owned(),
            function: function.to_owned(),
            name: name.to_owned(),
            exclusive,
        });
    }
    let stray = lines
        .iter()
        .enumerate()
        .find(|(i, l)| is_marker(l) && !opening.contains(i));
    if let Some((i, _)) = stray {
        return Err(format!(
            "tests/integration/{module}.rs:{}: `exclusive!()` must be the first statement of \
             a trial (`pub async fn name() -> TestResult {{ exclusive!(); ... }}`)",
            i + 1
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
pub async fn setup(ns: &TestNs) -> TestResult {
    Ok(())
}

/// Nor is a one-line item rustfmt would have expanded.
pub async fn one_line() -> TestResult { Ok(()) }

pub async fn first_trial() -> TestResult {
    let s = "pub async fn in_a_string() -> TestResult {";
    Ok(())
}

// pub async fn commented_out() -> TestResult {
/* pub async fn in_a_block_comment() -> TestResult { /* nested */ } */
    pub async fn indented_in_another_item() -> TestResult {

async fn private_helper() -> TestResult { Ok(()) }
pub fn not_async() -> TestResult { Ok(()) }
pub async fn other_result() -> Result<(), String> { Ok(()) }

pub async fn a_very_long_trial_name_that_rustfmt_put_the_return_type_of_on_its_own_line()
-> TestResult {
    let c = '{';
    let l: &'static str = r#"exclusive!();"#;
    Ok(())
}

pub async fn a_long_trial_name_whose_opening_brace_rustfmt_put_on_its_own_line() -> TestResult
{
    exclusive!();
    Ok(())
}
"##;
        let long = "a_very_long_trial_name_that_rustfmt_put_the_return_type_of_on_its_own_line";
        let brace = "a_long_trial_name_whose_opening_brace_rustfmt_put_on_its_own_line";
        assert_eq!(
            scan("rollout_tests", src),
            want(&[
                ("first_trial", "first_trial", false),
                (long, long, false),
                (brace, brace, true)
            ])
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
                "pub async fn chart_lints() -> TestResult {\n    Ok(())\n}\n\
                 pub async fn chart_() -> TestResult {\n    Ok(())\n}\n\
                 pub async fn charted() -> TestResult {\n    Ok(())\n}\n",
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
