//! The container image, checked without a container engine (none runs here): the build stage
//! compiles the crate from exactly the paths the Dockerfile copies (read from the Dockerfile, so
//! a future COPY change is covered), and the final stage holds everything `CMD` needs at run
//! time.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

#[derive(Debug, Default)]
struct Stage {
    name: Option<String>,
    base: String,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }

    /// `COPY` instructions as (flags, sources, destination).
    fn copies(&self) -> Vec<(Vec<String>, Vec<String>, String)> {
        self.all("COPY")
            .map(|args| {
                let words: Vec<String> = args.split_whitespace().map(String::from).collect();
                let (flags, rest): (Vec<String>, Vec<String>) =
                    words.into_iter().partition(|w| w.starts_with("--"));
                let (dest, sources) = rest.split_last().expect("COPY has a destination");
                (flags, sources.to_vec(), dest.clone())
            })
            .collect()
    }

    fn env(&self, key: &str) -> Option<String> {
        self.all("ENV").find_map(|args| {
            args.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(String::from))
        })
    }
}

fn parse(text: &str) -> Vec<Stage> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            joined.push(std::mem::take(&mut current));
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in joined {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.trim().to_string();
        if keyword == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            stages.push(Stage {
                base: words[0].to_string(),
                name: (words.len() == 3 && words[1].eq_ignore_ascii_case("as"))
                    .then(|| words[2].to_string()),
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .instructions
                .push(Instruction { keyword, args });
        }
    }
    stages
}

fn dockerfile() -> Vec<Stage> {
    parse(&std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).expect("Dockerfile"))
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

#[test]
fn the_build_stage_compiles_from_exactly_what_it_copies() {
    let stages = dockerfile();
    let build = stages
        .iter()
        .find(|s| s.all("RUN").any(|r| r.contains("cargo build")))
        .expect("a stage that runs cargo build");
    let workdir = build
        .all("WORKDIR")
        .last()
        .expect("WORKDIR in the build stage");
    let dir = tempfile::tempdir().expect("tempdir");
    for (flags, sources, dest) in build.copies() {
        assert!(
            flags.is_empty(),
            "the build stage copies from the context only"
        );
        let dest = dest.trim_end_matches('/');
        for src in &sources {
            let from = Path::new(ROOT).join(src);
            assert!(
                from.exists(),
                "the Dockerfile copies {src}, which is missing"
            );
            // `COPY a b ./` puts files under the workdir; `COPY src src` names the target.
            let target: PathBuf = if dest == "." || sources.len() > 1 {
                dir.path().join(from.file_name().expect("name"))
            } else {
                dir.path()
                    .join(dest.trim_start_matches(workdir).trim_start_matches('/'))
            };
            copy_tree(&from, &target);
        }
    }
    let run = build
        .all("RUN")
        .find(|r| r.contains("cargo build"))
        .expect("cargo build");
    assert!(
        run.contains("--locked"),
        "the image builds with the lock file"
    );
    // The same manifest and lock file, checked with the same flags (no network here: the
    // registry cache of this machine stands in for crates.io).
    let target_dir = Path::new(ROOT).join("target/container-check");
    let out = Command::new(env!("CARGO"))
        .args([
            "check",
            "--release",
            "--locked",
            "--offline",
            "--bin",
            "multicloud",
        ])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .expect("cargo");
    assert!(
        out.status.success(),
        "the crate does not build from the paths the Dockerfile copies:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_final_stage_has_what_the_daemon_needs_at_run_time() {
    let stages = dockerfile();
    let last = stages.last().expect("stages");
    assert!(
        last.base.starts_with("debian:bookworm"),
        "package names below are checked against Debian 12 (bookworm): {}",
        last.base
    );
    let cmd = last.all("CMD").last().expect("CMD");
    assert!(cmd.contains("serve"), "{cmd}");
    let entry = last.all("ENTRYPOINT").last().expect("ENTRYPOINT");
    let copies = last.copies();
    let copied_to = |dest: &str| {
        copies
            .iter()
            .find(|(_, _, d)| d.trim_end_matches('/') == dest.trim_end_matches('/'))
            .cloned()
    };
    // The daemon binary from the build stage, where ENTRYPOINT runs it.
    let binary = entry
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .next()
        .expect("entrypoint")
        .trim()
        .trim_matches('"');
    let (flags, sources, _) = copied_to(binary).expect("the binary is copied to the entrypoint");
    let from_stage = flags
        .iter()
        .find_map(|f| f.strip_prefix("--from="))
        .expect("--from");
    assert!(
        stages.iter().any(|s| s.name.as_deref() == Some(from_stage)
            && s.all("RUN").any(|r| r.contains("cargo build"))),
        "{binary} comes from the build stage"
    );
    assert!(sources[0].ends_with("release/multicloud"), "{sources:?}");

    // terraform on PATH.
    let (flags, _, _) = copied_to("/usr/local/bin/terraform").expect("terraform is copied in");
    assert!(flags.iter().any(|f| f.starts_with("--from=")));

    // The templates, where the daemon is told to look.
    let templates_dir = last
        .env("MULTICLOUD__PATHS__TEMPLATES_DIR")
        .expect("MULTICLOUD__PATHS__TEMPLATES_DIR");
    let (_, sources, _) = copied_to(&templates_dir).expect("templates copied to TEMPLATES_DIR");
    assert_eq!(sources, ["templates"]);
    assert!(Path::new(ROOT).join("templates").is_dir());

    // The default configuration, read as config/default.toml from the working directory.
    let workdir = last.all("WORKDIR").last().expect("WORKDIR");
    let config = format!("{}/config/default.toml", workdir.trim_end_matches('/'));
    let (_, sources, _) = copied_to(&config).expect("config/default.toml in the WORKDIR");
    assert!(Path::new(ROOT).join(&sources[0]).is_file());

    // The PostgreSQL server (embedded database) and libpq, as Debian 12 packages that exist.
    let installed: Vec<String> = last
        .all("RUN")
        .filter(|r| r.contains("apt-get install"))
        .flat_map(|r| r.split_whitespace().map(String::from).collect::<Vec<_>>())
        .collect();
    let server = installed
        .iter()
        .find(|p| {
            p.strip_prefix("postgresql-")
                .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit()))
        })
        .expect("a postgresql-<major> server package");
    assert!(installed.iter().any(|p| p == "libpq5"), "{installed:?}");
    for package in [server.as_str(), "libpq5"] {
        let out = Command::new("apt-cache")
            .args(["show", "--no-all-versions", package])
            .output()
            .expect("apt-cache (Debian)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(&format!("Package: {package}")),
            "{package} is not a Debian 12 package"
        );
    }
    // The server binaries that package installs are where the daemon looks for them.
    let major = server.trim_start_matches("postgresql-");
    let list = Command::new("dpkg").args(["-L", server]).output();
    if let Some(list) = list.ok().filter(|o| o.status.success()) {
        let files = String::from_utf8_lossy(&list.stdout);
        for bin in ["initdb", "pg_ctl", "postgres"] {
            assert!(
                files.contains(&format!("/usr/lib/postgresql/{major}/bin/{bin}")),
                "{server} installs {bin}"
            );
        }
    }
    // A non-root user (initdb refuses root) owning the data directory.
    assert!(last.all("USER").last().is_some_and(|u| u != "root"));
}

#[test]
fn the_dockerfile_parser_reads_stages_copies_and_continuations() {
    let stages = parse(
        "# comment\nFROM a:1 AS build\nWORKDIR /src\nCOPY x y ./\nRUN one \\\n  two\nFROM b\nCOPY --from=build /src/t /usr/bin/t\nENV A=1 \\\n    B=2\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].name.as_deref(), Some("build"));
    assert_eq!(stages[0].all("RUN").next(), Some("one  two"));
    let copies = stages[1].copies();
    assert_eq!(copies[0].0, ["--from=build"]);
    assert_eq!(copies[0].2, "/usr/bin/t");
    assert_eq!(stages[1].env("B").as_deref(), Some("2"));
    assert_eq!(stages[0].copies()[0].1, ["x", "y"]);
}
