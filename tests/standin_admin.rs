//! The bed's STAND-IN stellar-core (tests/testbed/images/stellar-core-standin.c, not
//! stellar-core), checked without the bed: built with gcc as `tests/testbed/testbed build`
//! builds it, run on a temporary conf with a high port on 127.0.0.1, and asked over its admin
//! HTTP port what stellar-core answers (`connect`, `peers`, booting, an admin port that comes up
//! late, unknown commands, bad requests), with every call recorded on its stdout.
//!
//! gcc and a static libc are bed dependencies (`tests/testbed/testbed build` installs them):
//! this test fails, not skips, when they are missing. All traffic is to 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory under target/, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = repo()
            .join("target")
            .join(format!("standin-admin-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create temp dir");
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds the stand-in exactly as `build_images` does (static, -Wall -Wextra -Werror).
fn build(dir: &Path) -> PathBuf {
    let out = dir.join("stellar-core");
    let src = repo().join("tests/testbed/images/stellar-core-standin.c");
    let res = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("gcc not runnable ({e}): it is a bed dependency, run `tests/testbed/testbed build` (or `make deps`)")
        });
    assert!(
        res.status.success(),
        "building the stand-in failed (gcc and libc6-dev come with `tests/testbed/testbed build`):\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

struct StandIn {
    child: Child,
    stdout: PathBuf,
    port: u16,
}

impl StandIn {
    fn start(bin: &Path, dir: &Path, conf_extra: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let conf = dir.join(format!("stellar-core-{port}.cfg"));
        std::fs::write(
            &conf,
            format!(
                "HTTP_PORT = {port}\nNETWORK_PASSPHRASE = \"Test \\\"quoted\\\" Network\"\n{conf_extra}KNOWN_PEERS = [\"a.example:11625\"]\n[QUORUM_SET]\nTHRESHOLD_PERCENT = 66\n"
            ),
        )
        .expect("write conf");
        let stdout = dir.join(format!("stdout-{port}.log"));
        let child = Command::new(bin)
            .args(["run", "--conf"])
            .arg(&conf)
            .arg("--console")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the stand-in");
        StandIn {
            child,
            stdout,
            port,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Waits until the admin port accepts connections.
    fn wait_listening(&self, within: Duration) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the admin port {} did not open within {within:?}; stdout:\n{}",
            self.port,
            self.log()
        );
    }

    /// Sends `raw` on a fresh connection; the whole answer (the server closes it).
    fn raw(&self, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to admin port");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(raw).expect("send request");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("read answer to its end");
        String::from_utf8_lossy(&out).into_owned()
    }

    /// GET `target` as curl would: (status line, headers, body).
    fn get(&self, target: &str) -> (String, String, String) {
        let ans = self.raw(
            format!(
                "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: standin-test\r\nAccept: */*\r\n\r\n",
                self.port
            )
            .as_bytes(),
        );
        let (head, body) = ans
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of headers in {ans:?}"));
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        let len: usize = headers
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
        assert_eq!(len, body.len(), "Content-Length vs body for {target}");
        (status.to_owned(), headers.to_owned(), body.to_owned())
    }

    /// Sends SIGTERM (through kill(1)); the exit code, which must come within 2 s.
    fn term(mut self) -> Option<i32> {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(st.success());
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "the stand-in did not exit within 2 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const JSON: &str = "Content-Type: application/json";
const BOOTING: &str = r#"{"error": "Core is booting, try again later"}"#;
const EMPTY_PEERS: &str = "{\n   \"authenticated_peers\" : {\n      \"inbound\" : null,\n      \"outbound\" : null\n   },\n   \"pending_peers\" : {\n      \"inbound\" : null,\n      \"outbound\" : null\n   }\n}\n";

#[test]
fn standin_serves_connect_and_peers_as_stellar_core_does() {
    let dir = TempDir::new("api");
    let bin = build(&dir.0);
    let s = StandIn::start(&bin, &dir.0, "", &[]);
    s.wait_listening(Duration::from_secs(5));

    // The run line and the file come first, as before (the trials parse them).
    let log = s.log();
    assert!(
        log.starts_with("stellar-core stand-in: run --conf "),
        "{log}"
    );
    assert!(log.contains(&format!("HTTP_PORT = {}\n", s.port)), "{log}");
    assert!(
        log.contains(&format!(
            "stellar-core stand-in: admin listening on 127.0.0.1:{}\n",
            s.port
        )),
        "{log}"
    );

    let (st, h, body) = s.get("/peers");
    assert_eq!(st, "HTTP/1.0 200 OK");
    assert!(h.contains(JSON) && h.contains("Connection: close"), "{h}");
    assert_eq!(body, EMPTY_PEERS);

    let (st, h, body) = s.get("/connect?peer=localhost&port=11625");
    assert_eq!(st, "HTTP/1.0 200 OK");
    assert!(h.contains(JSON), "{h}");
    assert_eq!(body, "Connect to: localhost:11625");
    // A dotted quad is taken as it is; the same address twice is listed once.
    assert_eq!(
        s.get("/connect?peer=127.0.0.1&port=1").2,
        "Connect to: 127.0.0.1:1"
    );
    assert_eq!(
        s.get("/connect?peer=127.0.0.1&port=11625").2,
        "Connect to: 127.0.0.1:11625"
    );
    let (_, _, body) = s.get("/peers?compact=false");
    assert_eq!(
        body,
        EMPTY_PEERS.replace(
            "\"outbound\" : null\n   }\n}",
            "\"outbound\" : [ \"127.0.0.1:11625\", \"127.0.0.1:1\" ]\n   }\n}"
        )
    );

    // Errors, as CommandHandler::connect and PeerBareAddress::resolve word them (status 200).
    // No name here may need DNS: this host's resolver is off the machine. A name that does
    // not resolve is exercised on the bed, whose pods ask the bed's own CoreDNS (live::*).
    for (target, want) in [
        (
            "/connect?peer=x",
            "Must specify a peer and port: connect&peer=PEER&port=PORT",
        ),
        (
            "/connect?port=1&peer=",
            "Must specify a peer and port: connect&peer=PEER&port=PORT",
        ),
        (
            "/connect?peer=bad_name&port=1",
            r#"{"exception": "Cannot parse peer address 'bad_name:1'"}"#,
        ),
        (
            "/connect?peer=localhost&port=0",
            r#"{"exception": "Could not resolve 'localhost:0': port out of range"}"#,
        ),
        (
            "/connect?peer=localhost&port=123456",
            r#"{"exception": "Cannot parse peer address 'localhost:123456'"}"#,
        ),
        (
            "/metrics",
            r#"{"exception": "not implemented by the stellar-core stand-in"}"#,
        ),
    ] {
        let (st, h, body) = s.get(target);
        assert_eq!(st, "HTTP/1.0 200 OK", "{target}");
        assert!(h.contains(JSON), "{target}: {h}");
        assert_eq!(body, want, "{target}");
    }
    // None of them added anything.
    assert!(s.get("/peers").2.contains("\"127.0.0.1:1\" ]"));

    // /info, simplified: what SDF's chart's readinessProbe greps for, and the stand-in's name.
    let (st, h, body) = s.get("/info");
    assert_eq!(st, "HTTP/1.0 200 OK");
    assert!(h.contains(JSON), "{h}");
    assert_eq!(
        body,
        "{\n   \"info\" : {\n      \"build\" : \"stellar-core stand-in (not stellar-core)\",\n      \"network\" : \"Test \\\"quoted\\\" Network\",\n      \"peers\" : {\n         \"authenticated_count\" : 0,\n         \"pending_count\" : 2\n      },\n      \"state\" : \"Synced!\"\n   }\n}\n"
    );

    // Unknown commands: fileNotFound's page; a bad %-escape or a non-HTTP line: 400.
    for target in ["/", "/nosuchcommand", "/reload?x=1"] {
        let (st, h, body) = s.get(target);
        assert_eq!(st, "HTTP/1.0 404 Not Found", "{target}");
        assert!(h.contains("Content-Type: text/html"), "{h}");
        assert!(
            body.starts_with("<b>Welcome to stellar-core!</b><p>"),
            "{body}"
        );
    }
    let (st, _, body) = s.get("/peers%zz");
    assert_eq!(st, "HTTP/1.0 400 Bad Request");
    assert!(body.contains("<h1>400 Bad Request</h1>"), "{body}");
    for junk in [
        &b"garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
        b"GET /peers HTTP/x\r\n\r\n",
    ] {
        let ans = s.raw(junk);
        assert!(
            ans.starts_with("HTTP/1.0 400 Bad Request\r\n"),
            "{junk:?} -> {ans:?}"
        );
    }
    // A client that connects and leaves, or sends half a request and leaves: no crash.
    drop(TcpStream::connect(("127.0.0.1", s.port)).expect("connect"));
    let mut half = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    half.write_all(b"GET /pe").expect("send");
    half.shutdown(Shutdown::Both).ok();
    drop(half);
    // Many sequential connections.
    for _ in 0..200 {
        assert_eq!(s.get("/peers").0, "HTTP/1.0 200 OK");
    }

    // Every call recorded, one stable line each.
    let log = s.log();
    for line in [
        "stellar-core stand-in: admin GET /peers -> 200 {\n".to_owned(),
        "stellar-core stand-in: admin GET /connect?peer=localhost&port=11625 -> 200 Connect to: localhost:11625\n".to_owned(),
        "stellar-core stand-in: admin GET /connect?peer=bad_name&port=1 -> 200 {\"exception\": \"Cannot parse peer address 'bad_name:1'\"}\n".to_owned(),
        "stellar-core stand-in: admin GET /nosuchcommand -> 404 <b>Welcome to stellar-core!</b>".to_owned(),
        "stellar-core stand-in: admin GET /peers%zz -> 400 <html>".to_owned(),
        "stellar-core stand-in: admin - - -> 400 <html>".to_owned(),
    ] {
        assert!(log.contains(&line), "no {line:?} in:\n{log}");
    }
    let admin_lines = log
        .lines()
        .filter(|l| l.starts_with("stellar-core stand-in: admin ") && l.contains(" -> "))
        .count();
    assert_eq!(
        admin_lines,
        1 + 3 + 1 + 6 + 1 + 1 + 3 + 1 + 4 + 200,
        "{log}"
    );

    assert_eq!(s.term(), Some(0));
}

#[test]
fn standin_answers_booting_then_ready() {
    let dir = TempDir::new("boot");
    let bin = build(&dir.0);
    let s = StandIn::start(&bin, &dir.0, "", &[("STANDIN_BOOTING_SECONDS", "3")]);
    s.wait_listening(Duration::from_secs(5));
    let t0 = Instant::now();
    for target in ["/connect?peer=localhost&port=11625", "/peers", "/info"] {
        let (st, h, body) = s.get(target);
        assert_eq!(st, "HTTP/1.0 200 OK");
        assert!(h.contains(JSON), "{h}");
        assert_eq!(body, BOOTING, "{target}");
    }
    // Unknown commands are not routed through the booting check in stellar-core either.
    assert_eq!(s.get("/nosuchcommand").0, "HTTP/1.0 404 Not Found");
    assert!(t0.elapsed() < Duration::from_secs(2), "too slow to test");
    std::thread::sleep(Duration::from_millis(3200).saturating_sub(t0.elapsed()));
    // Nothing was stored while booting.
    assert_eq!(s.get("/peers").2, EMPTY_PEERS);
    assert_eq!(
        s.get("/connect?peer=localhost&port=11625").2,
        "Connect to: localhost:11625"
    );
    assert!(s.log().contains(&format!(
        "stellar-core stand-in: admin GET /peers -> 200 {BOOTING}\n"
    )));
    assert_eq!(s.term(), Some(0));
}

#[test]
fn standin_admin_port_comes_up_late_and_public_binds_all() {
    let dir = TempDir::new("down");
    let bin = build(&dir.0);
    let s = StandIn::start(&bin, &dir.0, "", &[("STANDIN_ADMIN_DOWN_SECONDS", "2")]);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        TcpStream::connect(("127.0.0.1", s.port)).is_err(),
        "the admin port answered while down"
    );
    s.wait_listening(Duration::from_secs(5));
    let up = t0.elapsed();
    assert!(up >= Duration::from_millis(1500), "up after {up:?}");
    assert_eq!(s.get("/peers").2, EMPTY_PEERS);
    let log = s.log();
    assert!(
        log.contains("stellar-core stand-in: admin down for 2 s\n"),
        "{log}"
    );
    // SIGTERM while serving exits 0.
    assert_eq!(s.term(), Some(0));

    // PUBLIC_HTTP_PORT = true binds 0.0.0.0 (still only dialled on 127.0.0.1 here).
    let p = StandIn::start(&bin, &dir.0, "PUBLIC_HTTP_PORT = true\n", &[]);
    p.wait_listening(Duration::from_secs(5));
    assert!(
        p.log().contains(&format!(
            "stellar-core stand-in: admin listening on 0.0.0.0:{}\n",
            p.port
        )),
        "{}",
        p.log()
    );
    // With RUN_STANDALONE = true the overlay commands do not exist.
    let q = StandIn::start(&bin, &dir.0, "RUN_STANDALONE = true\n", &[]);
    q.wait_listening(Duration::from_secs(5));
    assert_eq!(
        q.get("/connect?peer=localhost&port=1").0,
        "HTTP/1.0 404 Not Found"
    );
    assert_eq!(
        q.get("/metrics").2,
        r#"{"exception": "not implemented by the stellar-core stand-in"}"#
    );
}

#[test]
fn standin_db_commands_for_sdf_chart_init() {
    let dir = TempDir::new("db");
    let bin = build(&dir.0);
    let conf = dir.0.join("c.cfg");
    std::fs::write(&conf, "HTTP_PORT = 1\n").expect("write");
    for cmd in ["new-db", "upgrade-db"] {
        let out = Command::new(&bin)
            .args([cmd, "--conf"])
            .arg(&conf)
            .arg("--console")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0), "{cmd}");
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .starts_with(&format!("stellar-core stand-in: {cmd} --conf ")),
            "{cmd}"
        );
        let missing = Command::new(&bin)
            .args([cmd, "--conf", "/nonexistent/x.cfg"])
            .output()
            .expect("run");
        assert_eq!(missing.status.code(), Some(1), "{cmd} on a missing file");
    }
    let other = Command::new(&bin)
        .args(["catchup", "--conf"])
        .arg(&conf)
        .output()
        .expect("run");
    assert_eq!(other.status.code(), Some(2));
}

/// The live sidecar (`stellar-peer-injector live-peers`, the real binary) against the
/// stand-in's admin port, without the bed: the snippet changes, the merged file is
/// rewritten, each added peer gets one successful `connect` (after the booting answers),
/// a removed one gets none, `/metrics` counts it all, and SIGTERM stops it. Peers are IP
/// addresses and `localhost` only: no DNS.
#[test]
fn live_sidecar_connects_added_peers_and_rewrites_the_file() {
    let dir = TempDir::new("live");
    let bin = build(&dir.0);
    let s = StandIn::start(&bin, &dir.0, "", &[("STANDIN_BOOTING_SECONDS", "2")]);
    s.wait_listening(Duration::from_secs(5));
    let base = dir.0.join("base.cfg");
    std::fs::write(
        &base,
        format!("HTTP_PORT = {}\nNETWORK_PASSPHRASE = \"x\"\n", s.port),
    )
    .expect("base");
    let peers = dir.0.join("peers.cfg");
    let snippet = |list: &[&str]| {
        let items: Vec<String> = list.iter().map(|p| format!("{p:?}")).collect();
        format!(
            "KNOWN_PEERS = [{}]\nPREFERRED_PEERS = []\n",
            items.join(", ")
        )
    };
    std::fs::write(&peers, snippet(&["127.0.0.2:11625"])).expect("peers");
    let out = dir.0.join("merged").join("stellar-core.cfg");
    std::fs::create_dir_all(out.parent().expect("parent")).expect("merged dir");
    let metrics_port = free_port();
    let mut side = Command::new(env!("CARGO_BIN_EXE_stellar-peer-injector"))
        .arg("live-peers")
        .arg("--base")
        .arg(&base)
        .arg("--peers")
        .arg(&peers)
        .arg("--out")
        .arg(&out)
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.0.join("sidecar.log")).expect("log"))
        .spawn()
        .expect("start live-peers");
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let t0 = Instant::now();
        while !f() {
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = side_log(&dir.0);
                panic!(
                    "{what}: not within 20 s\nstand-in:\n{}\nsidecar:\n{}",
                    s.log(),
                    side_log(&dir.0)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // At start it merges once: the process would start with exactly these peers.
    wait("the first merge", &|| {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("127.0.0.2:11625"))
    });
    std::fs::write(
        &peers,
        snippet(&["127.0.0.2:11625", "127.0.0.3:11625", "localhost:11700"]),
    )
    .expect("peers changed");
    let connects = |log: &str, target: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("admin GET {target} -> 200 Connect to: ")))
            .count()
    };
    wait("both added peers connected", &|| {
        let log = s.log();
        connects(&log, "/connect?peer=127.0.0.3&port=11625") == 1
            && connects(&log, "/connect?peer=localhost&port=11700") == 1
    });
    let log = s.log();
    assert!(
        log.contains("-> 200 {\"error\": \"Core is booting, try again later\"}"),
        "{log}"
    );
    assert_eq!(
        connects(&log, "/connect?peer=127.0.0.2&port=11625"),
        0,
        "{log}"
    );
    let merged = std::fs::read_to_string(&out).expect("merged");
    assert!(
        merged.contains("127.0.0.3:11625") && merged.contains("localhost:11700"),
        "{merged}"
    );
    // Removed: no call, the file drops it.
    let calls_before = log.matches("admin GET /connect").count();
    std::fs::write(&peers, snippet(&["127.0.0.2:11625", "localhost:11700"])).expect("removed");
    wait("the file without the removed peer", &|| {
        std::fs::read_to_string(&out).is_ok_and(|t| !t.contains("127.0.0.3"))
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(s.log().matches("admin GET /connect").count(), calls_before);
    let m = {
        let mut c = TcpStream::connect(("127.0.0.1", metrics_port)).expect("metrics");
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("ask");
        let mut t = String::new();
        c.read_to_string(&mut t).expect("read metrics");
        t
    };
    assert!(
        m.contains("stellar_peers_live_connects_total{answer=\"connected\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("stellar_peers_live_connects_total{answer=\"booting\"}"),
        "{m}"
    );
    assert!(m.contains("stellar_peers_live_pending 0"), "{m}");
    assert!(
        m.contains("stellar_peers_live_snippet_changes_total 2"),
        "{m}"
    );
    let st = Command::new("kill")
        .args(["-TERM", &side.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let code = side.wait().expect("wait").code();
    assert_eq!(code, Some(0), "sidecar:\n{}", side_log(&dir.0));
}

fn side_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("sidecar.log")).unwrap_or_default()
}
