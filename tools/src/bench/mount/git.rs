//! The git workload: clone a real repository (crate sources from the local
//! cargo registry, in 4 commits) from a bare copy on the disk, `git status`
//! cold and warm, and a commit of 20 modified files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::targets::{drop_caches, tree_bytes};
use super::{Ctx, Group, Measurement, Spec, Unit};

const EDITED: usize = 20;

pub static GIT: Group = Group {
    name: "git",
    specs: &[
        Spec {
            name: "git_clone",
            unit: Unit::Seconds,
            what: "git clone --no-local of a 40-crate repository from a bare copy on the disk",
            base: None,
        },
        Spec {
            name: "git_status_cold",
            unit: Unit::Seconds,
            what: "git status after drop_caches",
            base: None,
        },
        Spec {
            name: "git_status_warm",
            unit: Unit::Seconds,
            what: "git status again",
            base: None,
        },
        Spec {
            name: "git_commit",
            unit: Unit::Seconds,
            what: "git commit -a of 20 modified files",
            base: None,
        },
    ],
    run,
};

/// The repository every target clones.
pub struct Source {
    bare: PathBuf,
    home: PathBuf,
    head: String,
    files: usize,
    commits: usize,
}

impl Source {
    /// Builds the repository from the first crates (by name) of the cargo
    /// registry, in up to 4 commits, and a bare clone of it.
    pub fn prepare(scratch: &Path, scale: f64) -> Result<Source> {
        let crates = registry_crates(((40.0 * scale).round() as usize).max(2))?;
        let home = scratch.join("git-home");
        let work = scratch.join("git-src");
        fs::create_dir(&home)?;
        fs::create_dir(&work)?;
        git(&home, &work, &["init", "-q", "-b", "main"])?;
        let per_commit = crates.len().div_ceil(4);
        let mut commits = 0;
        for part in crates.chunks(per_commit) {
            for c in part {
                copy_tree(c, &work.join(c.file_name().context("crate dir name")?))?;
            }
            commits += 1;
            git(&home, &work, &["add", "-A"])?;
            let msg = format!("crates, part {commits}");
            git(&home, &work, &["commit", "-q", "-m", &msg])?;
        }
        let bare = scratch.join("git-bare.git");
        let (w, b) = (path_str(&work)?, path_str(&bare)?);
        git(&home, scratch, &["clone", "-q", "--bare", w, b])?;
        fs::remove_dir_all(&work)?;
        let head = git(&home, &bare, &["rev-parse", "HEAD"])?
            .trim()
            .to_string();
        let files = git(&home, &bare, &["ls-tree", "-r", "--name-only", "HEAD"])?
            .lines()
            .count();
        eprintln!(
            "git: {} crates, {files} files, {commits} commits in {}",
            crates.len(),
            bare.display()
        );
        Ok(Source {
            bare,
            home,
            head,
            files,
            commits,
        })
    }
}

/// The first `n` crate source directories of the cargo registry, by name.
fn registry_crates(n: usize) -> Result<Vec<PathBuf>> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let src = cargo_home.join("registry/src");
    let mut crates = Vec::new();
    for index in fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        for c in fs::read_dir(index?.path())? {
            let c = c?;
            if c.file_type()?.is_dir() {
                crates.push(c.path());
            }
        }
    }
    crates.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    crates.truncate(n);
    if crates.len() < 2 {
        bail!(
            "{} holds {} crate sources; the git workload needs some (run any cargo build first)",
            src.display(),
            crates.len()
        );
    }
    Ok(crates)
}

/// Copies a directory tree, skipping build output and nested repositories.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        let t = e.file_type()?;
        if t.is_dir() {
            copy_tree(&src, &dst)?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if t.is_file() {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// git with no system or user configuration.
fn git_cmd(home: &Path, dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("LC_ALL", "C")
        .args(["-c", "user.name=hsfs-bench"])
        .args(["-c", "user.email=hsfs-bench@example.invalid"]);
    c
}

/// Runs git; its stdout, and how long it took.
fn timed_git(home: &Path, dir: &Path, args: &[&str]) -> Result<(Duration, String)> {
    let what = format!("git {}", args.join(" "));
    let (d, out) = crate::bench::timed_output(git_cmd(home, dir).args(args), &what)?;
    Ok((d, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn git(home: &Path, dir: &Path, args: &[&str]) -> Result<String> {
    timed_git(home, dir, args).map(|(_, out)| out)
}

fn run(cx: &mut Ctx) -> Result<()> {
    let src = cx.env.git.as_ref().context("git source not prepared")?;
    let repo = cx.dir.join("repo");
    cx.record("git_clone", clone(src, &cx.dir, &repo))?;
    cx.record("git_status_cold", status(src, &repo, true))?;
    cx.record("git_status_warm", status(src, &repo, false))?;
    cx.record("git_commit", commit(src, &repo))
}

/// `git clone --no-local` of the source into `dir/repo` (named `repo`),
/// checked: HEAD and the number of tracked files.
pub fn clone(src: &Source, dir: &Path, repo: &Path) -> Result<Measurement> {
    let args = ["clone", "-q", "--no-local", path_str(&src.bare)?, "repo"];
    let (d, _) = timed_git(&src.home, dir, &args)?;
    let head = git(&src.home, repo, &["rev-parse", "HEAD"])?;
    ensure!(
        head.trim() == src.head,
        "cloned HEAD {head} is not {}",
        src.head
    );
    let files = git(&src.home, repo, &["ls-files"])?.lines().count();
    ensure!(
        files == src.files,
        "clone tracks {files} files, expected {}",
        src.files
    );
    Ok(Measurement::seconds(d).wrote(tree_bytes(repo)?))
}

fn status(src: &Source, repo: &Path, cold: bool) -> Result<Measurement> {
    if cold {
        drop_caches()?;
    }
    let (d, out) = timed_git(&src.home, repo, &["status"])?;
    ensure!(
        out.contains("nothing to commit, working tree clean"),
        "git status does not report a clean tree:\n{out}"
    );
    Ok(Measurement::seconds(d))
}

fn commit(src: &Source, repo: &Path) -> Result<Measurement> {
    let listing = git(&src.home, repo, &["ls-files", "-s", "-z"])?;
    // "mode sha stage\tpath" records; regular files only.
    let files: Vec<&str> = listing
        .split('\0')
        .filter_map(|r| r.split_once('\t'))
        .filter(|(meta, _)| meta.starts_with("100"))
        .map(|(_, path)| path)
        .collect();
    let step = (files.len() / EDITED).max(1);
    let picked: Vec<&str> = files.iter().step_by(step).take(EDITED).copied().collect();
    for p in &picked {
        let mut f = fs::OpenOptions::new().append(true).open(repo.join(p))?;
        std::io::Write::write_all(&mut f, b"\nhsfs-bench edit\n")?;
    }
    let before = tree_bytes(repo)?;
    let (d, _) = timed_git(
        &src.home,
        repo,
        &["commit", "-q", "-a", "-m", "hsfs-bench edit"],
    )?;
    let count: usize = git(&src.home, repo, &["rev-list", "--count", "HEAD"])?
        .trim()
        .parse()?;
    ensure!(
        count == src.commits + 1,
        "{count} commits after the commit, expected {}",
        src.commits + 1
    );
    let changed = git(&src.home, repo, &["diff", "--name-only", "HEAD~1", "HEAD"])?
        .lines()
        .count();
    ensure!(
        changed == picked.len(),
        "the commit changed {changed} files, expected {}",
        picked.len()
    );
    let porcelain = git(&src.home, repo, &["status", "--porcelain"])?;
    ensure!(
        porcelain.is_empty(),
        "tree not clean after the commit:\n{porcelain}"
    );
    let written = tree_bytes(repo)?.saturating_sub(before);
    Ok(Measurement::seconds(d).wrote(written))
}
