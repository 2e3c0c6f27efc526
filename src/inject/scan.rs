//! A validating single-pass reader for the usual AdmissionReview.
//!
//! serde_json reads the 8 KB review of an operator pod in about 10 µs, most of it
//! skipping fields the webhook never looks at (managedFields, userInfo, probes…). This
//! reader checks the whole body against the JSON grammar as fast as it can scan bytes
//! (eight at a time inside strings) and keeps only the fields of [`RequestView`] and
//! [`PodView`], borrowed from the body.
//!
//! It is deliberately narrow: it answers only for a well-formed `admission.k8s.io/v1`
//! AdmissionReview whose fields have the expected types, without escapes in the keys
//! and strings it keeps, without `null`s or repeated keys where it reads. On anything
//! else it declines (`None`) and [`super::review::parse_review`] reads the body with
//! serde, which then accepts it or explains what is wrong. So its only obligation is:
//! whatever it accepts, serde accepts too, with the same view. The unit tests and the
//! fuzz target check exactly that.

use std::borrow::Cow;

use super::review::{
    ADMISSION_API_VERSION, Annotations, ContainerView, KindView, Labels, MetaView, Named, PodView,
    RequestView, SpecView,
};
use super::{ANNOTATION_OPT_OUT, LABEL_INSTANCE, LABEL_NAME};

/// Deeper bodies are left to serde (whose own limit is 128); pods nest about 12 deep.
const MAX_DEPTH: u32 = 64;

/// Declined: let serde read the body.
#[derive(Debug)]
struct Decline;

type R<T> = Result<T, Decline>;

/// Reads `body` (already known to be UTF-8) if it is a plain, valid AdmissionReview.
pub(super) fn review(body: &str) -> Option<RequestView<'_>> {
    let mut r = Reader {
        s: body,
        b: body.as_bytes(),
        i: 0,
        depth: 0,
    };
    let req = r.review().ok()?;
    r.ws();
    (r.i == r.b.len()).then_some(req)
}

struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// True if any byte of `w` is `"`, `\` or a control character (below 0x20).
fn special(w: u64) -> bool {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (quote | backslash | control) != 0
}

/// Marks one key as read; a repeated key declines.
fn once(seen: &mut u32, bit: u32) -> R<()> {
    if *seen & bit != 0 {
        return Err(Decline);
    }
    *seen |= bit;
    Ok(())
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> R<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Decline)
    }

    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek()? != c {
            return Err(Decline);
        }
        self.i += 1;
        Ok(())
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Decline);
        }
        Ok(())
    }

    /// Skips string bytes that need no attention, eight at a time.
    fn scan_plain(&mut self) {
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            if special(u64::from_le_bytes(w)) {
                break;
            }
            self.i += 8;
        }
        while let Some(&c) = self.b.get(self.i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                break;
            }
            self.i += 1;
        }
    }

    /// A string without escapes, borrowed from the body.
    fn text(&mut self) -> R<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        self.scan_plain();
        if self.b.get(self.i) != Some(&b'"') {
            return Err(Decline);
        }
        let s = self.s.get(start..self.i).ok_or(Decline)?;
        self.i += 1;
        Ok(s)
    }

    fn cow(&mut self) -> R<Cow<'a, str>> {
        self.text().map(Cow::Borrowed)
    }

    /// Skips a string, checking its escapes and that it has no control characters.
    fn skip_string(&mut self) -> R<()> {
        self.eat(b'"')?;
        loop {
            self.scan_plain();
            let c = *self.b.get(self.i).ok_or(Decline)?;
            self.i += 1;
            match c {
                b'"' => return Ok(()),
                b'\\' => {
                    let e = *self.b.get(self.i).ok_or(Decline)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4).ok_or(Decline)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Decline);
                            }
                            self.i += 4;
                        }
                        _ => return Err(Decline),
                    }
                }
                _ => return Err(Decline),
            }
        }
    }

    fn literal(&mut self, lit: &[u8]) -> R<()> {
        if self.b.get(self.i..self.i + lit.len()) != Some(lit) {
            return Err(Decline);
        }
        self.i += lit.len();
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> R<()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Decline),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Decline);
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Decline);
            }
        }
        Ok(())
    }

    /// Skips any JSON value, checking it.
    fn skip(&mut self) -> R<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => self.object(|r, _| r.skip()),
            b'[' => self.array(|r, _| r.skip()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Decline),
        }
    }

    /// Reads an object, handing each key (without escapes) to `field`, which must
    /// consume the value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> R<()>) -> R<()> {
        self.eat(b'{')?;
        self.enter()?;
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            loop {
                // Keys we skip may have escapes; keys we walk must not.
                let key = if self.peek()? == b'"' {
                    let at = self.i;
                    match self.text() {
                        Ok(k) => k,
                        Err(Decline) => {
                            self.i = at;
                            self.skip_string()?;
                            ""
                        }
                    }
                } else {
                    return Err(Decline);
                };
                self.eat(b':')?;
                field(self, key)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(Decline),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn array(&mut self, mut elem: impl FnMut(&mut Self, usize) -> R<()>) -> R<()> {
        self.eat(b'[')?;
        self.enter()?;
        if self.peek()? == b']' {
            self.i += 1;
        } else {
            let mut n = 0;
            loop {
                elem(self, n)?;
                n += 1;
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(Decline),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn boolean(&mut self) -> R<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => Err(Decline),
        }
    }

    fn review(&mut self) -> R<RequestView<'a>> {
        let (mut seen, mut request) = (0, None);
        self.object(|r, key| match key {
            "apiVersion" => {
                once(&mut seen, 1)?;
                (r.text()? == ADMISSION_API_VERSION)
                    .then_some(())
                    .ok_or(Decline)
            }
            "kind" => {
                once(&mut seen, 2)?;
                (r.text()? == "AdmissionReview")
                    .then_some(())
                    .ok_or(Decline)
            }
            "request" => {
                once(&mut seen, 4)?;
                request = Some(r.request()?);
                Ok(())
            }
            "" => Err(Decline),
            _ => r.skip(),
        })?;
        if seen != 7 {
            return Err(Decline);
        }
        request.ok_or(Decline)
    }

    fn request(&mut self) -> R<RequestView<'a>> {
        let mut seen = 0;
        let (mut uid, mut kind, mut operation) = (None, None, None);
        let (mut sub_resource, mut namespace, mut dry_run, mut pod) = (None, None, None, None);
        self.object(|r, key| match key {
            "uid" => {
                once(&mut seen, 1)?;
                uid = Some(r.cow()?);
                Ok(())
            }
            "kind" => {
                once(&mut seen, 2)?;
                kind = Some(r.kind()?);
                Ok(())
            }
            "subResource" => {
                once(&mut seen, 4)?;
                sub_resource = Some(r.cow()?);
                Ok(())
            }
            "namespace" => {
                once(&mut seen, 8)?;
                namespace = Some(r.cow()?);
                Ok(())
            }
            "operation" => {
                once(&mut seen, 16)?;
                operation = Some(r.cow()?);
                Ok(())
            }
            "dryRun" => {
                once(&mut seen, 32)?;
                dry_run = Some(r.boolean()?);
                Ok(())
            }
            "object" => {
                once(&mut seen, 64)?;
                pod = Some(r.pod()?);
                Ok(())
            }
            "" => Err(Decline),
            _ => r.skip(),
        })?;
        Ok(RequestView {
            uid: uid.ok_or(Decline)?,
            kind: kind.ok_or(Decline)?,
            sub_resource,
            namespace,
            operation: operation.ok_or(Decline)?,
            dry_run,
            object: None,
            pod,
        })
    }

    fn kind(&mut self) -> R<KindView<'a>> {
        let mut seen = 0;
        let (mut group, mut version, mut kind) = (None, None, None);
        self.object(|r, key| match key {
            "group" => {
                once(&mut seen, 1)?;
                group = Some(r.cow()?);
                Ok(())
            }
            "version" => {
                once(&mut seen, 2)?;
                version = Some(r.cow()?);
                Ok(())
            }
            "kind" => {
                once(&mut seen, 4)?;
                kind = Some(r.cow()?);
                Ok(())
            }
            "" => Err(Decline),
            _ => r.skip(),
        })?;
        Ok(KindView {
            group: group.unwrap_or_default(),
            version: version.unwrap_or_default(),
            kind: kind.ok_or(Decline)?,
        })
    }

    fn pod(&mut self) -> R<PodView<'a>> {
        let mut seen = 0;
        let mut pod = PodView::default();
        self.object(|r, key| match key {
            "metadata" => {
                once(&mut seen, 1)?;
                pod.metadata = Some(r.metadata()?);
                Ok(())
            }
            "spec" => {
                once(&mut seen, 2)?;
                pod.spec = Some(r.spec()?);
                Ok(())
            }
            "" => Err(Decline),
            _ => r.skip(),
        })?;
        Ok(pod)
    }

    fn metadata(&mut self) -> R<MetaView<'a>> {
        let mut seen = 0;
        let mut meta = MetaView::default();
        self.object(|r, key| match key {
            "namespace" => {
                once(&mut seen, 1)?;
                meta.namespace = Some(r.cow()?);
                Ok(())
            }
            "labels" => {
                once(&mut seen, 2)?;
                let mut labels = Labels::default();
                r.strings(|k, v| match k {
                    LABEL_NAME => labels.name = Some(v),
                    LABEL_INSTANCE => labels.instance = Some(v),
                    _ => {}
                })?;
                meta.labels = Some(labels);
                Ok(())
            }
            "annotations" => {
                once(&mut seen, 4)?;
                let mut annotations = Annotations::default();
                r.strings(|k, v| {
                    if k == ANNOTATION_OPT_OUT {
                        annotations.inject = Some(v);
                    }
                })?;
                meta.annotations = Some(annotations);
                Ok(())
            }
            "" => Err(Decline),
            _ => r.skip(),
        })?;
        Ok(meta)
    }

    /// A string-to-string map; any repeated key declines.
    fn strings(&mut self, mut each: impl FnMut(&'a str, Cow<'a, str>)) -> R<()> {
        let mut keys: Vec<&'a str> = Vec::new();
        self.object(|r, key| {
            if key.is_empty() || keys.contains(&key) {
                return Err(Decline);
            }
            keys.push(key);
            let v = r.cow()?;
            each(key, v);
            Ok(())
        })
    }

    fn spec(&mut self) -> R<SpecView<'a>> {
        let mut seen = 0;
        let mut spec = SpecView::default();
        self.object(|r, key| match key {
            "containers" => {
                once(&mut seen, 1)?;
                r.array(|r, _| {
                    spec.containers.push(r.container()?);
                    Ok(())
                })
            }
            "volumes" => {
                once(&mut seen, 2)?;
                spec.volumes = Some(r.names()?);
                Ok(())
            }
            "" => Err(Decline),
            _ => r.skip(),
        })?;
        Ok(spec)
    }

    fn container(&mut self) -> R<ContainerView<'a>> {
        let mut seen = 0;
        let mut c = ContainerView::default();
        self.object(|r, key| match key {
            "name" => {
                once(&mut seen, 1)?;
                c.name = r.cow()?;
                Ok(())
            }
            "env" => {
                once(&mut seen, 2)?;
                c.env = Some(r.names()?);
                Ok(())
            }
            "volumeMounts" => {
                once(&mut seen, 4)?;
                c.volume_mounts = Some(r.names()?);
                Ok(())
            }
            "" => Err(Decline),
            _ => r.skip(),
        })?;
        Ok(c)
    }

    /// An array of objects identified by `name`.
    fn names(&mut self) -> R<Vec<Named<'a>>> {
        let mut out = Vec::new();
        self.array(|r, _| {
            let mut seen = 0;
            let mut named = Named::default();
            r.object(|r, key| match key {
                "name" => {
                    once(&mut seen, 1)?;
                    named.name = r.cow()?;
                    Ok(())
                }
                "" => Err(Decline),
                _ => r.skip(),
            })?;
            out.push(named);
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::review::parse_review_serde;
    use super::*;

    const REVIEW: &str = include_str!("../../tests/fixtures/validator-pod-review.json");

    /// What serde reads from `body`, if it reads it.
    fn reference(body: &str) -> Option<String> {
        parse_review_serde(body).ok().map(|r| format!("{r:?}"))
    }

    /// The one property: whatever the scanner accepts, serde reads the same way.
    fn check(body: &str) -> bool {
        match review(body) {
            Some(got) => {
                assert_eq!(
                    Some(format!("{got:?}")),
                    reference(body),
                    "scanner and serde differ on {body:?}"
                );
                true
            }
            None => false,
        }
    }

    fn compact() -> String {
        let v: serde_json::Value = serde_json::from_str(REVIEW).expect("fixture");
        v.to_string()
    }

    #[test]
    fn reads_the_operator_pod_review_like_serde() {
        assert!(check(REVIEW), "the usual review must not be declined");
        assert!(check(&compact()));
        let r = review(REVIEW).expect("read");
        let pod = r.pod.as_ref().expect("pod");
        assert_eq!(pod.instance_label(), Some("validator-1"));
        assert!(pod.containers().iter().any(|c| c.name == "stellar-node"));
        assert!(
            matches!(r.uid, Cow::Borrowed(_)),
            "strings are borrowed from the body"
        );
    }

    #[test]
    fn every_truncation_is_declined() {
        let body = compact();
        for end in 0..body.len() {
            if let Some(prefix) = body.get(..end) {
                assert!(review(prefix).is_none(), "accepted a body cut at {end}");
            }
        }
    }

    #[test]
    fn single_byte_changes_never_make_it_disagree_with_serde() {
        let body = compact();
        let (mut accepted, mut declined) = (0, 0);
        for at in (0..body.len()).step_by(3) {
            for with in ["\"", "\\", "{", "]", ",", "0", " ", "\u{1}", "x"] {
                let mut b = body.clone();
                if !b.is_char_boundary(at) || !b.is_char_boundary(at + 1) {
                    continue;
                }
                b.replace_range(at..at + 1, with);
                if check(&b) {
                    accepted += 1;
                } else {
                    declined += 1;
                }
            }
        }
        // Both outcomes occur, so the property was really exercised.
        assert!(
            accepted > 1000 && declined > 1000,
            "{accepted} / {declined}"
        );
    }

    #[test]
    fn declines_what_it_does_not_handle_and_serde_still_decides() {
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(REVIEW).expect("fixture");
            f(&mut v);
            v.to_string()
        };
        let declined = [
            // Escapes where it reads.
            compact().replace("\"validator-1\"", "\"validator\\u002d1\""),
            compact().replace("\"uid\"", "\"u\\u0069d\""),
            // null where it reads.
            with(&|v| v["request"]["namespace"] = serde_json::Value::Null),
            with(&|v| v["request"]["object"]["metadata"]["labels"] = serde_json::Value::Null),
            // Wrong types.
            with(&|v| v["request"]["dryRun"] = "yes".into()),
            with(&|v| v["request"]["object"]["metadata"]["labels"]["a"] = 1.into()),
            // Not a v1 AdmissionReview, or without a request.
            with(&|v| v["apiVersion"] = "admission.k8s.io/v1beta1".into()),
            with(&|v| v["kind"] = "Pod".into()),
            with(&|v| {
                v.as_object_mut().expect("object").remove("request");
            }),
            with(&|v| {
                v["request"].as_object_mut().expect("request").remove("uid");
            }),
            // Repeated keys where it reads.
            compact().replacen("{\"", "{\"kind\":\"AdmissionReview\",\"", 1),
            compact().replace(
                "\"app.kubernetes.io/name\":\"stellar-node\"",
                "\"app.kubernetes.io/name\":\"x\",\"app.kubernetes.io/name\":\"stellar-node\"",
            ),
            // Deep nesting.
            with(&|v| {
                let mut deep = serde_json::json!(1);
                for _ in 0..80 {
                    deep = serde_json::json!([deep]);
                }
                v["request"]["options"] = deep;
            }),
            // Trailing bytes, bad numbers, bad escapes, control characters.
            compact() + "x",
            compact().replace("\"priority\":0", "\"priority\":01"),
            compact().replace("\"priority\":0", "\"priority\":-"),
            compact().replace("\"priority\":0", "\"priority\":1.e5"),
            compact().replace("Always", "Al\\qways"),
            compact().replace("Always", "Al\\u12G4ways"),
            compact().replace("Always", "Al\u{7}ways"),
        ];
        for body in &declined {
            assert!(review(body).is_none(), "should decline: {body}");
        }
        // serde alone decides these: the same body through parse_review gives serde's answer.
        for body in &declined {
            let full =
                super::super::review::parse_review(body.as_bytes()).map(|r| format!("{r:?}"));
            let serde = parse_review_serde(body).map(|r| format!("{r:?}"));
            assert_eq!(full, serde);
        }
        // What it skips may have escapes, numbers of every form and any nesting.
        let accepted = [
            compact().replace("Always", "Al\\n\\u00e9\\\"ways"),
            compact().replace("\"priority\":0", "\"priority\":-12.5E+3"),
            with(&|v| {
                v["request"]["options"] =
                    serde_json::json!({"a\"b": [[{"c": [true, false, null]}]]})
            }),
        ];
        for body in &accepted {
            assert!(check(body), "should read: {body}");
        }
    }

    #[test]
    fn special_finds_quotes_backslashes_and_control_bytes_anywhere_in_a_word() {
        for at in 0..8 {
            for b in [b'"', b'\\', 0u8, 0x1f] {
                let mut w = *b"abcdefgh";
                w[at] = b;
                assert!(special(u64::from_le_bytes(w)), "{b:#x} at {at}");
            }
        }
        for w in [
            *b"abcdefgh",
            *b"        ",
            [0x20, 0x7f, 0x80, 0xff, 0xc3, 0xa9, b'!', b'#'],
        ] {
            assert!(!special(u64::from_le_bytes(w)), "{w:?}");
        }
    }
}
