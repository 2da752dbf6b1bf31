//! Real tools on a real mount: git, cargo, tar, fsx and stress-ng.
//!
//! Each test runs an unmodified, widely used program against the mount,
//! checks the effect it must have had (not just its exit code) and ends with
//! an fsck of the store. The programs come from the machine: git, tar and
//! stress-ng from Debian, fsx from crates.io. `tools/scripts/setup.sh
//! --test` (run by `make test`) installs them on a fresh Debian machine; a
//! missing tool fails the test and names that script.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use hsfs_tests::{Workspace, run, tmpfs_dir};

const INSTALL_SCRIPT: &str = "tools/scripts/setup.sh --test";

/// Finds an external program in PATH or in cargo's bin directories; fails
/// the test (naming the install script) when it is not there.
fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(h).join("bin"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cargo/bin"));
    }
    dirs.push(PathBuf::from("/root/.cargo/bin"));
    for d in dirs {
        let p = d.join(name);
        if let Ok(m) = std::fs::metadata(&p)
            && m.is_file()
            && m.permissions().mode() & 0o111 != 0
        {
            return p;
        }
    }
    panic!(
        "required tool `{name}` not found in PATH or ~/.cargo/bin: \
         install the test tools with `sudo bash {INSTALL_SCRIPT}`"
    );
}

/// Runs a command and returns its full output, whatever its status.
fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Deterministic PRNG (splitmix64) for reproducible file contents.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// Text lines (so that git diffs are line-based).
    fn lines(&mut self, n: usize) -> Vec<u8> {
        let mut s = String::new();
        for i in 0..n {
            s.push_str(&format!(
                "line {i}: {:016x} {:016x}\n",
                self.next(),
                self.next()
            ));
        }
        s.into_bytes()
    }
}

fn write_file(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

// ---------------------------------------------------------------------------
// git
// ---------------------------------------------------------------------------

/// A git command isolated from any system or user configuration.
fn git(home: &Path) -> Command {
    let mut c = Command::new(tool("git"));
    for (k, _) in std::env::vars_os() {
        if k.as_bytes().starts_with(b"GIT_") {
            c.env_remove(k);
        }
    }
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("LC_ALL", "C")
        .args([
            "-c",
            "user.name=hsfs test",
            "-c",
            "user.email=hsfs-test@example.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "gc.auto=0",
            "-c",
            "advice.detachedHead=false",
        ]);
    c
}

fn git_in(home: &Path, repo: &Path) -> Command {
    let mut c = git(home);
    c.arg("-C").arg(repo);
    c
}

/// Tracked files of a repository with their contents.
fn tracked(home: &Path, repo: &Path) -> BTreeMap<String, Vec<u8>> {
    let list = run(git_in(home, repo).args(["ls-files", "-z"]));
    list.split('\0')
        .filter(|s| !s.is_empty())
        .map(|f| {
            let p = repo.join(f);
            let data = if std::fs::symlink_metadata(&p).unwrap().is_symlink() {
                let mut d = b"symlink:".to_vec();
                d.extend_from_slice(std::fs::read_link(&p).unwrap().as_os_str().as_bytes());
                d
            } else {
                std::fs::read(&p).unwrap()
            };
            (f.to_string(), data)
        })
        .collect()
}

fn assert_fsck_clean(home: &Path, repo: &Path) {
    let out = output(git_in(home, repo).args(["fsck", "--full", "--strict", "--no-progress"]));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "git fsck --full failed ({}):\n{all}",
        out.status
    );
    for bad in ["error", "missing", "broken", "corrupt", "dangling", "bad "] {
        assert!(!all.contains(bad), "git fsck reported `{bad}`:\n{all}");
    }
}

fn assert_status_clean(home: &Path, repo: &Path) {
    let st = run(git_in(home, repo).args(["status", "--porcelain=v1", "--untracked-files=all"]));
    assert!(st.is_empty(), "git status not clean:\n{st}");
}

#[test]
fn git_clone_commit_gc_fsck() {
    let t0 = Instant::now();
    let mut w = Workspace::new();
    let home = tempfile::tempdir().unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    let mut rng = Rng(0x6769_7431);

    // Source repository outside the mount: nested dirs, text and binary
    // files, several commits, packed by gc.
    run(git(home.path()).arg("init").arg("-q").arg(&src));
    let dirs = [
        "",
        "src",
        "src/a",
        "src/a/deep/er",
        "src/b",
        "docs",
        "assets/img",
        "tests",
    ];
    let mut files = Vec::new();
    for i in 0..40 {
        let d = dirs[i % dirs.len()];
        let name = if i % 7 == 3 {
            format!("blob{i:02}.bin")
        } else {
            format!("file{i:02}.txt")
        };
        let rel = if d.is_empty() {
            name
        } else {
            format!("{d}/{name}")
        };
        let data = if rel.ends_with(".bin") {
            let len = 1 + rng.below(200_000) as usize;
            rng.bytes(len)
        } else {
            let n = 1 + rng.below(300) as usize;
            rng.lines(n)
        };
        write_file(&src.join(&rel), &data);
        files.push(rel);
    }
    write_file(&src.join("empty.txt"), b"");
    std::fs::set_permissions(
        src.join("src/file01.txt"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("src/a", src.join("link-to-a")).unwrap();
    run(git_in(home.path(), &src).args(["add", "-A"]));
    run(git_in(home.path(), &src).args(["commit", "-q", "-m", "initial"]));
    for round in 0..4 {
        for f in files
            .iter()
            .filter(|f| f.ends_with(".txt"))
            .skip(round)
            .step_by(5)
        {
            let mut data = std::fs::read(src.join(f)).unwrap();
            data.extend_from_slice(&rng.lines(3));
            write_file(&src.join(f), &data);
        }
        write_file(&src.join(format!("src/b/round{round}.txt")), &rng.lines(20));
        run(git_in(home.path(), &src).args(["add", "-A"]));
        run(git_in(home.path(), &src).args(["commit", "-q", "-m", &format!("round {round}")]));
    }
    run(git_in(home.path(), &src).args(["rm", "-q", "docs/file05.txt"]));
    run(git_in(home.path(), &src).args(["commit", "-q", "-m", "remove a doc"]));
    run(git_in(home.path(), &src).args(["gc", "-q"]));
    let src_head = run(git_in(home.path(), &src).args(["rev-parse", "HEAD"]));

    // Clone onto the mount through the file:// transport (pack transfer,
    // index-pack writing on the mount).
    let repo = w.path("repo");
    let url = format!("file://{}", src.display());
    run(git(home.path()).args(["clone", "-q", &url]).arg(&repo));
    assert_eq!(
        run(git_in(home.path(), &repo).args(["rev-parse", "HEAD"])),
        src_head
    );
    assert_status_clean(home.path(), &repo);
    let src_files = tracked(home.path(), &src);
    let clone_files = tracked(home.path(), &repo);
    assert_eq!(src_files.len(), 45, "source repository layout");
    assert!(
        src_files == clone_files,
        "checked-out files differ from the source"
    );
    assert_eq!(
        std::fs::metadata(repo.join("src/file01.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0o111,
        "executable bit lost"
    );
    assert_eq!(
        std::fs::read_link(repo.join("link-to-a")).unwrap(),
        Path::new("src/a")
    );
    assert_fsck_clean(home.path(), &repo);

    // Edit, add, delete; commit on the mount.
    let edited = "src/a/file02.txt";
    let added = "src/new/added file.txt";
    let deleted = "docs/file13.txt";
    let mut data = std::fs::read(repo.join(edited)).unwrap();
    data.extend_from_slice(b"edited on hsfs\n");
    write_file(&repo.join(edited), &data);
    write_file(&repo.join(added), b"brand new file\n");
    std::fs::remove_file(repo.join(deleted)).unwrap();
    let st =
        run(git_in(home.path(), &repo).args(["status", "--porcelain=v1", "--untracked-files=all"]));
    assert!(
        st.contains(edited) && st.contains("added file.txt") && st.contains(deleted),
        "{st}"
    );
    run(git_in(home.path(), &repo).args(["add", "-A"]));
    run(git_in(home.path(), &repo).args(["commit", "-q", "-m", "edit on hsfs"]));
    assert_status_clean(home.path(), &repo);

    // gc: everything packed, no loose objects left.
    run(git_in(home.path(), &repo).args(["gc", "-q", "--prune=now"]));
    let counts = run(git_in(home.path(), &repo).args(["count-objects", "-v"]));
    assert!(
        counts.lines().any(|l| l == "count: 0"),
        "loose objects after gc:\n{counts}"
    );
    assert!(
        counts
            .lines()
            .any(|l| l.starts_with("in-pack: ") && l != "in-pack: 0"),
        "nothing packed:\n{counts}"
    );
    assert_fsck_clean(home.path(), &repo);

    let log = run(git_in(home.path(), &repo).args(["log", "--format=%s"]));
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(
        subjects,
        [
            "edit on hsfs",
            "remove a doc",
            "round 3",
            "round 2",
            "round 1",
            "round 0",
            "initial"
        ]
    );
    let stat = run(git_in(home.path(), &repo).args(["diff", "HEAD~1", "--stat"]));
    for f in [edited, added, deleted] {
        assert!(
            stat.contains(f),
            "diff --stat does not mention {f}:\n{stat}"
        );
    }
    assert!(stat.contains("3 files changed"), "{stat}");
    let head = run(git_in(home.path(), &repo).args(["rev-parse", "HEAD"]));
    let files_after = tracked(home.path(), &repo);

    w.check();

    // Persistence: same history, same files, still consistent.
    assert_eq!(
        run(git_in(home.path(), &repo).args(["rev-parse", "HEAD"])),
        head
    );
    assert_status_clean(home.path(), &repo);
    assert_fsck_clean(home.path(), &repo);
    assert!(
        tracked(home.path(), &repo) == files_after,
        "files changed across remount"
    );
    eprintln!("git test took {:.1?}", t0.elapsed());
}

// ---------------------------------------------------------------------------
// cargo
// ---------------------------------------------------------------------------

fn write_crate(dir: &Path, greeting: &str) {
    write_file(
        &dir.join("Cargo.toml"),
        b"[package]\nname = \"hsfs-demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    );
    write_file(
        &dir.join("src/lib.rs"),
        b"pub mod shapes;\npub mod words;\n\n\
          pub fn summary(w: u32, h: u32, s: &str) -> String {\n\
          \x20   format!(\"area={} words={} {}\", shapes::area(w, h), words::count(s), words::GREETING)\n\
          }\n\n\
          #[cfg(test)]\nmod tests {\n\
          \x20   #[test]\n    fn area_works() {\n        assert_eq!(super::shapes::area(3, 4), 12);\n    }\n\
          \x20   #[test]\n    fn words_work() {\n        assert_eq!(super::words::count(\"a b  c\"), 3);\n    }\n\
          }\n",
    );
    write_file(
        &dir.join("src/shapes.rs"),
        b"pub fn area(w: u32, h: u32) -> u32 {\n    w * h\n}\n\n\
          #[cfg(test)]\nmod tests {\n    #[test]\n    fn zero() {\n        assert_eq!(super::area(0, 9), 0);\n    }\n}\n",
    );
    write_file(
        &dir.join("src/words.rs"),
        format!(
            "pub const GREETING: &str = \"{greeting}\";\n\n\
             pub fn count(s: &str) -> usize {{\n    s.split_whitespace().count()\n}}\n"
        )
        .as_bytes(),
    );
    write_file(
        &dir.join("src/main.rs"),
        b"fn main() {\n    println!(\"hsfs-demo: {}\", hsfs_demo::summary(3, 4, \"one two three\"));\n}\n",
    );
}

/// A cargo command isolated from the cargo that runs this test.
fn cargo(crate_dir: &Path, target: &Path, cargo_home: &Path) -> Command {
    let exe = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(exe);
    for (k, _) in std::env::vars_os() {
        let k_b = k.as_bytes();
        if k_b.starts_with(b"CARGO")
            || k_b.starts_with(b"RUSTC")
            || k_b.starts_with(b"RUSTFLAGS")
            || k_b.starts_with(b"RUSTDOC")
        {
            c.env_remove(k);
        }
    }
    c.current_dir(crate_dir)
        .env("CARGO_HOME", cargo_home)
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_TERM_COLOR", "never")
        .env("CARGO_INCREMENTAL", "1");
    c
}

#[test]
fn cargo_build_and_test_on_mount() {
    let t0 = Instant::now();
    let mut w = Workspace::new();
    let cargo_home = tempfile::tempdir().unwrap();
    let dir = w.path("demo");
    let target = w.path("target");
    write_crate(&dir, "hello from hsfs");

    let build = output(cargo(&dir, &target, cargo_home.path()).args(["build", "--offline"]));
    assert!(
        build.status.success(),
        "cargo build failed:\n{}",
        text(&build.stderr)
    );
    assert!(dir.join("Cargo.lock").exists(), "no Cargo.lock written");
    let exe = target.join("debug/hsfs-demo");
    let out = run(&mut Command::new(&exe));
    assert_eq!(out, "hsfs-demo: area=12 words=3 hello from hsfs\n");

    // Nothing changed: cargo's mtime-based freshness must see it so.
    let again = output(cargo(&dir, &target, cargo_home.path()).args(["build", "--offline"]));
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        !text(&again.stderr).contains("Compiling"),
        "second build recompiled although nothing changed:\n{}",
        text(&again.stderr)
    );

    let test = output(cargo(&dir, &target, cargo_home.path()).args(["test", "--offline"]));
    let test_out = text(&test.stdout);
    assert!(
        test.status.success(),
        "cargo test failed:\n{test_out}\n{}",
        text(&test.stderr)
    );
    assert!(
        test_out.contains("test result: ok. 3 passed; 0 failed"),
        "{test_out}"
    );
    for t in [
        "tests::area_works ... ok",
        "tests::words_work ... ok",
        "shapes::tests::zero ... ok",
    ] {
        assert!(test_out.contains(t), "missing `{t}`:\n{test_out}");
    }

    // An edit is picked up (incremental rebuild over the old artifacts).
    write_crate(&dir, "edited on hsfs");
    let rebuild = output(cargo(&dir, &target, cargo_home.path()).args(["build", "--offline"]));
    assert!(rebuild.status.success(), "{}", text(&rebuild.stderr));
    assert!(
        text(&rebuild.stderr).contains("Compiling hsfs-demo"),
        "{}",
        text(&rebuild.stderr)
    );
    assert_eq!(
        run(&mut Command::new(&exe)),
        "hsfs-demo: area=12 words=3 edited on hsfs\n"
    );

    w.check();
    assert_eq!(
        run(&mut Command::new(&exe)),
        "hsfs-demo: area=12 words=3 edited on hsfs\n"
    );
    eprintln!("cargo test took {:.1?}", t0.elapsed());
}

// ---------------------------------------------------------------------------
// tar
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File { size: u64, hash: String },
    Symlink(PathBuf),
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
}

/// Everything tar must preserve about a tree, keyed by relative path, plus
/// its hard-link groups.
struct Tree {
    entries: BTreeMap<PathBuf, Entry>,
    links: BTreeSet<Vec<PathBuf>>,
}

fn scan(root: &Path) -> Tree {
    fn walk(
        root: &Path,
        rel: &Path,
        out: &mut BTreeMap<PathBuf, Entry>,
        inos: &mut BTreeMap<(u64, u64), Vec<PathBuf>>,
    ) {
        let p = root.join(rel);
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink(std::fs::read_link(&p).unwrap())
        } else if ft.is_file() {
            let data = std::fs::read(&p).unwrap();
            assert_eq!(
                data.len() as u64,
                m.len(),
                "{}: size vs bytes read",
                p.display()
            );
            if m.nlink() > 1 {
                inos.entry((m.dev(), m.ino()))
                    .or_default()
                    .push(rel.to_path_buf());
            }
            Kind::File {
                size: m.len(),
                hash: blake3::hash(&data).to_hex().to_string(),
            }
        } else {
            panic!("{}: unexpected file type {ft:?}", p.display());
        };
        out.insert(
            rel.to_path_buf(),
            Entry {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec()),
            },
        );
        if ft.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), out, inos);
            }
        }
    }
    let mut entries = BTreeMap::new();
    let mut inos = BTreeMap::new();
    walk(root, Path::new(""), &mut entries, &mut inos);
    let links = inos
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    Tree { entries, links }
}

fn assert_same_tree(what: &str, want: &Tree, got: &Tree) {
    let mut diffs = Vec::new();
    for (p, e) in &want.entries {
        match got.entries.get(p) {
            None => diffs.push(format!("{}: missing", p.display())),
            Some(g) if g != e => {
                diffs.push(format!("{}:\n  want {e:?}\n  got  {g:?}", p.display()))
            }
            Some(_) => {}
        }
    }
    for p in got
        .entries
        .keys()
        .filter(|p| !want.entries.contains_key(*p))
    {
        diffs.push(format!("{}: unexpected", p.display()));
    }
    if want.links != got.links {
        diffs.push(format!(
            "hard links: want {:?}, got {:?}",
            want.links, got.links
        ));
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

fn set_times(p: &Path, secs: i64, nsec: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: valid C string and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        r,
        0,
        "utimensat {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// Builds the tar source tree: varied sizes, names, modes, owners,
/// symlinks, a hard link and explicit timestamps.
fn build_tar_tree(root: &Path) {
    let mut rng = Rng(0x7461_7221);
    let sizes: &[(&str, usize)] = &[
        ("empty", 0),
        ("one", 1),
        ("small.txt", 777),
        ("data/64k-minus-1", 65_535),
        ("data/64k", 65_536),
        ("data/64k-plus-1", 65_537),
        ("data/128k-plus-3", 131_075),
        ("data/big-3m", 3 * 1024 * 1024 + 17),
        ("data/big-1m", 1024 * 1024),
        ("data/nested/deeper/still/leaf.bin", 4097),
        ("with space.txt", 1234),
        ("ünïcødé-日本語 ✓.bin", 5000),
        ("dir with spaces/inner file", 300),
        ("private/secret", 4096),
        ("scripts/run.sh", 120),
        ("scripts/setuid-prog", 8192),
    ];
    for &(name, len) in sizes {
        write_file(&root.join(name), &rng.bytes(len));
    }
    // A file of zeros (tar may see it as sparse-looking data).
    write_file(&root.join("data/zeros"), &vec![0u8; 200_000]);
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::create_dir_all(root.join("shared-tmp")).unwrap();

    std::fs::hard_link(
        root.join("data/64k-plus-1"),
        root.join("hardlink-to-64k-plus-1"),
    )
    .unwrap();
    std::os::unix::fs::symlink("data/big-1m", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target with space", root.join("link-dangling"))
        .unwrap();
    std::os::unix::fs::symlink("../data", root.join("dir with spaces/link-up")).unwrap();
    std::os::unix::fs::symlink("ünïcødé-日本語 ✓.bin", root.join("link-unicode")).unwrap();

    let modes: &[(&str, u32)] = &[
        ("scripts/run.sh", 0o755),
        ("private/secret", 0o600),
        ("one", 0o400),
        ("small.txt", 0o640),
        ("scripts/setuid-prog", 0o4755),
        ("private", 0o700),
        ("shared-tmp", 0o1777),
        ("dir with spaces", 0o750),
    ];
    for &(name, mode) in modes {
        std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    lchown(&root.join("small.txt"), 1234, 5678);
    lchown(&root.join("private"), 1000, 1000);
    lchown(&root.join("link-rel"), 4321, 8765);
    // chown clears setuid: restore it afterwards.
    lchown(&root.join("scripts/setuid-prog"), 0, 100);
    std::fs::set_permissions(
        root.join("scripts/setuid-prog"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();

    // Timestamps last, children before their directories.
    let tree = scan(root);
    for (i, p) in tree.entries.keys().rev().enumerate() {
        let i = i as i64;
        set_times(
            &root.join(p),
            1_500_000_000 + i * 86_399,
            (i * 123_456_789) % 1_000_000_000,
        );
    }
}

fn tar_cmd() -> Command {
    let mut c = Command::new(tool("tar"));
    c.env("LC_ALL", "C.UTF-8");
    c
}

#[test]
fn tar_roundtrip_byte_exact() {
    let t0 = Instant::now();
    let mut w = Workspace::new();
    let src = tmpfs_dir();
    let work = tmpfs_dir();
    build_tar_tree(src.path());
    let want = scan(src.path());
    assert_eq!(
        want.links.len(),
        1,
        "source tree should have one hard-link pair"
    );

    // In: extract a POSIX (pax) archive onto the mount, keeping owners and
    // permissions and nanosecond mtimes.
    let tar_in = work.path().join("in.tar");
    run(tar_cmd()
        .args(["--format=posix", "-cf"])
        .arg(&tar_in)
        .arg("-C")
        .arg(src.path())
        .arg("."));
    let dest = w.path("tree");
    std::fs::create_dir(&dest).unwrap();
    run(tar_cmd()
        .args(["-xf"])
        .arg(&tar_in)
        .args([
            "--same-permissions",
            "--same-owner",
            "--numeric-owner",
            "-C",
        ])
        .arg(&dest));
    let got = scan(&dest);
    assert_same_tree("extracted onto the mount", &want, &got);
    let a = std::fs::metadata(dest.join("data/64k-plus-1")).unwrap();
    let b = std::fs::metadata(dest.join("hardlink-to-64k-plus-1")).unwrap();
    assert_eq!(
        a.ino(),
        b.ino(),
        "hard-linked pair has different inodes on the mount"
    );
    assert_eq!((a.nlink(), b.nlink()), (2, 2));

    // Out: archive the mounted tree and extract it elsewhere.
    let tar_out = work.path().join("out.tar");
    run(tar_cmd()
        .args(["--format=posix", "-cf"])
        .arg(&tar_out)
        .arg("-C")
        .arg(&dest)
        .arg("."));
    let listing = run(tar_cmd().arg("-tvf").arg(&tar_out));
    assert!(
        listing.contains("link to ./data/64k-plus-1")
            || listing.contains("link to ./hardlink-to-64k-plus-1"),
        "archive from the mount does not record the hard link:\n{listing}"
    );
    let back = work.path().join("back");
    std::fs::create_dir(&back).unwrap();
    run(tar_cmd()
        .arg("-xf")
        .arg(&tar_out)
        .args([
            "--same-permissions",
            "--same-owner",
            "--numeric-owner",
            "-C",
        ])
        .arg(&back));
    assert_same_tree(
        "archived from the mount and extracted on tmpfs",
        &want,
        &scan(&back),
    );

    w.check();
    assert_same_tree("on the mount after remount", &want, &scan(&dest));
    eprintln!("tar test took {:.1?}", t0.elapsed());
}

// ---------------------------------------------------------------------------
// fsx
// ---------------------------------------------------------------------------

/// fsx operations hsfs supports. Not enabled, and why:
/// - mapread, mapwrite, invalidate: fsx maps the file MAP_SHARED with
///   PROT_READ|PROT_WRITE (even to read) on its O_RDWR descriptor; hsfs opens
///   writable files with FOPEN_DIRECT_IO and no FUSE_DIRECT_IO_ALLOW_MMAP, so
///   the kernel refuses every shared mapping of them (ENODEV), by design.
/// - punch_hole: hsfs answers fallocate with EOPNOTSUPP.
/// - posix_fallocate: hsfs refuses fallocate, so glibc emulates it with
///   one-byte writes (nothing of hsfs's own); and fsx 0.3.2 issues
///   zero-length posix_fallocate calls, which fail with EINVAL on any
///   filesystem (seed 987654321 hits one at op 30785 even on tmpfs).
///
/// copy_file_range is enabled: the kernel falls back to splice when hsfs
/// refuses it. Writes up to 192 KiB in a 1 MiB file cross the 64 KiB chunk
/// boundaries.
const FSX_CONFIG: &str = "\
flen = 1048576
nosizechecks = false

[opsize]
max = 196608
min = 0
align = 1

[weights]
close_open = 2
read = 10
write = 10
mapread = 0
mapwrite = 0
invalidate = 0
truncate = 3
fsync = 1
fdatasync = 1
posix_fallocate = 0
punch_hole = 0
sendfile = 2
posix_fadvise = 1
copy_file_range = 3
";

fn fsx_ops() -> u64 {
    match std::env::var("HSFS_FSX_OPS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("HSFS_FSX_OPS={v:?} is not a number")),
        Err(_) => 100_000,
    }
}

fn fsx(config: &Path, artifacts: &Path, ops: u64, seed: u64, file: &Path) -> Command {
    let mut c = Command::new(tool("fsx"));
    c.arg("-N")
        .arg(ops.to_string())
        .arg("-S")
        .arg(seed.to_string())
        .arg("-f")
        .arg(config)
        .arg("-P")
        .arg(artifacts)
        .arg(file)
        .env("RUST_BACKTRACE", "1");
    c
}

/// Reads a file through a read-only shared mapping of an O_RDONLY descriptor.
fn mmap_read(p: &Path) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(p).unwrap();
    let len = usize::try_from(f.metadata().unwrap().len()).unwrap();
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: a fresh read-only mapping of `len` bytes of an open file,
    // copied out and unmapped before the file is closed.
    unsafe {
        let m = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(
            m,
            libc::MAP_FAILED,
            "mmap {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        let v = std::slice::from_raw_parts(m.cast::<u8>(), len).to_vec();
        libc::munmap(m, len);
        v
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn fsx_random_ops_several_seeds() {
    let t0 = Instant::now();
    let fsx_bin = tool("fsx");
    let version = run(Command::new(&fsx_bin).arg("--version"));
    assert!(
        version.contains("0.3.2"),
        "expected fsx 0.3.2, found {version}"
    );
    let mut w = Workspace::new();
    let side = tmpfs_dir();
    let config = side.path().join("fsx.toml");
    std::fs::write(&config, FSX_CONFIG).unwrap();
    let ops = fsx_ops();
    let seeds: [u64; 3] = [1, 0x5eed_2024, 987_654_321];

    // The seeds run concurrently, each on its own file; and the same
    // sequence on tmpfs gives the reference final contents.
    let handles: Vec<_> = seeds
        .iter()
        .map(|&seed| {
            let dir = side.path().join(format!("seed-{seed}"));
            std::fs::create_dir_all(dir.join("ref")).unwrap();
            std::fs::create_dir_all(dir.join("artifacts")).unwrap();
            let file = w.path(&format!("fsx-{seed}.dat"));
            let config = config.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let out = output(&mut fsx(&config, &dir.join("artifacts"), ops, seed, &file));
                let took = start.elapsed();
                let reference = dir.join("ref/fsx.dat");
                let ref_out = output(&mut fsx(&config, &dir.join("ref"), ops, seed, &reference));
                (seed, file, reference, out, ref_out, took)
            })
        })
        .collect();
    let mut finals = Vec::new();
    let mut failures = Vec::new();
    // Every fsx has finished before any assertion (a panic here must not
    // leave fsx processes running on the mount while it is torn down).
    let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    let results: Vec<_> = joined.into_iter().map(Result::unwrap).collect();
    for (seed, file, reference, out, ref_out, took) in results {
        eprintln!("fsx seed {seed}: {ops} ops on the mount in {took:.1?}");
        assert!(
            ref_out.status.success(),
            "fsx seed {seed} failed on tmpfs (reference):\n{}",
            tail(&text(&ref_out.stderr), 40)
        );
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        if !out.status.success() || !all.contains("All operations completed A-OK!") {
            failures.push(format!(
                "fsx -S {seed} -N {ops} on the mount failed ({}):\n{}",
                out.status,
                tail(&all, 60)
            ));
            continue;
        }
        let want = std::fs::read(&reference).unwrap();
        let got = std::fs::read(&file).unwrap();
        assert_eq!(
            got.len(),
            want.len(),
            "seed {seed}: final size differs from tmpfs"
        );
        assert!(got == want, "seed {seed}: final contents differ from tmpfs");
        // What fsx's mapread would check, the way hsfs supports it: a
        // shared read-only mapping of a read-only descriptor.
        assert!(
            mmap_read(&file) == want,
            "seed {seed}: mmap(MAP_SHARED, PROT_READ) of the file differs"
        );
        finals.push((seed, file, want));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    w.check();
    for (seed, file, want) in &finals {
        assert!(
            std::fs::read(file).unwrap() == *want,
            "seed {seed}: contents changed on remount"
        );
    }
    eprintln!("fsx test took {:.1?}", t0.elapsed());
}

// ---------------------------------------------------------------------------
// stress-ng
// ---------------------------------------------------------------------------

/// Runs stress-ng with `stressors` (name, instances, ops or 0 for
/// time-bounded) in `dir`; asserts a clean run, every count-bounded stressor
/// finishing its ops, and nothing left behind.
fn stress(dir: &Path, stressors: &[(&str, u32, u64)], extra: &[&str], timeout_s: u32) {
    let mut c = Command::new(tool("stress-ng"));
    c.arg("--temp-path").arg(dir);
    for &(name, n, ops) in stressors {
        c.arg(format!("--{name}")).arg(n.to_string());
        if ops > 0 {
            c.arg(format!("--{name}-ops")).arg(ops.to_string());
        }
    }
    c.args(extra)
        .args(["--verify", "--metrics-brief", "--timeout"])
        .arg(format!("{timeout_s}s"));
    let start = Instant::now();
    let out = output(&mut c);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    eprintln!(
        "stress-ng {:?} took {:.1?}",
        stressors.iter().map(|s| s.0).collect::<Vec<_>>(),
        start.elapsed()
    );
    assert!(
        out.status.success(),
        "stress-ng failed ({}):\n{all}",
        out.status
    );
    let bad: Vec<&str> = all
        .lines()
        .filter(|l| l.contains(" fail:") || l.contains(" error:") || l.contains("unsuccessful"))
        .collect();
    assert!(
        bad.is_empty(),
        "stress-ng reported failures:\n{}\n\nfull output:\n{all}",
        bad.join("\n")
    );
    assert!(all.contains("successful run completed"), "{all}");

    // Bogo-op counts from the metrics table.
    let mut done: BTreeMap<&str, u64> = BTreeMap::new();
    for l in all.lines().filter(|l| l.contains(" metrc: ")) {
        let t: Vec<&str> = l.split_whitespace().collect();
        if t.len() > 4
            && let Some(&(name, _, _)) = stressors.iter().find(|s| s.0 == t[3])
            && let Ok(n) = t[4].parse::<u64>()
        {
            done.insert(name, n);
        }
    }
    for &(name, _, ops) in stressors {
        let n = done.get(name).copied();
        assert!(n.is_some(), "no metrics for stressor {name}:\n{all}");
        // A stressor may overshoot by an op or so (lockf checks its bound
        // once per lock/unlock pair); fewer means it ran out of time.
        if ops > 0 {
            assert!(
                n >= Some(ops),
                "stressor {name} did not finish its {ops} ops in time:\n{all}"
            );
        }
    }
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "stress-ng left files behind: {left:?}");
}

#[test]
fn stress_ng_filesystem_stressors() {
    let t0 = Instant::now();
    let mut w = Workspace::new();
    let dir = w.path("stress");
    std::fs::create_dir(&dir).unwrap();

    // Count-bounded: each must complete its ops (with verification).
    stress(
        &dir,
        &[
            ("dir", 2, 2000),
            ("dentry", 1, 200),
            ("filename", 1, 200),
            ("rename", 2, 2000),
            ("hdd", 2, 2000),
            ("seek", 1, 2000),
            ("fstat", 1, 200),
            ("chown", 1, 200),
            ("chmod", 1, 20),
            ("utime", 1, 500),
            ("fcntl", 1, 500),
            ("lockf", 1, 1000),
            ("flock", 1, 1000),
            ("getdent", 1, 500),
            ("dirdeep", 1, 100),
            ("dirmany", 1, 100),
            ("open", 1, 1000),
            ("access", 1, 200),
            ("touch", 1, 500),
        ],
        &["--hdd-bytes", "4M", "--seek-size", "4M"],
        90,
    );
    // Time-bounded: one bogo op of these is thousands of operations
    // (8192 links, up to 4096 xattrs), so they run for a fixed time.
    stress(
        &dir,
        &[("link", 1, 0), ("symlink", 1, 0), ("xattr", 1, 0)],
        &[],
        20,
    );

    w.check();
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    eprintln!("stress-ng test took {:.1?}", t0.elapsed());
}
