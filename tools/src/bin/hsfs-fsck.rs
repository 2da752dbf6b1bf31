//! `hsfs-fsck STATE_DIR [--json] [--proof PATH] [--rebuild-merkle]`:
//! verify a store, after rebuilding its Merkle branches if asked.
//!
//! Exit status: 0 clean, 1 problems found (or a rebuild refused: the
//! records differ from what was committed), 2 unusable input (not a state
//! directory, locked by a running process, unknown format, I/O failure).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hsfs_engine::repair::{self, RepairError};
use hsfs_engine::{Engine, EngineOptions, fsck};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "hsfs-fsck",
    version,
    about = "Verify an hsfs store: chunks, structure, log, Merkle root"
)]
struct Cli {
    /// State directory (must not be mounted).
    state_dir: PathBuf,
    /// JSON report on stdout (no progress output).
    #[arg(long)]
    json: bool,
    /// Also prove PATH (from the workspace root) against the root.
    #[arg(long)]
    proof: Option<String>,
    /// First rebuild the Merkle branches and delta records (derived data)
    /// from the records, if the records give the committed root; then
    /// verify. For a store refused on open with "the merkle deltas give
    /// root X but the store's root is Y", or reported with stale or
    /// missing branches.
    #[arg(long)]
    rebuild_merkle: bool,
}

fn main() -> ExitCode {
    hsfs_tools::init_logging();
    let cli = Cli::parse();
    let opened = if cli.rebuild_merkle {
        repair::rebuild_merkle_dir(&cli.state_dir, &EngineOptions::default())
            .map(|(r, e)| (Some(r), e))
    } else {
        Engine::open_dir(&cli.state_dir, &EngineOptions::default())
            .map(|e| (None, e))
            .map_err(RepairError::from)
    };
    let (rebuilt, engine) = match opened {
        Ok(x) => x,
        Err(e) => {
            let what = if cli.rebuild_merkle {
                "cannot rebuild the merkle branches"
            } else {
                "cannot open the store"
            };
            eprintln!("hsfs-fsck: {what}: {e}");
            if cli.json {
                let v = json!({
                    "state_dir": cli.state_dir.display().to_string(),
                    "clean": false,
                    "error": format!("{what}: {e}"),
                });
                println!("{}", serde_json::to_string_pretty(&v).expect("json"));
            }
            // A refused rebuild found problems; anything else is input
            // this tool cannot use.
            return ExitCode::from(if matches!(e, RepairError::Refused(_)) {
                1
            } else {
                2
            });
        }
    };
    if let Some(r) = &rebuilt
        && !cli.json
    {
        println!(
            "rebuilt the merkle branches: records {}, branches written {}, stale branches removed {}, delta records removed {}; root {}",
            r.records, r.branches, r.stale_branches, r.deltas, r.root
        );
    }
    let bar = if !cli.json && std::io::stderr().is_terminal() {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {msg} {pos} checked [{elapsed}]")
                .expect("template"),
        );
        Some(b)
    } else {
        None
    };
    let mut last_phase = "";
    let report = fsck::check(&engine, &mut |phase, n| {
        if let Some(b) = &bar {
            if phase != last_phase {
                b.set_message(phase);
                last_phase = phase;
            }
            if n % 1024 == 0 {
                b.set_position(n);
            }
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "hsfs-fsck: {}: cannot read the store: {e}",
                cli.state_dir.display()
            );
            return ExitCode::from(2);
        }
    };
    let proof = match &cli.proof {
        None => None,
        Some(p) => match fsck::prove_path(&engine, p.as_bytes()) {
            Ok(pp) => {
                let root = engine.status().meta.root;
                let verified = fsck::verify_path_proof(&pp, &root);
                Some((pp, verified))
            }
            Err(e) => {
                eprintln!("hsfs-fsck: --proof {p}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let clean = report.is_clean() && proof.as_ref().is_none_or(|(_, v)| v.is_ok());
    if cli.json {
        let mut v = json!({
            "state_dir": cli.state_dir.display().to_string(),
            "workspace": engine.workspace().to_string(),
            "clean": clean,
            "problems": report.problems,
            "stats": report.stats,
        });
        if let Some((pp, verified)) = &proof {
            v["proof"] = json!(pp);
            v["proof_verified"] = json!(verified.is_ok());
        }
        if let Some(r) = &rebuilt {
            v["rebuilt_merkle"] = json!(r);
        }
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        let s = &report.stats;
        for p in &report.problems {
            println!(
                "PROBLEM {:<22} {}:{}  {}",
                p.kind, p.space, p.key, p.message
            );
        }
        if let Some((pp, verified)) = &proof {
            match verified {
                Ok(()) => println!(
                    "proof of {} ({} records) verifies against root {}",
                    pp.path,
                    pp.records.len(),
                    pp.root
                ),
                Err(e) => println!("PROBLEM proof of {}: {e}", pp.path),
            }
        }
        println!(
            "{}: {} — index {}, root {}, {} nodes, {} entries, {} extents, {} chunks ({} bytes), {} log entries",
            cli.state_dir.display(),
            if clean {
                "clean".to_string()
            } else {
                format!("{} problems", report.problems.len())
            },
            s.applied_index,
            s.root_computed,
            s.nodes,
            s.dirents,
            s.extents,
            s.chunks,
            s.chunk_bytes,
            s.log_entries
        );
    }
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
