//! Splits a TOML document into statements, keeping every byte.
//!
//! Works on text the `toml` crate has already accepted, so it only has to find
//! where each statement ends: a key/value may span lines (multi-line strings,
//! arrays, inline tables), and `#`, `[`, `]`, `=` may appear inside strings and
//! comments. Each statement's meaning (its key path and value) is then taken
//! from the `toml` crate by parsing the statement alone, so keys with quotes or
//! escapes are decoded by the real parser, not by this module.

use std::ops::Range;

/// One statement of a TOML document: its bytes end after its line break.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stmt {
    /// Byte range in the document, including the trailing line break if any.
    pub range: Range<usize>,
    /// 1-based line of the statement's first byte.
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A blank line.
    Blank,
    /// A line holding only a comment.
    Comment,
    /// `[a.b]` (`array: false`) or `[[a.b]]` (`array: true`).
    Header { path: Vec<String>, array: bool },
    /// `key = value`; `key` is the first segment of a dotted key, `value` the
    /// value below it (a table for `a.b = 1`).
    KeyValue { key: String, value: toml::Value },
}

/// The scanner cut a statement the `toml` crate does not accept on its own.
/// Only possible through a bug here, since the whole document parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot split the config into statements at line {line}; please report this with the file")]
pub struct ScanError {
    pub line: usize,
}

/// Splits `src` (already accepted by the `toml` crate) into statements.
pub(crate) fn scan(src: &str) -> Result<Vec<Stmt>, ScanError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    while pos < b.len() {
        let start = pos;
        let mut i = skip_ws(b, pos);
        let kind_hint = b.get(i).copied();
        let end = match kind_hint {
            None | Some(b'\n') => line_end(b, i),
            Some(b'\r') if b.get(i + 1) == Some(&b'\n') => line_end(b, i),
            Some(b'#') => line_end(b, i),
            Some(b'[') => {
                // A header cannot span lines; skip quoted keys, stop at a comment.
                while i < b.len() && b[i] != b'\n' {
                    match b[i] {
                        b'"' | b'\'' => i = skip_string(b, i),
                        b'#' => break,
                        _ => i += 1,
                    }
                }
                line_end(b, i)
            }
            Some(_) => {
                // Key: up to '=' outside quotes.
                while i < b.len() && b[i] != b'=' {
                    match b[i] {
                        b'"' | b'\'' => i = skip_string(b, i),
                        b'\n' => return Err(ScanError { line }),
                        _ => i += 1,
                    }
                }
                value_end(b, i + 1)
            }
        };
        let end = end.max(start + 1).min(b.len());
        let text = src.get(start..end).ok_or(ScanError { line })?;
        let kind = classify(text, kind_hint).ok_or(ScanError { line })?;
        out.push(Stmt {
            range: start..end,
            line,
            kind,
        });
        line += text.bytes().filter(|&c| c == b'\n').count();
        pos = end;
    }
    Ok(out)
}

fn classify(text: &str, hint: Option<u8>) -> Option<Kind> {
    match hint {
        None | Some(b'\n' | b'\r') => Some(Kind::Blank),
        Some(b'#') => Some(Kind::Comment),
        Some(b'[') => {
            let t: toml::Table = toml::from_str(text).ok()?;
            header_path(&t)
        }
        Some(_) => {
            let t: toml::Table = toml::from_str(text).ok()?;
            let mut it = t.into_iter();
            let (key, value) = it.next()?;
            if it.next().is_some() {
                return None;
            }
            Some(Kind::KeyValue { key, value })
        }
    }
}

/// The path of a lone header: `[a.b]` parses as `{a = {b = {}}}`,
/// `[[a.b]]` as `{a = {b = [{}]}}`.
fn header_path(t: &toml::Table) -> Option<Kind> {
    let mut path = Vec::new();
    let mut cur = t;
    loop {
        let mut it = cur.iter();
        let Some((k, v)) = it.next() else {
            return (!path.is_empty()).then_some(Kind::Header { path, array: false });
        };
        if it.next().is_some() {
            return None;
        }
        path.push(k.clone());
        match v {
            toml::Value::Table(inner) => cur = inner,
            toml::Value::Array(items) => match items.as_slice() {
                [toml::Value::Table(inner)] if inner.is_empty() => {
                    return Some(Kind::Header { path, array: true });
                }
                _ => return None,
            },
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// Index just past the line break at or after `i` (or the end of input).
fn line_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    (i + 1).min(b.len())
}

/// Index just past the string starting at `b[i]` (`"`, `'`, `"""` or `'''`).
fn skip_string(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let multi = b.get(i + 1) == Some(&q) && b.get(i + 2) == Some(&q);
    if multi {
        let mut j = i + 3;
        while j < b.len() {
            if q == b'"' && b[j] == b'\\' {
                j += 2;
                continue;
            }
            if b[j] == q && b.get(j + 1) == Some(&q) && b.get(j + 2) == Some(&q) {
                // Up to two more quotes belong to the content: `""""a"""""`.
                let mut k = j + 3;
                while k < j + 5 && b.get(k) == Some(&q) {
                    k += 1;
                }
                return k;
            }
            j += 1;
        }
        return b.len();
    }
    // `""` and `''` are empty strings (the multi-line case was handled above).
    let mut j = i + 1;
    while j < b.len() && b[j] != b'\n' {
        if q == b'"' && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            return j + 1;
        }
        j += 1;
    }
    j
}

/// Index just past the line break that ends the value starting near `b[i]`.
fn value_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => i = skip_string(b, i),
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'\n' if depth == 0 => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(usize, String, Kind)> {
        toml::from_str::<toml::Table>(src).expect("test input is TOML");
        let stmts = scan(src).expect("scans");
        let total: String = stmts.iter().map(|s| &src[s.range.clone()]).collect();
        assert_eq!(total, src, "statements cover every byte");
        stmts
            .into_iter()
            .map(|s| (s.line, src[s.range].to_owned(), s.kind))
            .collect()
    }

    fn kv(key: &str, value: toml::Value) -> Kind {
        Kind::KeyValue {
            key: key.into(),
            value,
        }
    }

    #[test]
    fn splits_lines_headers_and_values() {
        let src = "# c [not a header]\n\nA = 1 # x = [\nB = [\n  \"x\", # ] comment\n  'y',\n]\n[T]\nC = \"#\"\n[[V]]\n";
        let k = kinds(src);
        assert_eq!(k.len(), 7);
        assert_eq!(k[0].2, Kind::Comment);
        assert_eq!(k[1].2, Kind::Blank);
        assert_eq!(k[2].2, kv("A", toml::Value::Integer(1)));
        assert_eq!(
            (k[3].0, k[3].1.as_str()),
            (4, "B = [\n  \"x\", # ] comment\n  'y',\n]\n")
        );
        assert_eq!(
            k[4].2,
            Kind::Header {
                path: vec!["T".into()],
                array: false
            }
        );
        assert_eq!(k[4].0, 8);
        assert_eq!(k[5].2, kv("C", toml::Value::String("#".into())));
        assert_eq!(
            k[6].2,
            Kind::Header {
                path: vec!["V".into()],
                array: true
            }
        );
    }

    #[test]
    fn multi_line_strings_hide_everything() {
        let src = "A = \"\"\"\n[NOT_A_HEADER]\nB = 1 # \\\"\"\" still\n\"\"\"\nL = '''\n[X]\n'''\nQ = \"\"\"\"a\"\"\"\"\"\nE = \"\"\nF = ''\n";
        let k = kinds(src);
        let keys: Vec<_> = k
            .iter()
            .map(|(_, _, kind)| match kind {
                Kind::KeyValue { key, .. } => key.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(keys, ["A", "L", "Q", "E", "F"]);
        assert_eq!(k[2].0, 8);
    }

    #[test]
    fn quoted_and_dotted_keys_and_headers() {
        let src = "\"KNOWN_PEERS\" = []\n'a=b'.c = 1\n[\"QUORUM_SET\" . 'x]#y']\n[ HISTORY.\"a.b\" ] # c\n";
        let k = kinds(src);
        assert_eq!(k[0].2, kv("KNOWN_PEERS", toml::Value::Array(vec![])));
        assert!(
            matches!(&k[1].2, Kind::KeyValue { key, value: toml::Value::Table(_) } if key == "a=b")
        );
        assert_eq!(
            k[2].2,
            Kind::Header {
                path: vec!["QUORUM_SET".into(), "x]#y".into()],
                array: false
            }
        );
        assert_eq!(
            k[3].2,
            Kind::Header {
                path: vec!["HISTORY".into(), "a.b".into()],
                array: false
            }
        );
    }

    #[test]
    fn brackets_quotes_and_hashes_inside_values() {
        let src =
            "A = [\"]\", '[', \"#\", \"\\\"]\", [ [] ], { } ] # ]]\nB = \"x\" # [\n[H] # [[x]]\n";
        let k = kinds(src);
        assert_eq!(k.len(), 3, "{k:?}");
        assert_eq!(k[1].0, 2);
        assert_eq!(
            k[2].2,
            Kind::Header {
                path: vec!["H".into()],
                array: false
            }
        );
    }

    #[test]
    fn crlf_missing_final_newline_and_inline_tables() {
        let src = "A = 1\r\n\r\nB = { x = [1, 2], y = \"}\" }\r\nC = [\r\n 1,\r\n]";
        let k = kinds(src);
        assert_eq!(k.len(), 4);
        assert_eq!(k[1].2, Kind::Blank);
        assert_eq!(k[3].1, "C = [\r\n 1,\r\n]");
        assert_eq!(k[3].0, 4);
    }
}
