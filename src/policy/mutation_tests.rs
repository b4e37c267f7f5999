//! Mutated inputs. The shipped configuration and every KubeArmor file of `tests/kubearmor/` are changed in
//! a few thousand deterministic ways (flipped bytes, 0x80-0xff among them; cuts; repeated, dropped and
//! swapped lines; injected tokens; very long lines and deep nesting) and each result goes the loader's own
//! way: the main file, a `policy.d` TOML file, `noexecd import`, a `policy.d` YAML file. Every result must
//! be accepted or refused with `NAME:LINE:COL: message` pointing into the input (and each cause printed
//! once); never a panic, never a hang. The checker itself is tested first, on cases made to fail.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

/// How a mutated file reaches the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `noexecd check`, `run`: the main configuration file.
    Main,
    /// A `*.toml` file of `policy_dir`.
    TomlDropIn,
    /// `noexecd import FILE`: conversion, then every policy loaded.
    Import,
    /// A `*.yaml` file of `policy_dir`.
    YamlDropIn,
}

impl Route {
    fn name(self, base: &str) -> PathBuf {
        match self {
            Route::Main | Route::Import => PathBuf::from(base),
            Route::TomlDropIn | Route::YamlDropIn => Path::new("policy.d").join(base),
        }
    }
}

/// The main file a drop-in is loaded with.
const MAIN: &str = "[daemon]\nmode = \"audit\"\n";

/// Loads `bytes` as `name` the way `route` does, from the bytes of the file on.
fn load_as(route: Route, name: &Path, bytes: &[u8]) -> Result<()> {
    let main = Path::new("noexecd.toml");
    match route {
        Route::Main => load_str(name, &config_text(name, bytes.to_vec(), false)?).map(drop),
        Route::TomlDropIn | Route::YamlDropIn => {
            let text = config_text(name, bytes.to_vec(), route == Route::YamlDropIn)?;
            load_with_drop_ins(main, MAIN, &[(name.to_owned(), text)]).map(drop)
        }
        Route::Import => kubearmor::convert_bytes(name, bytes.to_vec(), validate_str).and_then(|c| check_imported(&c)),
    }
}

/// Why an error is not a good refusal of input `name` of `lines` lines, if it is not.
fn misplaced(name: &Path, lines: usize, e: &dyn std::error::Error) -> Option<String> {
    let text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        if text.contains(&c.to_string()) {
            return Some(format!("prints its cause twice ({{:#}} adds \"{c}\" again): {text}"));
        }
        cause = c.source();
    }
    let Some(rest) = text.strip_prefix(&format!("{}:", name.display())) else {
        return Some(format!("does not start with {}:LINE:COL: {text}", name.display()));
    };
    let mut parts = rest.splitn(3, ':');
    let line = parts.next().and_then(|l| l.parse::<usize>().ok());
    let col = parts.next().and_then(|c| c.parse::<usize>().ok());
    let message = parts.next().unwrap_or_default().trim();
    match (line, col) {
        (Some(line), Some(col)) if (1..=lines).contains(&line) && col >= 1 && !message.is_empty() => None,
        _ => Some(format!("no place in the file's {lines} line(s): {text}")),
    }
}

/// What went wrong with one case, if anything.
fn verdict(name: &Path, bytes: &[u8], outcome: std::thread::Result<Result<()>>) -> Option<String> {
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => misplaced(name, lines, &e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Some(format!("panicked: {what}"))
        }
    }
}

/// One mutated input.
struct Case {
    route: Route,
    name: PathBuf,
    what: String,
    bytes: Vec<u8>,
    /// The unchanged file: refusing it is a failure too.
    must_load: bool,
}

/// What a run found.
#[derive(Debug, Default)]
struct Findings {
    cases: usize,
    accepted: usize,
    failures: Vec<String>,
}

/// Runs every case on a worker thread, each under `catch_unwind`. A case that takes longer than `limit`
/// is a failure; one that does not end within `4 * limit` is reported as hung and the run stops there.
fn run(cases: Vec<Case>, limit: Duration, load: fn(Route, &Path, &[u8]) -> Result<()>) -> Findings {
    let (started, progress) = mpsc::channel::<String>();
    let (done, result) = mpsc::channel::<Findings>();
    let trace = std::env::var_os("NOEXECD_MUTATION_TRACE").is_some();
    let worker = std::thread::spawn(move || {
        let mut f = Findings::default();
        for case in &cases {
            let label = format!("{:?} {} ({})", case.route, case.name.display(), case.what);
            let _ = started.send(label.clone());
            if trace {
                eprintln!("case {label}");
            }
            let t = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| load(case.route, &case.name, &case.bytes)));
            let took = t.elapsed();
            f.cases += 1;
            let accepted = matches!(outcome, Ok(Ok(())));
            f.accepted += usize::from(accepted);
            if case.must_load && !accepted {
                f.failures.push(format!("{label}: refused, and it must load"));
            }
            if let Some(why) = verdict(&case.name, &case.bytes, outcome) {
                f.failures.push(format!("{label}: {why}"));
            }
            if took > limit {
                f.failures.push(format!("{label}: took {took:?} (limit {limit:?})"));
            }
        }
        let _ = done.send(f);
    });
    let mut current = String::from("(before the first case)");
    loop {
        match progress.recv_timeout(limit * 4) {
            Ok(label) => current = label,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // The worker cannot be stopped; it is left behind and the test fails.
                let mut f = result.try_recv().unwrap_or_default();
                f.failures.push(format!("{current}: hung (no result within {:?})", limit * 4));
                return f;
            }
        }
    }
    worker.join().expect("the worker catches every panic");
    result.recv().unwrap_or_default()
}

/// splitmix64: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
}

const TOKENS: &[&str] = &[
    "[[policy]]",
    "[[policy]]\n",
    "[[policy.process.match_paths]]\n",
    "[daemon]\n",
    "[open_guard]\n",
    "\"",
    "'",
    "\"\"\"",
    "=",
    "= =",
    "{",
    "}",
    "[",
    "]",
    ",",
    ".",
    "---",
    "---\n",
    "...\n",
    "\t",
    "\0",
    "\n",
    "\r",
    "\r\n",
    "#",
    ":",
    ": ",
    "- ",
    "  ",
    "? ",
    "|",
    ">-\n",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "!custom ",
    "%YAML 1.2\n",
    "\\",
    "\\u0000",
    "\u{feff}",
    "\u{2028}",
    "é",
    "~",
    "null",
    "-1",
    "1e999",
    "99999999999999999999999",
    "0x",
    "/../",
];

/// Bytes a flip writes: the ones UTF-8 refuses or treats specially, and syntax.
const BYTES: &[u8] = &[
    0x80, 0xbf, 0xc0, 0xc1, 0xc3, 0xe2, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xf8, 0xfe, 0xff, 0x00, 0x01, 0x7f, b'"', b'\'',
    b'\n', b'\t', b'\\', b' ', b'#', b'[', b']', b'{', b':', b'-', b'=', b'/', b'*',
];

/// The mutations of one file, each with what was done.
fn mutations(bytes: &[u8], seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(seed);
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let len = bytes.len();
    let splice = |at: usize, insert: &[u8], remove: usize| {
        let mut b = bytes[..at].to_vec();
        b.extend_from_slice(insert);
        b.extend_from_slice(&bytes[(at + remove).min(len)..]);
        b
    };
    // Cuts at every Nth offset, and the last bytes.
    let step = (len / 30).max(1);
    for at in (0..len).step_by(step).chain(len.saturating_sub(3)..len) {
        out.push((format!("cut at {at}"), bytes[..at].to_vec()));
    }
    // Flipped bytes: 0x80-0xff at random, the listed bytes, and single bit flips.
    for i in 0..90 {
        let at = rng.below(len);
        let value = match i % 3 {
            0 => 0x80 | u8::try_from(rng.below(0x80)).unwrap(),
            1 => BYTES[rng.below(BYTES.len())],
            _ => bytes[at] ^ (1 << rng.below(8)),
        };
        out.push((format!("byte {at} set to 0x{value:02x}"), splice(at, &[value], 1)));
    }
    // Lines repeated, repeated many times, dropped, swapped with the next.
    let starts: Vec<usize> =
        std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
    let line = |k: usize| {
        let end = starts.get(k + 1).copied().unwrap_or(len);
        (starts[k], end)
    };
    for k in 0..starts.len() {
        let (s, e) = line(k);
        let text = &bytes[s..e];
        out.push((format!("line {} twice", k + 1), splice(e, text, 0)));
        out.push((format!("line {} dropped", k + 1), splice(s, &[], e - s)));
        if k % 6 == 0 {
            out.push((format!("line {} 40 times", k + 1), splice(e, &text.repeat(39), 0)));
        }
        if k % 2 == 0 && k + 1 < starts.len() {
            let (_, e2) = line(k + 1);
            let mut swapped = bytes[e..e2].to_vec();
            if !swapped.ends_with(b"\n") {
                swapped.push(b'\n');
            }
            swapped.extend_from_slice(text);
            out.push((format!("lines {} and {} swapped", k + 1, k + 2), splice(s, &swapped, e2 - s)));
        }
    }
    // Tokens at the start, the end, a line start and anywhere.
    for token in TOKENS {
        let (s, _) = line(rng.below(starts.len()));
        for at in [s, rng.below(len), if token.len() % 2 == 0 { 0 } else { len }] {
            out.push((format!("{token:?} inserted at {at}"), splice(at, token.as_bytes(), 0)));
        }
    }
    // Very long lines and deep nesting.
    let (s, _) = line(rng.below(starts.len()));
    let long: [(&str, Vec<u8>); 9] = [
        ("100000 x", vec![b'x'; 100_000]),
        ("a 100000-byte comment", [b"# ".as_slice(), &[b'c'; 100_000], b"\n"].concat()),
        ("a 100000-byte TOML string", [b"k = \"".as_slice(), &[b's'; 100_000], b"\"\n"].concat()),
        ("a 100000-byte YAML value", [b"k: ".as_slice(), &[b's'; 100_000], b"\n"].concat()),
        ("a 100000-character name", [b"name = \"".as_slice(), "é".repeat(50_000).as_bytes(), b"\"\n"].concat()),
        ("5000 [", vec![b'['; 5000]),
        ("5000 {", vec![b'{'; 5000]),
        ("k = 2000 nested arrays", [b"k = ".as_slice(), &b"[".repeat(2000), &b"]".repeat(2000), b"\n"].concat()),
        (
            "2000 nested YAML lists",
            [b"k:\n".as_slice(), &(0..2000).flat_map(|d| [&b" ".repeat(d)[..], b"-\n"].concat()).collect::<Vec<u8>>()]
                .concat(),
        ),
    ];
    for (what, text) in long {
        for at in [s, len] {
            out.push((format!("{what} inserted at {at}"), splice(at, &text, 0)));
        }
    }
    out
}

fn shipped() -> Vec<u8> {
    include_bytes!("../../config/noexecd.toml").to_vec()
}

fn yaml_corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubearmor");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| kubearmor::is_yaml(p))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "corpus too small: {files:?}");
    files.iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap())).collect()
}

/// Every case of `inputs` (file name, bytes, the routes it takes), mutated. The unchanged file takes every
/// route; the mutations take them in turn.
fn cases(inputs: &[(String, Vec<u8>, &[Route])]) -> Vec<Case> {
    let mut out = Vec::new();
    for (i, (base, bytes, routes)) in inputs.iter().enumerate() {
        for &route in *routes {
            let what = "as shipped".into();
            out.push(Case { route, name: route.name(base), what, bytes: bytes.clone(), must_load: true });
        }
        for (n, (what, bytes)) in mutations(bytes, u64::try_from(i).unwrap()).into_iter().enumerate() {
            let route = routes[n % routes.len()];
            out.push(Case { route, name: route.name(base), what, bytes, must_load: false });
        }
    }
    out
}

/// Per case; a debug build parses a 100 kB line in milliseconds.
const LIMIT: Duration = Duration::from_secs(2);

fn report(what: &str, f: &Findings, took: Duration) {
    eprintln!("{what}: {} cases, {} accepted, {} failures, {took:?}", f.cases, f.accepted, f.failures.len());
    assert!(f.failures.is_empty(), "{} of {} cases failed:\n{}", f.failures.len(), f.cases, f.failures.join("\n"));
}

#[test]
fn checker_catches_a_panic_a_missing_place_a_doubled_cause_and_a_hang() {
    let name = Path::new("p.toml");
    let bytes = b"a\nb\n";
    // A panic.
    let outcome = catch_unwind(|| -> Result<()> { panic!("checker self-test: a deliberate panic") });
    assert!(verdict(name, bytes, outcome).unwrap().contains("panicked: checker self-test"));
    // An error without a place, or with a place outside the file, or naming another file.
    let io = || std::io::Error::other("boom");
    for e in [
        Error::ReadConfig { path: name.into(), source: io() },
        Error::ConvertKubeArmor { path: name.into(), line: 0, col: 0, message: "x".into() },
        Error::ConvertKubeArmor { path: name.into(), line: 4, col: 1, message: "x".into() },
        Error::ConvertKubeArmor { path: name.into(), line: 1, col: 0, message: "x".into() },
        Error::ConvertKubeArmor { path: "other.toml".into(), line: 1, col: 1, message: "x".into() },
    ] {
        assert!(verdict(name, bytes, Ok(Err(e))).is_some());
    }
    // A good refusal, and an acceptance.
    let good = Error::ConvertKubeArmor { path: name.into(), line: 3, col: 2, message: "x".into() };
    assert_eq!(verdict(name, bytes, Ok(Err(good))), None);
    assert_eq!(verdict(name, bytes, Ok(Ok(()))), None);
    // An error that prints its cause and returns it as its source too (what `{e:#}` doubled).
    #[derive(Debug)]
    struct Doubled(std::io::Error);
    impl std::fmt::Display for Doubled {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "p.toml:1:1: cannot: {}", self.0)
        }
    }
    impl std::error::Error for Doubled {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    assert!(misplaced(name, 2, &Doubled(io())).unwrap().contains("twice"));
    // A hang, and a case over the time limit.
    let case = |what: &str| Case {
        route: Route::Main,
        name: name.into(),
        what: what.into(),
        bytes: bytes.to_vec(),
        must_load: false,
    };
    let slow: fn(Route, &Path, &[u8]) -> Result<()> = |_, _, _| {
        std::thread::sleep(Duration::from_millis(600));
        Ok(())
    };
    let f = run(vec![case("sleeps")], Duration::from_millis(100), slow);
    assert!(f.failures.iter().any(|m| m.contains("(sleeps): hung")), "{f:?}");
    let f = run(vec![case("sleeps")], Duration::from_millis(200), slow);
    assert!(f.failures.iter().any(|m| m.contains("(sleeps): took")), "{f:?}");
    // And the real loader, on inputs it must refuse.
    let fine = Case { bytes: MAIN.as_bytes().to_vec(), must_load: true, ..case("fine") };
    let bad = Case { bytes: b"[daemon]\nmode = 3\n".to_vec(), ..case("bad") };
    let f = run(vec![fine, bad], LIMIT, load_as);
    assert_eq!((f.cases, f.accepted, f.failures.len()), (2, 1, 0), "{f:?}");
    // The unchanged file must load.
    let f = run(vec![Case { must_load: true, ..case("must load") }], LIMIT, load_as);
    assert!(f.failures.iter().any(|m| m.contains("(must load): refused")), "{f:?}");
}

#[test]
fn bytes_that_are_not_utf8_are_refused_at_their_place() {
    let at = |route: Route, bytes: &[u8]| load_as(route, &route.name("f"), bytes).unwrap_err().to_string();
    // Columns count characters, as every other loader error does: "é" is one.
    assert_eq!(
        at(Route::Main, b"[daemon]\nalert_log = \"/\xc3\xa9\xff\"\n"),
        "f:2:16: not valid UTF-8: byte 0xff (offset 25) does not start a valid UTF-8 character (Latin-1 or another 8-bit encoding?); save the file as UTF-8"
    );
    assert_eq!(
        at(Route::TomlDropIn, b"# \xe2\x82"),
        "policy.d/f:1:3: not valid UTF-8: byte 0xe2 (offset 2) starts a character that the end of the file cuts short; save the file as UTF-8"
    );
    assert_eq!(
        at(Route::Import, b"\xff\xfea\0"),
        "f:1:1: not valid UTF-8: byte 0xff (offset 0) does not start a valid UTF-8 character (a UTF-16 byte order mark?); save the file as UTF-8"
    );
    assert!(
        at(Route::YamlDropIn, b"kind: x\n\n  \xc0\xaf\n").starts_with("policy.d/f:3:3: not valid UTF-8: byte 0xc0 ")
    );
    assert!(matches!(load_as(Route::Main, Path::new("f"), b"\x80"), Err(Error::ConfigNotUtf8 { .. })));
    assert!(matches!(load_as(Route::YamlDropIn, Path::new("f"), b"\x80"), Err(Error::KubeArmorNotUtf8 { .. })));
    assert!(matches!(load_as(Route::Import, Path::new("f"), b"\x80"), Err(Error::KubeArmorNotUtf8 { .. })));
}

#[test]
fn mutated_shipped_config_is_accepted_or_refused_with_its_place() {
    let bytes = shipped();
    // A drop-in holds the policies of the shipped file, without its [daemon] and [open_guard] tables.
    let find = |what: &[u8]| bytes.windows(what.len()).position(|w| w == what);
    let start = find(b"\n[[policy]]").unwrap() + 1;
    let end = find(b"\n[open_guard]").filter(|&e| e > start).unwrap_or(bytes.len());
    let inputs = [
        ("noexecd.toml".to_owned(), bytes.clone(), [Route::Main].as_slice()),
        ("ksp.toml".to_owned(), bytes[start..end].to_vec(), [Route::TomlDropIn].as_slice()),
    ];
    let t = Instant::now();
    let f = run(cases(&inputs), LIMIT, load_as);
    report("TOML", &f, t.elapsed());
}

#[test]
fn mutated_kubearmor_files_are_accepted_or_refused_with_their_place() {
    let routes = [Route::Import, Route::YamlDropIn];
    let inputs: Vec<_> = yaml_corpus().into_iter().map(|(name, bytes)| (name, bytes, routes.as_slice())).collect();
    let t = Instant::now();
    let f = run(cases(&inputs), LIMIT, load_as);
    report("YAML", &f, t.elapsed());
}

#[test]
fn each_cause_is_printed_once_by_display_and_by_anyhow_chain() {
    let path = PathBuf::from("/etc/noexecd/noexecd.toml");
    let cause = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    let text = cause().to_string();
    for e in [
        Error::ReadConfig { path: path.clone(), source: cause() },
        Error::ReadPolicyDir { path: path.clone(), source: cause() },
        Error::ReadKubeArmor { path: path.clone(), source: cause() },
        Error::Mark { path: path.clone(), source: nix::errno::Errno::EPERM },
        Error::Runtime { what: "tokio runtime", source: cause() },
        load_as(Route::Main, &path, b"\xff").unwrap_err(),
    ] {
        // `{e}` is what the daemon logs (`error = %e`), `{e:#}` what `main` prints.
        let shown = e.to_string();
        let chained = format!("{:#}", anyhow::Error::new(e).context("ctx"));
        assert_eq!(chained, format!("ctx: {shown}"));
        let cause = if shown.contains("EPERM") {
            "EPERM"
        } else if shown.contains("UTF-8") {
            "UTF-8:"
        } else {
            &text
        };
        assert_eq!(chained.matches(cause).count(), 1, "{chained}");
    }
}

#[test]
fn deep_yaml_is_refused_on_a_small_stack() {
    let text: String =
        std::iter::once("k:\n".to_owned()).chain((0..2000).map(|d| format!("{}-\n", " ".repeat(d)))).collect();
    let e = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            kubearmor::convert_str(Path::new("deep.yaml"), &text, crate::policy::validate_str)
                .map(drop)
                .unwrap_err()
                .to_string()
        })
        .unwrap()
        .join()
        .unwrap();
    let depth = kubearmor::yaml::MAX_DEPTH;
    assert_eq!(
        e,
        format!(
            "deep.yaml:{}:{depth}: not valid YAML: mappings and lists nest deeper than {depth} levels here (a KubeArmor policy needs fewer than 10)",
            depth + 1
        )
    );
}
