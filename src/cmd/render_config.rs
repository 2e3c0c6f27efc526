//! `render-config`: the init container that writes stellar-core's merged config.
//!
//! A thin edge over [`crate::config::merge()`]: read the base config and the peers
//! snippet, merge, check, write atomically. Every failure is one line on
//! stderr (and in `/dev/termination-log`, so `kubectl describe pod` shows it).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::config::merge::{Flavour, MergeError, addresses};
use crate::config::{
    KNOWN_PEERS, PREFERRED_PEERS, TomlError, Violation, check, check_captive, merge, merge_captive,
};

/// Flags of `render-config`.
#[derive(clap::Args, Debug, Clone)]
pub struct RenderArgs {
    /// The base stellar-core config: the file stellar-core would read without us
    /// (e.g. /config/stellar-core.cfg from the operator's or the chart's ConfigMap).
    #[arg(long, env = "STELLAR_PEER_INJECTOR_BASE_CONFIG", value_name = "FILE")]
    pub base: PathBuf,
    /// The peers snippet the webhook projected into the pod.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_PEERS_FILE",
        value_name = "FILE",
        default_value = "/etc/stellar/peers/peers.cfg"
    )]
    pub peers: PathBuf,
    /// Where to write the merged config (start stellar-core with --conf FILE).
    #[arg(long, env = "STELLAR_PEER_INJECTOR_OUT_CONFIG", value_name = "FILE")]
    pub out: PathBuf,
    /// Also write a failure here when the file exists and is writable.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_TERMINATION_LOG",
        value_name = "FILE",
        default_value = "/dev/termination-log"
    )]
    pub termination_log: PathBuf,
    /// What --base is: `core`, stellar-core's own config (a validator: KNOWN_PEERS and
    /// PREFERRED_PEERS merged); `captive-core`, the captive-core TOML of Horizon or
    /// stellar-rpc (all the snippet's peers merged into PREFERRED_PEERS, never a
    /// KNOWN_PEERS, which captive core refuses).
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_FLAVOUR",
        default_value = "core",
        value_parser = flavour_parser()
    )]
    pub flavour: Flavour,
}

/// `core` or `captive-core` (the core crate's [`Flavour`] knows no command line).
fn flavour_parser() -> impl clap::builder::TypedValueParser<Value = Flavour> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new([
        Flavour::Core.as_str(),
        Flavour::CaptiveCore.as_str(),
    ])
    .map(|s| {
        if s == Flavour::CaptiveCore.as_str() {
            Flavour::CaptiveCore
        } else {
            Flavour::Core
        }
    })
}

/// What a successful run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub out: PathBuf,
    pub known: usize,
    pub preferred: usize,
    /// Which kind of file was written.
    pub flavour: Flavour,
    /// Rules the base config breaks that are not ours (written anyway; stellar-core decides).
    pub foreign: Vec<Violation>,
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.flavour == Flavour::CaptiveCore {
            return write!(
                f,
                "render-config: wrote {} (captive core: {} {PREFERRED_PEERS}, no {KNOWN_PEERS})",
                self.out.display(),
                self.preferred
            );
        }
        write!(
            f,
            "render-config: wrote {} ({} {KNOWN_PEERS}, {} {PREFERRED_PEERS})",
            self.out.display(),
            self.known,
            self.preferred
        )
    }
}

/// Why the peers snippet is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnippetError {
    #[error("{0}")]
    Toml(TomlError),
    #[error("it has no {KNOWN_PEERS}")]
    NoKnownPeers,
    #[error("unexpected key {0:?}")]
    UnknownKey(String),
    #[error(transparent)]
    Peers(MergeError),
}

/// Violations as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// Why `render-config` failed. Each message is one line: what is wrong, then what to do.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "render-config: cannot read base config {path}: {source}; mount the ConfigMap that provides it there or fix --base"
    )]
    ReadBase {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("render-config: base config {path}: {source}; fix the ConfigMap that provides it")]
    Base {
        path: String,
        #[source]
        source: MergeError,
    },
    #[error(
        "render-config: cannot read peers file {path}: {source}; the pod must be injected by stellar-peer-injector with the snippet mounted there (check --peers)"
    )]
    ReadPeers {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "render-config: peers file {path}: {source}; it must be the snippet stellar-peer-injector injects (check --peers)"
    )]
    Peers {
        path: String,
        #[source]
        source: SnippetError,
    },
    #[error(
        "render-config: refusing to write {path}: the merged config would break stellar-core rules: {violations}; please report this with the base config"
    )]
    Unsafe {
        path: String,
        violations: Violations,
    },
    #[error(
        "render-config: cannot write {path}: {source}; --out must be in a writable directory (an emptyDir shared with the stellar-core container)"
    )]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Parses the webhook's snippet: `KNOWN_PEERS` (required) and `PREFERRED_PEERS`.
pub fn parse_snippet(text: &str) -> Result<(Vec<String>, Vec<String>), SnippetError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| SnippetError::Toml(TomlError::new(text, &e)))?;
    let mut known = None;
    let mut preferred = Vec::new();
    for (key, value) in &table {
        match key.as_str() {
            KNOWN_PEERS => {
                known = Some(addresses(KNOWN_PEERS, 0, value).map_err(SnippetError::Peers)?);
            }
            PREFERRED_PEERS => {
                preferred = addresses(PREFERRED_PEERS, 0, value).map_err(SnippetError::Peers)?;
            }
            other => return Err(SnippetError::UnknownKey(other.to_owned())),
        }
    }
    Ok((known.ok_or(SnippetError::NoKnownPeers)?, preferred))
}

/// Reads, merges, checks and writes. No output of its own.
pub fn render(args: &RenderArgs) -> Result<Rendered, RenderError> {
    let shown = |p: &Path| p.display().to_string();
    let base = std::fs::read_to_string(&args.base).map_err(|source| RenderError::ReadBase {
        path: shown(&args.base),
        source,
    })?;
    let snippet =
        std::fs::read_to_string(&args.peers).map_err(|source| RenderError::ReadPeers {
            path: shown(&args.peers),
            source,
        })?;
    let (known, preferred) = parse_snippet(&snippet).map_err(|source| RenderError::Peers {
        path: shown(&args.peers),
        source,
    })?;
    if args.flavour == Flavour::CaptiveCore {
        return render_captive(args, &base, &known, &preferred);
    }
    let merged = merge(&base, &known, &preferred).map_err(|source| RenderError::Base {
        path: shown(&args.base),
        source,
    })?;
    let ours: Vec<_> = check(&merged)
        .err()
        .unwrap_or_default()
        .into_iter()
        .filter(Violation::is_ours)
        .collect();
    // Reported against the base, with the base's line numbers.
    let foreign: Vec<_> = check(&base)
        .err()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !v.is_ours())
        .collect();
    if !ours.is_empty() {
        return Err(RenderError::Unsafe {
            path: shown(&args.out),
            violations: Violations(ours),
        });
    }
    let counts = crate::config::base_peers(&merged).map_err(|source| RenderError::Base {
        path: shown(&args.base),
        source,
    })?;
    write_atomic(&args.out, merged.as_bytes()).map_err(|source| RenderError::Write {
        path: shown(&args.out),
        source,
    })?;
    Ok(Rendered {
        out: args.out.clone(),
        known: counts.known.len(),
        preferred: counts.preferred.len(),
        flavour: Flavour::Core,
        foreign,
    })
}

/// The captive-core flavour of [`render`]: every peer of the snippet (its
/// `KNOWN_PEERS` holds the preferred ones too) into `PREFERRED_PEERS`.
fn render_captive(
    args: &RenderArgs,
    base: &str,
    known: &[String],
    preferred: &[String],
) -> Result<Rendered, RenderError> {
    let shown = |p: &Path| p.display().to_string();
    let peers: Vec<&str> = known.iter().chain(preferred).map(String::as_str).collect();
    let merged = merge_captive(base, &peers).map_err(|source| RenderError::Base {
        path: shown(&args.base),
        source,
    })?;
    // Ours: the merged file is TOML and its top-level PREFERRED_PEERS is sound. Misplaced
    // or refused keys are the base's own, reported against the base.
    let user_kept = |v: &Violation| {
        matches!(
            v,
            Violation::CaptiveRefused { .. } | Violation::MisplacedKey { .. }
        )
    };
    let ours: Vec<_> = check_captive(&merged)
        .err()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !user_kept(v))
        .collect();
    if !ours.is_empty() {
        return Err(RenderError::Unsafe {
            path: shown(&args.out),
            violations: Violations(ours),
        });
    }
    let foreign: Vec<_> = check_captive(base)
        .err()
        .unwrap_or_default()
        .into_iter()
        .filter(user_kept)
        .collect();
    let count = crate::config::captive_base_peers(&merged)
        .map_err(|source| RenderError::Base {
            path: shown(&args.base),
            source,
        })?
        .len();
    write_atomic(&args.out, merged.as_bytes()).map_err(|source| RenderError::Write {
        path: shown(&args.out),
        source,
    })?;
    Ok(Rendered {
        out: args.out.clone(),
        known: 0,
        preferred: count,
        flavour: Flavour::CaptiveCore,
        foreign,
    })
}

/// `render-config` as a command: one line on stdout on success; on failure
/// the error (one line, printed by the caller) also goes to the termination log.
pub fn main(args: &RenderArgs) -> Result<(), RenderError> {
    match render(args) {
        Ok(r) => {
            for v in &r.foreign {
                eprintln!(
                    "render-config: warning: base config {}: {v}",
                    args.base.display()
                );
            }
            println!("{r}");
            Ok(())
        }
        Err(e) => {
            write_termination_log(&args.termination_log, &e.to_string());
            Err(e)
        }
    }
}

/// Writes `message` to `path` if it exists and is writable; never creates it.
pub fn write_termination_log(path: &Path, message: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
    {
        let _ = writeln!(f, "{message}");
    }
}

/// Writes `bytes` to `path` via a temporary file in the same directory,
/// fsynced and renamed over `path`: readers see the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable; the file is complete either way.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "spi-render-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("temp dir");
            Self(p)
        }
        fn file(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).expect("write fixture");
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const SNIPPET: &str = "# Peers of network \"testnet\", written by stellar-peer-injector at pod creation.\n# peers-hash: 0123456789abcdef. Edits are lost: change StellarNodes or the extra-peers file instead.\nKNOWN_PEERS = [\n  \"v1.ns.svc.cluster.local:11625\",\n  \"v2.ns.svc.cluster.local:11625\",\n]\nPREFERRED_PEERS = [\n  \"v1.ns.svc.cluster.local:11625\",\n]\n";

    const BASE: &str = "NETWORK_PASSPHRASE=\"Test SDF Network ; September 2015\"\nKNOWN_PEERS=[\"core-testnet1.stellar.org\"]\n\n[QUORUM_SET]\nTHRESHOLD_PERCENT=67\nVALIDATORS=[\"GABC\"]\n";

    fn args(d: &TempDir, base: &str, peers: &str) -> RenderArgs {
        RenderArgs {
            base: d.file("stellar-core.cfg", base),
            peers: d.file("peers.cfg", peers),
            out: d.0.join("merged").join("stellar-core.cfg"),
            termination_log: d.file("termination-log", ""),
            flavour: Flavour::Core,
        }
    }

    fn out_dir(a: &RenderArgs) {
        if let Some(p) = a.out.parent() {
            std::fs::create_dir_all(p).expect("out dir");
        }
    }

    fn term_log(a: &RenderArgs) -> String {
        std::fs::read_to_string(&a.termination_log).expect("termination log")
    }

    fn one_line(e: &RenderError) -> String {
        let m = e.to_string();
        assert!(!m.contains('\n'), "one line: {m}");
        assert!(m.starts_with("render-config: "), "{m}");
        m
    }

    #[test]
    fn success_writes_the_merged_file_and_says_so() {
        let d = TempDir::new();
        let a = args(&d, BASE, SNIPPET);
        out_dir(&a);
        let r = render(&a).expect("renders");
        let written = std::fs::read_to_string(&a.out).expect("written");
        assert_eq!(
            written,
            merge(
                BASE,
                &[
                    "v1.ns.svc.cluster.local:11625",
                    "v2.ns.svc.cluster.local:11625"
                ],
                &["v1.ns.svc.cluster.local:11625"]
            )
            .expect("merge")
        );
        assert!(check(&written).is_ok(), "{written}");
        assert_eq!((r.known, r.preferred), (3, 1));
        assert!(r.foreign.is_empty());
        assert_eq!(
            r.to_string(),
            format!(
                "render-config: wrote {} (3 KNOWN_PEERS, 1 PREFERRED_PEERS)",
                a.out.display()
            )
        );
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(a.out.parent().expect("dir"))
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("stellar-core.cfg")]);
        assert!(main(&a).is_ok());
        assert_eq!(term_log(&a), "");
    }

    #[test]
    fn running_twice_gives_the_same_bytes() {
        let d = TempDir::new();
        let a = args(&d, BASE, SNIPPET);
        out_dir(&a);
        render(&a).expect("first");
        let first = std::fs::read(&a.out).expect("first bytes");
        render(&a).expect("second");
        assert_eq!(std::fs::read(&a.out).expect("second bytes"), first);
        // The output as a base gives itself back.
        let again = RenderArgs {
            base: a.out.clone(),
            out: d.0.join("again.cfg"),
            ..a.clone()
        };
        render(&again).expect("third");
        assert_eq!(std::fs::read(&again.out).expect("third bytes"), first);
    }

    #[test]
    fn missing_base() {
        let d = TempDir::new();
        let mut a = args(&d, BASE, SNIPPET);
        out_dir(&a);
        a.base = d.0.join("nope.cfg");
        let e = render(&a).expect_err("missing base");
        assert!(matches!(e, RenderError::ReadBase { .. }));
        let m = one_line(&e);
        assert!(m.contains("nope.cfg") && m.contains("fix --base"), "{m}");
        assert!(main(&a).is_err());
        assert_eq!(term_log(&a), format!("{m}\n"));
        assert!(!a.out.exists());
    }

    #[test]
    fn invalid_base_names_line_and_column() {
        let d = TempDir::new();
        let a = args(&d, "HTTP_PORT=11626\nPEER_PORT=\n", SNIPPET);
        out_dir(&a);
        let e = render(&a).expect_err("invalid");
        let m = one_line(&e);
        assert!(
            m.contains("base config") && m.contains("not valid TOML at line 2 column"),
            "{m}"
        );
        assert!(m.ends_with("fix the ConfigMap that provides it"), "{m}");
        let dup = args(&d, "HTTP_PORT=1\nHTTP_PORT=2\n", SNIPPET);
        let m = one_line(&render(&dup).expect_err("duplicate"));
        assert!(m.contains("line 2"), "{m}");
        let bad_peer = args(&d, "KNOWN_PEERS=[\"[::1]:11625\"]\n", SNIPPET);
        let m = one_line(&render(&bad_peer).expect_err("bad peer"));
        assert!(
            m.contains("line 1: KNOWN_PEERS") && m.contains("IPv6"),
            "{m}"
        );
        assert!(!a.out.exists());
    }

    #[test]
    fn invalid_snippet() {
        let d = TempDir::new();
        for (snippet, want) in [
            ("KNOWN_PEERS = [", "not valid TOML at line 1"),
            ("PREFERRED_PEERS = []\n", "no KNOWN_PEERS"),
            (
                "KNOWN_PEERS = []\nNODE_SEED = \"x\"\n",
                "unexpected key \"NODE_SEED\"",
            ),
            ("KNOWN_PEERS = \"a\"\n", "must be an array of strings"),
            ("KNOWN_PEERS = [\"a b\"]\n", "host must be a DNS name"),
        ] {
            let a = args(&d, BASE, snippet);
            out_dir(&a);
            let e = render(&a).expect_err(snippet);
            assert!(matches!(e, RenderError::Peers { .. }), "{e:?}");
            let m = one_line(&e);
            assert!(
                m.contains(want) && m.contains("peers.cfg") && m.contains("check --peers"),
                "{m}"
            );
            assert!(!a.out.exists());
        }
        let mut a = args(&d, BASE, SNIPPET);
        a.peers = d.0.join("absent.cfg");
        let m = one_line(&render(&a).expect_err("absent"));
        assert!(m.contains("cannot read peers file"), "{m}");
    }

    #[test]
    fn unwritable_out() {
        let d = TempDir::new();
        // Parent directory missing.
        let a = args(&d, BASE, SNIPPET);
        let e = render(&a).expect_err("no dir");
        assert!(matches!(e, RenderError::Write { .. }));
        let m = one_line(&e);
        assert!(
            m.contains("cannot write") && m.contains("writable directory"),
            "{m}"
        );
        assert!(main(&a).is_err());
        assert_eq!(term_log(&a), format!("{m}\n"));
        // Parent is a file.
        let mut b = args(&d, BASE, SNIPPET);
        b.out = d.file("plain", "x").join("stellar-core.cfg");
        assert!(matches!(render(&b), Err(RenderError::Write { .. })));
        // Out is a directory: the rename fails, the temp file is cleaned up.
        let mut c = args(&d, BASE, SNIPPET);
        c.out = d.0.join("adir");
        std::fs::create_dir_all(c.out.join("x")).expect("dir");
        assert!(matches!(render(&c), Err(RenderError::Write { .. })));
        let leftovers: Vec<_> = std::fs::read_dir(&d.0)
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn foreign_defects_are_written_and_reported_as_warnings() {
        let d = TempDir::new();
        let base = "[QUORUM_SET]\nTHRESHOLD_PERCENT=67\nVALIDATORS=[\"GABC\"]\n\n# Recent History Mode\nCATCHUP_COMPLETE=false\n";
        let a = args(&d, base, SNIPPET);
        out_dir(&a);
        let r = render(&a).expect("renders");
        assert_eq!(
            r.foreign,
            [Violation::MisplacedKey {
                key: "CATCHUP_COMPLETE".into(),
                table: "QUORUM_SET".into(),
                line: 6
            }]
        );
    }

    #[test]
    fn termination_log_is_never_created() {
        let d = TempDir::new();
        let p = d.0.join("no-such-log");
        write_termination_log(&p, "x");
        assert!(!p.exists());
    }

    #[test]
    fn cli_parses_render_config() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "stellar-peer-injector",
            "render-config",
            "--base",
            "/config/stellar-core.cfg",
            "--out",
            "/etc/stellar/merged/stellar-core.cfg",
        ])
        .expect("parses");
        let crate::cli::Command::RenderConfig(a) = cli.command else {
            panic!("not render-config");
        };
        assert_eq!(a.peers, PathBuf::from("/etc/stellar/peers/peers.cfg"));
        assert_eq!(a.termination_log, PathBuf::from("/dev/termination-log"));
    }

    #[test]
    fn captive_flavour_writes_preferred_peers_only_and_warns_about_known_peers() {
        let d = TempDir::new();
        let base = "NETWORK_PASSPHRASE=\"Test SDF Network ; September 2015\"\nKNOWN_PEERS=[\"a.example.org\"]\n[HISTORY.h]\nget=\"curl -sf http://x/{0} -o {1}\"\nPEER_PORT=11625\n";
        let mut a = args(&d, base, SNIPPET);
        a.flavour = Flavour::CaptiveCore;
        out_dir(&a);
        let r = render(&a).expect("renders");
        let written = std::fs::read_to_string(&a.out).expect("written");
        // Every peer of the snippet, as PREFERRED_PEERS; the user's KNOWN_PEERS kept as is.
        assert_eq!(
            written,
            merge_captive(
                base,
                &[
                    "v1.ns.svc.cluster.local:11625",
                    "v2.ns.svc.cluster.local:11625"
                ]
            )
            .expect("merge")
        );
        assert_eq!(written.matches("KNOWN_PEERS").count(), 1);
        assert_eq!(
            (r.known, r.preferred, r.flavour),
            (0, 2, Flavour::CaptiveCore)
        );
        assert_eq!(
            r.to_string(),
            format!(
                "render-config: wrote {} (captive core: 2 PREFERRED_PEERS, no KNOWN_PEERS)",
                a.out.display()
            )
        );
        assert_eq!(
            r.foreign,
            [Violation::CaptiveRefused {
                key: "KNOWN_PEERS".into(),
                line: 2
            }]
        );
        // Twice: the same bytes.
        let first = std::fs::read(&a.out).expect("bytes");
        render(&a).expect("again");
        assert_eq!(std::fs::read(&a.out).expect("bytes"), first);
        // A bad base is refused with the path and line, nothing written.
        let mut bad = args(&d, "PREFERRED_PEERS=\"x\"\n", SNIPPET);
        bad.flavour = Flavour::CaptiveCore;
        bad.out = d.0.join("merged").join("bad.cfg");
        let m = one_line(&render(&bad).expect_err("bad"));
        assert!(
            m.contains("line 1: PREFERRED_PEERS must be an array"),
            "{m}"
        );
        assert!(!bad.out.exists());
    }

    #[test]
    fn cli_parses_the_captive_flavour() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "stellar-peer-injector",
            "render-config",
            "--base",
            "/config/stellar-core.cfg",
            "--out",
            "/etc/stellar/merged/captive-core.cfg",
            "--flavour",
            "captive-core",
        ])
        .expect("parses");
        let crate::cli::Command::RenderConfig(a) = cli.command else {
            panic!("not render-config");
        };
        assert_eq!(a.flavour, Flavour::CaptiveCore);
        let cli = crate::cli::Cli::try_parse_from([
            "stellar-peer-injector",
            "render-config",
            "--base",
            "/b",
            "--out",
            "/o/x",
        ])
        .expect("parses");
        let crate::cli::Command::RenderConfig(a) = cli.command else {
            panic!("not render-config");
        };
        assert_eq!(a.flavour, Flavour::Core, "the default is unchanged");
        assert!(
            crate::cli::Cli::try_parse_from([
                "stellar-peer-injector",
                "render-config",
                "--base",
                "/b",
                "--out",
                "/o/x",
                "--flavour",
                "horizon",
            ])
            .is_err()
        );
    }
}
