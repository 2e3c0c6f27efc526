//! Writes JSON values as YAML that every reader types the same way.
//!
//! serde_yaml writes YAML 1.2, where `yes`, `on` or `0123` are plain strings, so it
//! leaves them unquoted; YAML 1.1 readers (kubectl's sigs.k8s.io/yaml, PyYAML) then
//! read them as a boolean or a number. Here a string is written plain only when no
//! reader of either version could take it for anything else; every other string is
//! double-quoted (JSON escapes are valid YAML), and multi-line text becomes a literal
//! block when that keeps it byte for byte.

use std::fmt::Write;

use serde_json::Value;

/// Words YAML 1.1 reads as booleans or null (plus 1.2's own), in every case form.
const RESERVED: &[&str] = &[
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
];

/// True when `s` can be written as a plain scalar and still be read back as this
/// string by YAML 1.1 and 1.2 readers alike. Deliberately narrow: a letter, `_` or `/`
/// first (so nothing numeric, no `.inf`, no indicators), then only letters, digits and
/// `_ . / -`, and never a reserved word.
pub fn plain_is_safe(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '_' || first == '/') {
        return false;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')) {
        return false;
    }
    !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

fn quoted(s: &str, out: &mut String) {
    // serde_json's string form is a valid YAML double-quoted scalar.
    out.push_str(&Value::from(s).to_string());
}

fn scalar_key(s: &str, out: &mut String) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else {
        quoted(s, out);
    }
}

/// A literal block keeps the text exactly when it has no tabs or control characters,
/// no trailing spaces, does not start with a space or blank line, and ends with at most
/// one newline (`|` keeps one, `|-` none).
fn block_header(s: &str) -> Option<&'static str> {
    if !s.contains('\n') || s.starts_with([' ', '\n']) || s.ends_with("\n\n") {
        return None;
    }
    let clean = s.lines().all(|l| {
        !l.ends_with(' ') && !l.chars().any(|c| c.is_control() && c != '\n') && !l.contains('\t')
    }) && !s.contains('\r');
    if !clean {
        return None;
    }
    Some(if s.ends_with('\n') { "|" } else { "|-" })
}

/// Integers as they are; floats always with a `.` and a signed exponent, which YAML
/// 1.1's float pattern needs (`1e300` is a string there, `1.0e+300` a float).
fn number(n: &serde_json::Number, out: &mut String) {
    let text = n.to_string();
    if n.is_f64()
        && let Some((mantissa, exp)) = text.split_once(['e', 'E'])
    {
        let dot = if mantissa.contains('.') { "" } else { ".0" };
        let sign = if exp.starts_with(['-', '+']) { "" } else { "+" };
        let _ = write!(out, "{mantissa}{dot}e{sign}{exp}");
    } else {
        out.push_str(&text);
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes a scalar (or an empty collection) after `key: ` or `- `; `false` when `v`
/// needs its own block below.
fn inline(v: &Value, indent: usize, out: &mut String) -> bool {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => number(n, out),
        Value::String(s) => match block_header(s) {
            Some(h) => {
                out.push_str(h);
                for line in s.lines() {
                    out.push('\n');
                    if !line.is_empty() {
                        pad(out, indent + 2);
                        out.push_str(line);
                    }
                }
            }
            None if plain_is_safe(s) => out.push_str(s),
            None => quoted(s, out),
        },
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Object(m) if m.is_empty() => out.push_str("{}"),
        _ => return false,
    }
    true
}

fn map(m: &serde_json::Map<String, Value>, indent: usize, first_inline: bool, out: &mut String) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !first_inline {
            pad(out, indent);
        }
        scalar_key(k, out);
        out.push(':');
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                map(inner, indent + 2, false, out);
            }
            // Sequences under a key sit at the key's indentation, as kubectl writes them.
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                seq(items, indent, out);
            }
            _ => {
                out.push(' ');
                inline(v, indent, out);
                out.push('\n');
            }
        }
    }
}

fn seq(items: &[Value], indent: usize, out: &mut String) {
    for v in items {
        pad(out, indent);
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => map(m, indent + 2, true, out),
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                seq(inner, indent + 2, out);
            }
            _ => {
                inline(v, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

/// One YAML document (without the `---` line) for `v`.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(m, 0, false, &mut out),
        Value::Array(a) if !a.is_empty() => seq(a, 0, &mut out),
        _ => {
            inline(v, 0, &mut out);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Strings that YAML 1.1 or 1.2 would read as something else if left plain.
    const TRICKY: &[&str] = &[
        "yes",
        "Yes",
        "YES",
        "no",
        "No",
        "on",
        "On",
        "off",
        "OFF",
        "y",
        "Y",
        "n",
        "N",
        "true",
        "False",
        "null",
        "Null",
        "~",
        "",
        " ",
        "0123",
        "1e3",
        "1_000",
        "0x1F",
        "0o17",
        "1:20",
        "-1",
        "+1",
        ".5",
        ".inf",
        "-.inf",
        ".NaN",
        "12.5",
        "2026-12-01",
        "=",
        "<<",
        "a: b",
        "a #b",
        "#x",
        "- x",
        "[a]",
        "{a}",
        "*a",
        "&a",
        "!a",
        "%a",
        "@a",
        "`a",
        "'a'",
        "\"a\"",
        "|",
        ">",
        "?",
        "a\tb",
        "trailing ",
        " leading",
        "line\nbreak",
        "two\n\n",
        "\nlead",
        "tab\tin\nblock\n",
        "crlf\r\n",
        "unicode é",
        "stellar/stellar-core:21",
        "core-live-a.stellar.org:11625",
    ];

    #[test]
    fn every_tricky_string_round_trips_as_a_string() {
        for s in TRICKY {
            let doc = json!({"env": [{"name": "X", "value": s}], *s: s});
            let text = to_yaml(&doc);
            let back: Value =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{s:?}: {e}\n{text}"));
            assert_eq!(back, doc, "{s:?}:\n{text}");
        }
    }

    #[test]
    fn yaml_1_1_words_and_numbers_are_quoted() {
        for s in [
            "yes", "on", "off", "y", "n", "NO", "null", "0123", "1e3", "1:20",
        ] {
            assert!(!plain_is_safe(s), "{s:?} must be quoted");
            assert!(
                to_yaml(&json!({ "v": s })).contains(&format!("\"{s}\"")),
                "{s:?}"
            );
        }
        for s in [
            "stellar-node",
            "v1",
            "app.kubernetes.io/name",
            "/config/stellar-core.cfg",
            "Validator",
        ] {
            assert!(plain_is_safe(s), "{s:?} can stay plain");
        }
    }

    #[test]
    fn other_types_keep_their_type() {
        let doc = json!({"a": 1, "b": 2.5, "big": 1e300, "small": -2.5e-8, "c": true, "d": null, "e": [], "f": {}, "g": -3,
                         "h": [1, "1", [true, "true"], {"k": "v", "l": ["x"]}]});
        let text = to_yaml(&doc);
        let back: Value = serde_yaml::from_str(&text).expect("parses");
        assert_eq!(back, doc, "{text}");
        assert!(text.contains("big: 1.0e+300\n"), "{text}");
        assert!(text.contains("small: -2.5e-8\n"), "{text}");
    }

    #[test]
    fn multi_line_text_is_a_literal_block() {
        let cfg = "# Peers\nKNOWN_PEERS = [\n  \"a.b:11625\",\n]\n";
        let text =
            to_yaml(&json!({"metadata": {"annotations": {"stellar.org/peers-config": cfg}}}));
        assert!(
            text.contains("stellar.org/peers-config: |\n      # Peers\n"),
            "{text}"
        );
        let back: Value = serde_yaml::from_str(&text).expect("parses");
        assert_eq!(
            back["metadata"]["annotations"]["stellar.org/peers-config"],
            cfg
        );
    }

    #[test]
    fn pod_layout_is_like_kubectl() {
        let doc = json!({"apiVersion": "v1", "kind": "Pod",
            "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "yes"}]}]}});
        assert_eq!(
            to_yaml(&doc),
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - env:\n    - name: A\n      value: \"yes\"\n    name: c\n"
        );
    }
}
