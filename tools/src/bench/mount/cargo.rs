//! The cargo workload: `cargo build --offline` of a generated crate (N
//! modules of serde-derived types round-tripped through postcard and hashed
//! with blake3, options parsed with clap's derive) with its target
//! directory on the target, then a rebuild after one module changed. The
//! dependencies come from the local cargo registry (the machine may have
//! no network), resolved once into the crate's Cargo.lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use super::git::copy_tree;
use super::targets::tree_bytes;
use super::{Ctx, Group, Measurement, Spec, Unit};

const PACKAGE: &str = "hsfs-bench-crate";
/// The line the built program prints starts with this.
const MARKER: &str = "hsfs-bench-cargo";

pub static CARGO: Group = Group {
    name: "cargo",
    specs: &[
        Spec {
            name: "cargo_build",
            unit: Unit::Seconds,
            what: "cargo build --offline (debug) of a generated 40-module crate and its dependencies \
                   (serde+derive, postcard, blake3, clap+derive), CARGO_TARGET_DIR on the target",
            base: None,
        },
        Spec {
            name: "cargo_rebuild",
            unit: Unit::Seconds,
            what: "cargo build --offline again after one module changed (incremental)",
            base: None,
        },
    ],
    run,
};

const MANIFEST: &str = r#"[package]
name = "hsfs-bench-crate"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
postcard = { version = "1", default-features = false, features = ["use-std"] }
blake3 = "1"
clap = { version = "4", features = ["derive"] }
"#;

/// One generated module; `KK` is its number.
const MODULE: &str = r#"//! Generated module KK.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KindKK {
    Empty,
    Number(u64),
    Text(String),
    Pair { left: i32, right: i32 },
    List(Vec<u16>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordKK {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    pub weight: f64,
    pub kind: KindKK,
    pub children: Vec<RecordKK>,
    pub flags: [bool; 4],
    pub note: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OptionsKK {
    /// Records module KK builds.
    #[arg(long, default_value_t = 3)]
    pub records_KK: u32,
}

fn build(seed: u64, depth: u32) -> RecordKK {
    let kind = match seed % 5 {
        0 => KindKK::Empty,
        1 => KindKK::Number(seed * KK),
        2 => KindKK::Text(format!("text {seed}")),
        3 => KindKK::Pair { left: seed as i32, right: -(seed as i32) },
        _ => KindKK::List((0..seed % 7).map(|x| x as u16).collect()),
    };
    RecordKK {
        id: seed,
        name: format!("record KK-{seed}"),
        tags: (0..seed % 4).map(|t| format!("tag{t}")).collect(),
        weight: seed as f64 / 7.0,
        kind,
        children: if depth == 0 {
            Vec::new()
        } else {
            (0..2).map(|c| build(seed * 3 + c, depth - 1)).collect()
        },
        flags: [seed % 2 == 0, seed % 3 == 0, seed % 5 == 0, seed % 7 == 0],
        note: (seed % 2 == 0).then(|| "even".to_string()),
    }
}

/// Encodes the records, decodes them, checks the round trip and returns
/// the hash of the encodings.
pub fn run(opts: &OptionsKK) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    for seed in 0..u64::from(opts.records_KK) {
        let r = build(seed + KK, 2);
        let bytes = postcard::to_allocvec(&r).expect("encode");
        let back: RecordKK = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(r, back, "module KK: round trip");
        hasher.update(&bytes);
    }
    hasher.finalize()
}
"#;

/// The generated crate every target builds, with its resolved Cargo.lock.
pub struct Source {
    dir: PathBuf,
    modules: usize,
}

impl Source {
    /// Writes the crate (40 modules at scale 1) and resolves its
    /// dependencies offline.
    pub fn prepare(scratch: &Path, scale: f64) -> Result<Source> {
        let modules = ((40.0 * scale).round() as usize).max(2);
        let dir = scratch.join("cargo-src");
        fs::create_dir_all(dir.join("src"))?;
        fs::write(dir.join("Cargo.toml"), MANIFEST)?;
        fs::write(dir.join("src/edit.rs"), edit_module(0))?;
        fs::write(dir.join("src/main.rs"), main_rs(modules))?;
        for k in 0..modules {
            let text = MODULE.replace("KK", &k.to_string());
            fs::write(dir.join(format!("src/m{k}.rs")), text)?;
        }
        crate::bench::timed_output(
            cargo(&dir, &dir.join("target")).args(["generate-lockfile", "--offline"]),
            "cargo generate-lockfile --offline (the cargo workload needs serde, postcard, \
             blake3 and clap in ~/.cargo/registry: build the workspace once)",
        )?;
        eprintln!("cargo: {modules}-module crate in {}", dir.display());
        Ok(Source { dir, modules })
    }
}

fn edit_module(edit: u32) -> String {
    format!("//! Changed by the rebuild workload.\npub const EDIT: u32 = {edit};\n")
}

fn main_rs(modules: usize) -> String {
    let mut s = String::from("use clap::Parser;\n\nmod edit;\n");
    for k in 0..modules {
        s += &format!("mod m{k};\n");
    }
    s += "\n#[derive(Parser)]\nstruct Cli {\n";
    for k in 0..modules {
        s += &format!("    #[command(flatten)]\n    o{k}: m{k}::Options{k},\n");
    }
    s +=
        "}\n\nfn main() {\n    let cli = Cli::parse();\n    let mut all = blake3::Hasher::new();\n";
    for k in 0..modules {
        s += &format!("    all.update(m{k}::run(&cli.o{k}).as_bytes());\n");
    }
    s += &format!(
        "    println!(\"{MARKER} modules={modules} edit={{}} hash={{}}\", edit::EDIT, all.finalize());\n}}\n"
    );
    s
}

/// cargo in `dir`, building into `target_dir`, without colours or
/// compiler wrappers from the environment.
fn cargo(dir: &Path, target_dir: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET_DIR");
    c
}

fn run(cx: &mut Ctx) -> Result<()> {
    let src = cx.env.cargo.as_ref().context("cargo source not prepared")?;
    let dir = cx.dir.join("crate");
    copy_tree(&src.dir, &dir)?;
    cx.record("cargo_build", build(src, &dir, 0))?;
    fs::write(dir.join("src/edit.rs"), edit_module(1))?;
    cx.record("cargo_rebuild", build(src, &dir, 1))
}

/// Times `cargo build --offline`, then runs the program: it must print
/// its marker line with every module and the current edit (so the
/// rebuild really rebuilt).
fn build(src: &Source, dir: &Path, edit: u32) -> Result<Measurement> {
    let target = dir.join("target");
    let before = tree_bytes(dir)?;
    let mut build = cargo(dir, &target);
    build.args(["build", "--offline", "--quiet"]);
    let (d, _) = crate::bench::timed_output(&mut build, "cargo build")?;
    let exe = target.join("debug").join(PACKAGE);
    let run = Command::new(&exe)
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let want = format!("{MARKER} modules={} edit={edit} hash=", src.modules);
    ensure!(
        run.status.success() && stdout.starts_with(&want),
        "the built program printed {stdout:?} ({}), expected a line starting {want:?}: {}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(Measurement::seconds(d).wrote(tree_bytes(dir)?.saturating_sub(before)))
}
