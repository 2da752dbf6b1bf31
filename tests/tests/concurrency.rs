//! Many processes at once on one mount: namespace churn in one directory,
//! O_APPEND from 8 writers, the O_EXCL race, and flock mutual exclusion.
//!
//! Workers are this test binary re-executed (`child` below), one process
//! each, so they are real separate processes with their own descriptors.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use hsfs_tests::Workspace;

const PROCS: usize = 8;

fn spawn(role: &str, dir: &Path, id: usize, n: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HSFS_ROLE", role)
        .env("HSFS_DIR", dir)
        .env("HSFS_ID", id.to_string())
        .env("HSFS_N", n.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `PROCS` workers of `role` and returns their stdout.
fn run_all(role: &str, dir: &Path, n: usize) -> Vec<String> {
    let children: Vec<Child> = (0..PROCS).map(|i| spawn(role, dir, i, n)).collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "worker failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// One append record: fixed length, self-checking.
fn record(id: usize, i: usize) -> Vec<u8> {
    let body = format!("w{id:02} r{i:06} ");
    let mut r = body.into_bytes();
    while r.len() < 99 {
        r.push(b'a' + ((r.len() + id + i) % 26) as u8);
    }
    r.push(b'\n');
    r
}

/// Worker entry point (not a test by itself).
#[test]
#[ignore = "worker process of the concurrency tests"]
fn child() {
    let Ok(role) = std::env::var("HSFS_ROLE") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("HSFS_DIR").unwrap());
    let id: usize = std::env::var("HSFS_ID").unwrap().parse().unwrap();
    let n: usize = std::env::var("HSFS_N").unwrap().parse().unwrap();
    match role.as_str() {
        "churn" => {
            for i in 0..n {
                let f = dir.join(format!("tmp-{id}-{i}"));
                std::fs::write(&f, format!("{id}:{i}")).unwrap();
                let g = dir.join(format!("file-{id}-{i}"));
                std::fs::rename(&f, &g).unwrap();
                if i % 3 == 0 {
                    std::fs::remove_file(&g).unwrap();
                }
                if i % 5 == 0 {
                    let d = dir.join(format!("d-{id}-{i}"));
                    std::fs::create_dir(&d).unwrap();
                    std::fs::remove_dir(&d).unwrap();
                }
            }
        }
        "append" => {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.join("log"))
                .unwrap();
            for i in 0..n {
                // One write(2) per record.
                f.write_all(&record(id, i)).unwrap();
            }
        }
        "excl" => {
            // Round r: everyone tries to create lock-r; the winner says so.
            for r in 0..n {
                let p = cpath(&dir.join(format!("lock-{r}")));
                // SAFETY: valid path; the fd is closed right away.
                let fd = unsafe {
                    libc::open(
                        p.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                        0o644,
                    )
                };
                if fd >= 0 {
                    unsafe { libc::close(fd) };
                    println!("won {r}");
                } else {
                    let e = std::io::Error::last_os_error();
                    assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "round {r}: {e}");
                }
            }
        }
        "flock" => {
            let path = dir.join("counter");
            for _ in 0..n {
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .unwrap();
                use std::os::fd::AsRawFd;
                // SAFETY: valid fd.
                assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                let v: u64 = s.trim().parse().unwrap();
                let mut g = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
                g.write_all(format!("{}\n", v + 1).as_bytes()).unwrap();
                drop(g);
                // Closing the locked descriptor releases the lock.
                drop(f);
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn eight_processes_churn_one_directory() {
    let mut w = Workspace::new();
    let dir = w.path("busy");
    std::fs::create_dir(&dir).unwrap();
    let n = 120;
    run_all("churn", &dir, n);
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        got.insert(
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read_to_string(e.path()).unwrap(),
        );
    }
    let mut want = BTreeMap::new();
    for id in 0..PROCS {
        for i in 0..n {
            if i % 3 != 0 {
                want.insert(format!("file-{id}-{i}"), format!("{id}:{i}"));
            }
        }
    }
    assert_eq!(got, want);
    w.check();
}

#[test]
fn eight_appenders_never_overlap() {
    let mut w = Workspace::new();
    std::fs::write(w.path("log"), b"").unwrap();
    let n = 400;
    run_all("append", &w.mnt, n);
    let data = std::fs::read(w.path("log")).unwrap();
    assert_eq!(data.len(), PROCS * n * 100, "lost or extra bytes");
    let mut seen = vec![vec![false; n]; PROCS];
    for rec in data.chunks(100) {
        let s = std::str::from_utf8(&rec[..12]).expect("torn record");
        let id: usize = s[1..3].parse().expect("torn record");
        let i: usize = s[5..11].parse().expect("torn record");
        assert_eq!(rec, &record(id, i)[..], "torn record");
        assert!(!seen[id][i], "record {id}/{i} twice");
        seen[id][i] = true;
    }
    // Each writer's records appear in its own order.
    for id in 0..PROCS {
        let order: Vec<usize> = data
            .chunks(100)
            .filter(|r| r[1..3] == *format!("{id:02}").as_bytes())
            .map(|r| std::str::from_utf8(&r[5..11]).unwrap().parse().unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]));
    }
    w.check();
}

#[test]
fn o_excl_race_has_one_winner() {
    let mut w = Workspace::new();
    let rounds = 60;
    let outs = run_all("excl", &w.mnt, rounds);
    let mut winners = vec![0; rounds];
    for o in &outs {
        // libtest may print its "test child ..." prefix on the same line.
        for l in o.lines().filter_map(|l| l.split("won ").nth(1)) {
            winners[l.trim().parse::<usize>().unwrap()] += 1;
        }
    }
    assert!(
        winners.iter().all(|&c| c == 1),
        "winners per round: {winners:?}"
    );
    w.check();
}

#[test]
fn flock_counter_and_nonblocking() {
    let mut w = Workspace::new();
    let counter = w.path("counter");
    std::fs::write(&counter, b"0\n").unwrap();
    let n = 60;
    run_all("flock", &w.mnt, n);
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().trim(),
        (PROCS * n).to_string()
    );

    use std::os::fd::AsRawFd;
    let a = std::fs::File::open(&counter).unwrap();
    let b = std::fs::File::open(&counter).unwrap();
    // SAFETY: valid fds.
    unsafe {
        assert_eq!(libc::flock(a.as_raw_fd(), libc::LOCK_SH), 0);
        assert_eq!(
            libc::flock(b.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB),
            0,
            "shared locks coexist"
        );
        assert_eq!(libc::flock(b.as_raw_fd(), libc::LOCK_UN), 0);
        assert_eq!(
            libc::flock(b.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB),
            -1
        );
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EWOULDBLOCK)
        );
    }
    drop(a);
    // The holder closed: the exclusive lock is free now.
    // SAFETY: valid fd.
    assert_eq!(
        unsafe { libc::flock(b.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    drop(b);
    w.check();
}
