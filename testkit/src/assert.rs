//! Checks that fail a test with a message instead of panicking: [`ensure`] for a
//! condition, [`ensure_eq!`](crate::ensure_eq) for two values, printed like `assert_eq!`
//! does (pretty `Debug`, text as text) with a line diff when they span lines.

use std::fmt::Debug;

use crate::TestResult;

/// `Ok(())` when `cond` holds, else `Err(msg())`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(msg()) }
}

/// `Ok(())` when `left == right`, else `Err` with the context, both sides and, when either
/// spans lines, a line diff (`-` left, `+` right). Strings are compared as text, anything
/// else by its pretty `Debug`. Use it as `ensure(...)`: `ensure_eq!(got, want, "v1's peers")?;`.
///
/// ```text
/// v1's peers: `got` != `want`
///   left: "a,b"
///  right: "a,c"
/// ```
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {
        $crate::ensure_eq!($left, $right, "values differ")
    };
    ($left:expr, $right:expr, $($context:tt)+) => {
        match (&$left, &$right) {
            (left, right) => {
                if *left == *right {
                    ::core::result::Result::<(), ::std::string::String>::Ok(())
                } else {
                    #[allow(unused_imports)]
                    use $crate::assert::{ShowDebug as _, ShowText as _};
                    ::core::result::Result::Err($crate::assert::unequal(
                        &::std::format!($($context)+),
                        (::core::stringify!($left), (&$crate::assert::Shown(left)).show()),
                        (::core::stringify!($right), (&$crate::assert::Shown(right)).show()),
                    ))
                }
            }
        }
    };
}

/// One side of a failed [`ensure_eq!`](crate::ensure_eq), as it is printed.
#[doc(hidden)]
pub enum Side {
    /// A string: shown and compared line by line as it is.
    Text(String),
    /// Anything else: its `Debug`, compact and pretty.
    Debug { compact: String, pretty: String },
}

/// Chooses how a value is shown (text before `Debug`, by auto-ref specialisation).
#[doc(hidden)]
pub struct Shown<'a, T: ?Sized>(pub &'a T);

#[doc(hidden)]
pub trait ShowText {
    fn show(&self) -> Side;
}

impl<T: AsRef<str> + ?Sized> ShowText for Shown<'_, T> {
    fn show(&self) -> Side {
        Side::Text(self.0.as_ref().to_owned())
    }
}

#[doc(hidden)]
pub trait ShowDebug {
    fn show(&self) -> Side;
}

impl<T: Debug + ?Sized> ShowDebug for &Shown<'_, T> {
    fn show(&self) -> Side {
        Side::Debug {
            compact: format!("{:?}", self.0),
            pretty: format!("{:#?}", self.0),
        }
    }
}

/// A `Debug` longer than this is shown pretty, over lines, with a diff.
const ONE_LINE: usize = 100;

impl Side {
    fn multi_line(&self) -> bool {
        match self {
            Side::Text(s) => s.trim_end_matches('\n').contains('\n'),
            Side::Debug { compact, .. } => compact.len() > ONE_LINE || compact.contains('\n'),
        }
    }

    /// On one line: text quoted (so that spaces show), `Debug` compact.
    fn one_line(&self) -> String {
        match self {
            Side::Text(s) => format!("{s:?}"),
            Side::Debug { compact, .. } => compact.clone(),
        }
    }

    /// Over lines: text as it is, `Debug` pretty.
    fn lines(&self) -> Vec<&str> {
        match self {
            Side::Text(s) => s.lines().collect(),
            Side::Debug { pretty, .. } => pretty.lines().collect(),
        }
    }

    fn block(&self) -> String {
        self.lines()
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The message of a failed [`ensure_eq!`](crate::ensure_eq).
#[doc(hidden)]
pub fn unequal(context: &str, left: (&str, Side), right: (&str, Side)) -> String {
    let (l_expr, l) = left;
    let (r_expr, r) = right;
    let mut out = format!("{context}: `{l_expr}` != `{r_expr}`\n");
    if l.multi_line() || r.multi_line() {
        out.push_str(&format!("  left:\n{}\n", l.block()));
        out.push_str(&format!(" right:\n{}\n", r.block()));
        out.push_str(" diff (- left, + right):\n");
        out.push_str(&line_diff(&l.lines(), &r.lines()));
    } else {
        out.push_str(&format!("  left: {}\n", l.one_line()));
        out.push_str(&format!(" right: {}\n", r.one_line()));
    }
    out.trim_end().to_owned()
}

/// Unchanged lines kept around each change; longer unchanged runs are elided.
const CONTEXT: usize = 3;

/// Line pairs above which the diff gives up on an alignment and lists both sides whole.
const MAX_CELLS: usize = 4_000_000;

/// A line diff of `a` and `b` (longest common subsequence): lines prefixed `  ` (both),
/// `- ` (only `a`) and `+ ` (only `b`), long unchanged runs elided.
pub fn line_diff(a: &[&str], b: &[&str]) -> String {
    let ops = if a.len().saturating_mul(b.len()) <= MAX_CELLS {
        align(a, b)
    } else {
        a.iter()
            .map(|l| ('-', *l))
            .chain(b.iter().map(|l| ('+', *l)))
            .collect()
    };
    let mut out = String::new();
    let changed: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].0 != ' ').collect();
    let near = |i: usize| changed.iter().any(|&c| c.abs_diff(i) <= CONTEXT);
    let mut elided = 0;
    for (i, (op, line)) in ops.iter().enumerate() {
        if *op == ' ' && !near(i) {
            elided += 1;
            continue;
        }
        if elided > 0 {
            out.push_str(&format!("  … {elided} unchanged line(s)\n"));
            elided = 0;
        }
        out.push_str(&format!("{op} {line}\n"));
    }
    if elided > 0 {
        out.push_str(&format!("  … {elided} unchanged line(s)\n"));
    }
    out
}

/// The edit script of `a` into `b`: `(' ' | '-' | '+', line)`.
fn align<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(char, &'a str)> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            // Removals before additions, as diff prints them.
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `err` contains `part` (shown whole when it does not).
    fn has(err: &str, part: &str) {
        assert!(err.contains(part), "{part:?} not in:\n{err}");
    }

    #[test]
    fn equal_values_pass() {
        let peers = String::from("a,b");
        assert_eq!(crate::ensure_eq!(peers, "a,b", "peers"), Ok(()));
        assert_eq!(crate::ensure_eq!(Some(2), Some(2)), Ok(()));
    }

    #[test]
    fn one_line_values_show_both_sides() {
        let got = Some("a,b".to_owned());
        let err = crate::ensure_eq!(got.as_deref(), Some("a,c"), "v{}'s peers", 1).unwrap_err();
        assert_eq!(
            err,
            "v1's peers: `got.as_deref()` != `Some(\"a,c\")`\n  left: Some(\"a,b\")\n right: Some(\"a,c\")"
        );
    }

    #[test]
    fn long_debug_values_are_pretty_with_a_diff() {
        let left: Vec<String> = (0..12).map(|i| format!("peer-{i}")).collect();
        let mut right = left.clone();
        right[5] = "other".into();
        let err = crate::ensure_eq!(left, right, "peers").unwrap_err();
        has(
            &err,
            "peers: `left` != `right`\n  left:\n    [\n        \"peer-0\",\n",
        );
        has(&err, "\n-     \"peer-5\",\n+     \"other\",\n");
    }

    #[test]
    fn strings_compare_as_text() {
        let err = crate::ensure_eq!("x y", String::from("x  y"), "spaces").unwrap_err();
        assert_eq!(
            err,
            "spaces: `\"x y\"` != `String::from(\"x  y\")`\n  left: \"x y\"\n right: \"x  y\""
        );
    }

    #[test]
    fn multi_line_text_gets_a_line_diff() {
        let want = "KNOWN_PEERS = [\n  \"a\",\n  \"b\",\n]\n";
        let got = "KNOWN_PEERS = [\n  \"a\",\n  \"c\",\n]\n";
        let err = crate::ensure_eq!(got, want, "config").unwrap_err();
        has(
            &err,
            " diff (- left, + right):\n  KNOWN_PEERS = [\n    \"a\",\n-   \"c\",\n+   \"b\",\n  ]",
        );
        has(
            &err,
            "  left:\n    KNOWN_PEERS = [\n      \"a\",\n      \"c\",\n    ]\n",
        );
    }

    #[test]
    fn long_unchanged_runs_are_elided() {
        let a: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        let mut b = a.clone();
        b[10] = "changed".into();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        let d = line_diff(&a, &b);
        assert_eq!(
            d,
            "  … 7 unchanged line(s)\n  line 7\n  line 8\n  line 9\n- line 10\n+ changed\n  line 11\n  line 12\n  line 13\n  … 6 unchanged line(s)\n"
        );
    }

    #[test]
    fn insertions_and_removals_align() {
        let d = line_diff(&["a", "b", "c"], &["a", "c", "d"]);
        assert_eq!(d, "  a\n- b\n  c\n+ d\n");
        assert_eq!(line_diff(&[], &["x"]), "+ x\n");
        assert_eq!(line_diff(&["x"], &[]), "- x\n");
    }
}
