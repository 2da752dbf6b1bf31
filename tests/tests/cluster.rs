//! Multi-host hsfs end to end: a leader and worker processes with real
//! mounts on loopback QUIC, a fault-injecting UDP proxy, crashes at exact
//! steps (abort failpoints), and refused peers.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hsfs_tests::cluster::{Cluster, WorkerProc, fsck, wait_until};
use hsfs_tests::proxy::Proxy;
use hsfs_tests::{bin, run};

const T: Duration = Duration::from_secs(60);

/// Every entry below `root`: relative path -> (inode, kind, size, content hash).
fn snapshot(root: &Path) -> BTreeMap<String, (u64, String, u64, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let (kind, hash) = if m.is_dir() {
                stack.push(p.clone());
                ("dir".to_string(), String::new())
            } else if m.file_type().is_symlink() {
                (
                    "link".to_string(),
                    std::fs::read_link(&p).unwrap().display().to_string(),
                )
            } else {
                (
                    "file".to_string(),
                    blake3::hash(&std::fs::read(&p).unwrap())
                        .to_hex()
                        .to_string(),
                )
            };
            out.insert(rel, (m.ino(), kind, m.len(), hash));
        }
    }
    out
}

/// The leader's log as (index, intent, op, path).
fn leader_log(state: &Path) -> Vec<serde_json::Value> {
    let out = run(Command::new(bin("hsfs"))
        .args(["log", "--tail", "1000000", "--json"])
        .arg(state));
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn three_workers_share_one_tree() {
    let mut c = Cluster::new(3);
    // A write on one worker is readable on the others once they applied it.
    std::fs::write(c.workers[0].path("hello.txt"), b"from w0").unwrap();
    let k = c.leader.commit_index();
    for w in &c.workers[1..] {
        w.wait_applied(k, T);
        assert_eq!(std::fs::read(w.path("hello.txt")).unwrap(), b"from w0");
    }
    // All three build one tree at once.
    std::thread::scope(|s| {
        for (i, w) in c.workers.iter().enumerate() {
            s.spawn(move || {
                for d in 0..8 {
                    let dir = w.path(&format!("tree/w{i}/d{d}"));
                    std::fs::create_dir_all(&dir).unwrap();
                    for f in 0..10 {
                        std::fs::write(dir.join(format!("f{f}")), format!("{i}/{d}/{f}")).unwrap();
                    }
                }
                // Everyone also writes into one shared directory.
                std::fs::create_dir_all(w.path("tree/shared")).unwrap();
                for f in 0..20 {
                    std::fs::write(w.path(&format!("tree/shared/w{i}-{f}")), b"x").unwrap();
                }
            });
        }
    });
    c.converge(T);
    let first = snapshot(&c.workers[0].path("tree"));
    assert_eq!(first.len(), 3 * (1 + 8 * 11) + 1 + 60);
    for w in &c.workers[1..] {
        assert_eq!(
            snapshot(&w.path("tree")),
            first,
            "worker {} sees another tree",
            w.name
        );
    }
    let roots: Vec<_> = c
        .workers
        .iter()
        .map(|w| w.status()["root"].clone())
        .collect();
    assert!(
        roots.windows(2).all(|r| r[0] == r[1]),
        "roots differ: {roots:?}"
    );
    assert_eq!(roots[0], c.leader.status()["root"]);

    // Read-your-failures: B's mkdir fails because A made the directory a
    // moment ago, and B's kernel had looked the name up before. B must then
    // see the directory (this is what `mkdir -p` does on EEXIST).
    let (a, b) = (&c.workers[0], &c.workers[1]);
    std::fs::create_dir(a.path("race")).unwrap();
    c.converge(T);
    for i in 0..50 {
        let p = format!("race/r{i}");
        assert_eq!(
            std::fs::symlink_metadata(b.path(&p)).unwrap_err().kind(),
            std::io::ErrorKind::NotFound,
            "{p}"
        );
        std::fs::create_dir(a.path(&p)).unwrap();
        let e = std::fs::create_dir(b.path(&p)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{p}");
        assert!(b.path(&p).is_dir(), "{p}: EEXIST, yet not visible on B");
    }

    // git clone on one worker, git status on another.
    let src = c.dir.path().join("src-repo");
    run(Command::new("git").args(["init", "-q"]).arg(&src));
    for i in 0..30 {
        std::fs::create_dir_all(src.join(format!("m{}", i % 5))).unwrap();
        std::fs::write(
            src.join(format!("m{}/f{i}.rs", i % 5)),
            format!("pub fn f{i}() {{}}\n"),
        )
        .unwrap();
    }
    let git = |dir: &Path, args: &[&str]| {
        run(Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", c.dir.path()))
    };
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-qm", "init"]);
    run(Command::new("git")
        .args(["clone", "-q"])
        .arg(&src)
        .arg(c.workers[0].path("repo")));
    c.converge(T);
    assert_eq!(
        git(&c.workers[1].path("repo"), &["status", "--porcelain"]),
        ""
    );
    std::fs::write(c.workers[1].path("repo/m0/f0.rs"), "pub fn changed() {}\n").unwrap();
    git(&c.workers[1].path("repo"), &["commit", "-qam", "from w1"]);
    c.converge(T);
    assert!(git(&c.workers[2].path("repo"), &["log", "--oneline"]).contains("from w1"));
    assert_eq!(
        git(&c.workers[0].path("repo"), &["status", "--porcelain"]),
        ""
    );
    c.stop_and_check();
}

#[test]
fn loss_cut_and_heal() {
    let mut c = Cluster::new(1);
    let proxy = Proxy::start(c.leader.addr, 0x5eed);
    let w = WorkerProc::start(c.dir.path(), "far", &c.leader, proxy.addr, &[]);
    // 5 % loss: everything still commits and converges.
    proxy.set_loss(50);
    std::fs::create_dir(w.path("lossy")).unwrap();
    for i in 0..150 {
        std::fs::write(w.path(&format!("lossy/f{i}")), format!("{i}")).unwrap();
    }
    assert!(proxy.dropped() > 0, "the proxy dropped nothing");
    let k = c.leader.commit_index();
    c.workers[0].wait_applied(k, T);
    assert_eq!(
        std::fs::read_dir(c.workers[0].path("lossy"))
            .unwrap()
            .count(),
        150
    );
    proxy.set_loss(0);

    // A cut: the worker turns read-only within the documented bound
    // (leader_timeout 1 s + one heartbeat).
    proxy.cut(true);
    let t0 = Instant::now();
    wait_until(
        Duration::from_secs(5),
        "the cut worker to turn read-only",
        || w.status()["read_only"] == true,
    );
    let noticed = t0.elapsed();
    assert!(
        noticed < Duration::from_millis(2500),
        "took {noticed:?} to notice the cut"
    );
    let e = std::fs::write(w.path("during-cut"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    // Reads continue from the last applied state.
    assert_eq!(std::fs::read(w.path("lossy/f7")).unwrap(), b"7");
    // The rest of the cluster goes on.
    std::fs::write(c.workers[0].path("while-cut"), b"y").unwrap();

    // Heal: it reconnects, catches up and accepts writes again.
    proxy.cut(false);
    wait_until(T, "the worker to reconnect", || {
        w.status()["read_only"] == false
    });
    let k = c.leader.commit_index();
    w.wait_applied(k, T);
    assert_eq!(std::fs::read(w.path("while-cut")).unwrap(), b"y");
    std::fs::write(w.path("after-heal"), b"z").unwrap();

    // No op lost or applied twice: every intent once in the log.
    let log = leader_log(&c.leader.state);
    let mut seen = std::collections::HashSet::new();
    for e in &log {
        assert!(
            seen.insert(e["intent"].as_str().unwrap().to_string()),
            "intent committed twice: {e}"
        );
    }
    let creates = log
        .iter()
        .filter(|e| e["op"] == "create" && e["path"].as_str().unwrap().starts_with("/lossy/"))
        .count();
    assert_eq!(creates, 150);
    drop(w);
    drop(proxy);
    c.stop_and_check();
}

#[test]
fn worker_killed_between_intent_and_ack() {
    let mut c = Cluster::new(1);
    let mut w = WorkerProc::start(
        c.dir.path(),
        "doomed",
        &c.leader,
        c.leader.addr,
        &[("HSFS_FAILPOINTS", "worker.ack_received=1")],
    );
    // The leader commits, the ack reaches the worker, the worker dies.
    let r = std::fs::create_dir(w.path("made-once"));
    assert!(r.is_err(), "the syscall cannot succeed: its server died");
    w.wait_exit(T);
    w.mount(&[]);
    wait_until(T, "the restarted worker to resolve the intent", || {
        w.status()["worker"]["recovered_intents"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let rec = w.status()["worker"]["recovered_intents"][0].clone();
    assert_eq!(rec["op"], "mkdir");
    assert!(rec["committed_at_index"].as_u64().is_some(), "{rec}");
    let k = c.leader.commit_index();
    w.wait_applied(k, T);
    assert!(w.path("made-once").is_dir());
    let log = leader_log(&c.leader.state);
    assert_eq!(
        log.iter().filter(|e| e["op"] == "mkdir").count(),
        1,
        "exactly one commit"
    );
    drop(w);
    c.stop_and_check();
}

#[test]
fn leader_killed_after_durable_write_before_ack() {
    let mut c = Cluster::new(1);
    c.leader.stop();
    // The next batch is written durably, then the leader dies before acking.
    c.leader
        .restart(&[("HSFS_FAILPOINTS", "commit.after_write=1")]);
    c.workers[0].wait_connected(&c.leader, T);
    c.workers[0].wait_applied(c.leader.commit_index(), T);
    let p = c.workers[0].path("survives");
    let syscall = std::thread::spawn(move || std::fs::create_dir(p));
    c.leader.wait_exit(T);
    c.leader.restart(&[]);
    // The worker reconnects, asks about its intent, gets the original ack.
    let r = syscall.join().unwrap();
    assert!(
        r.is_ok(),
        "mkdir should succeed after the leader came back: {r:?}"
    );
    let log = leader_log(&c.leader.state);
    assert_eq!(
        log.iter().filter(|e| e["op"] == "mkdir").count(),
        1,
        "exactly one commit"
    );
    c.stop_and_check();
}

#[test]
fn restarted_worker_catches_up_from_the_log() {
    let mut c = Cluster::new(2);
    c.workers[1].stop();
    std::fs::create_dir(c.workers[0].path("many")).unwrap();
    for i in 0..1500 {
        std::fs::write(c.workers[0].path(&format!("many/f{i}")), format!("{i}")).unwrap();
    }
    c.workers[1].mount(&[]);
    c.converge(T);
    assert_eq!(
        snapshot(&c.workers[1].path("many")),
        snapshot(&c.workers[0].path("many"))
    );
    c.stop_and_check();
}

#[test]
fn foreign_worker_is_refused_and_leader_survives_garbage() {
    let c = Cluster::new(1);
    // Credentials from another workspace: the TLS handshake fails.
    let other = c.dir.path().join("other");
    run(Command::new(bin("hsfs")).arg("init").arg(&other));
    let bundle = c.dir.path().join("foreign.bundle");
    run(Command::new(bin("hsfs"))
        .args(["join", "--name", "intruder", "--out"])
        .arg(&bundle)
        .arg(&other));
    let mnt = c.dir.path().join("mnt-intruder");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new(bin("hsfs"))
        .arg("mount")
        .arg(c.dir.path().join("state-intruder"))
        .arg(&mnt)
        .args([
            "--connect-timeout",
            "3",
            "--leader",
            &c.leader.addr.to_string(),
            "--join",
        ])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the leader") && err.contains("connection to the leader"),
        "{err}"
    );
    assert!(
        c.leader
            .log()
            .contains("refused connection (TLS handshake failed)"),
        "{}",
        c.leader.log()
    );

    // Raw clients with valid credentials but a bad handshake or bad frames.
    let w0 = &c.workers[0];
    let bundle = hsfs_replication::tls::Bundle::load(&w0.bundle).unwrap();
    let replies = hsfs_tests::raw::misbehave(c.leader.addr, &bundle);
    assert!(replies.wrong_protocol.contains("protocol"), "{replies:?}");
    assert!(
        replies.wrong_workspace.contains("workspace mismatch"),
        "{replies:?}"
    );
    // The leader is still serving.
    std::fs::write(w0.path("still-alive"), b"ok").unwrap();
    assert_eq!(std::fs::read(w0.path("still-alive")).unwrap(), b"ok");
    let _ = fsck;
}
