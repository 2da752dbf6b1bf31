//! Mount lifecycle: persistence across remounts, clean shutdown, the errors
//! of `hsfs mount`, SIGKILL recovery, read-only mounts, disk full, status,
//! log and fsck exit codes, and a cached listing the kernel continues after
//! dropping its pages.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use hsfs_tests::{Workspace, bin, is_mounted, run};

fn hsfs(args: &[&Path]) -> Output {
    Command::new(bin("hsfs"))
        .args(args)
        .output()
        .expect("run hsfs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn persistence_same_inodes_contents_root() {
    let mut w = Workspace::new();
    std::fs::create_dir_all(w.path("a/b/c")).unwrap();
    std::fs::write(w.path("a/b/c/file.txt"), b"persistent bytes").unwrap();
    std::fs::write(w.path("big.bin"), vec![42u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("a/b", w.path("link")).unwrap();
    let ino_before = std::fs::metadata(w.path("a/b/c/file.txt")).unwrap().ino();
    let root_before = w.status()["root"].clone();
    let index_before = w.status()["applied_index"].clone();
    w.unmount();
    let report = w.fsck();
    assert_eq!(report["stats"]["root_computed"], root_before);
    w.mount();
    assert_eq!(
        std::fs::metadata(w.path("a/b/c/file.txt")).unwrap().ino(),
        ino_before
    );
    assert_eq!(
        std::fs::read(w.path("a/b/c/file.txt")).unwrap(),
        b"persistent bytes"
    );
    assert_eq!(
        std::fs::read(w.path("big.bin")).unwrap(),
        vec![42u8; 300_000]
    );
    assert_eq!(
        std::fs::read_link(w.path("link")).unwrap().to_str(),
        Some("a/b")
    );
    assert_eq!(w.status()["root"], root_before);
    assert_eq!(w.status()["applied_index"], index_before);
}

#[test]
fn mount_errors_are_clear_and_harmless() {
    let w = Workspace::new();
    let tmp = tempfile::tempdir().unwrap();
    let mp = tmp.path().join("mp");
    // Mount point missing.
    let o = hsfs(&[Path::new("mount"), &w.state, &mp]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    // Mount point not empty.
    std::fs::create_dir(&mp).unwrap();
    std::fs::write(mp.join("x"), b"x").unwrap();
    let o = hsfs(&[Path::new("mount"), &w.state, &mp]);
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    std::fs::remove_file(mp.join("x")).unwrap();
    // State directory in use by the running mount.
    let o = hsfs(&[Path::new("mount"), &w.state, &mp]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("in use by another hsfs process (pid"),
        "{}",
        stderr(&o)
    );
    // Already mounted mount point.
    let other = Workspace::new();
    let o = hsfs(&[Path::new("mount"), &other.state, &w.mnt]);
    assert!(
        stderr(&o).contains("in use") || stderr(&o).contains("already mounted"),
        "{}",
        stderr(&o)
    );
    // State directory missing, not a state dir, unknown format.
    let o = hsfs(&[Path::new("mount"), &tmp.path().join("nope"), &mp]);
    assert!(
        stderr(&o).contains("no such state directory"),
        "{}",
        stderr(&o)
    );
    let o = hsfs(&[Path::new("mount"), tmp.path(), &mp]);
    assert!(
        stderr(&o).contains("not an hsfs state directory"),
        "{}",
        stderr(&o)
    );
    let fake = tmp.path().join("fake");
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(fake.join("FORMAT"), "hsfs-state 99\n").unwrap();
    let o = hsfs(&[Path::new("mount"), &fake, &mp]);
    assert!(
        stderr(&o).contains("unsupported state format"),
        "{}",
        stderr(&o)
    );
    // init refuses a non-empty directory.
    let o = hsfs(&[Path::new("init"), &fake]);
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    // Nothing was damaged: the original mount still works.
    std::fs::write(w.path("still"), b"ok").unwrap();
    assert_eq!(std::fs::read(w.path("still")).unwrap(), b"ok");
    assert!(!is_mounted(&mp));
}

#[test]
fn sigkill_then_recover() {
    let mut w = Workspace::new();
    std::fs::create_dir(w.path("d")).unwrap();
    for i in 0..50 {
        std::fs::write(w.path(&format!("d/f{i}")), format!("content {i}")).unwrap();
    }
    let root = w.status()["root"].clone();
    w.kill9();
    // The dead mount is detected and the fix is named.
    let o = hsfs(&[Path::new("mount"), &w.state, &w.mnt]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("stale FUSE mount") && stderr(&o).contains("fusermount3 -u"),
        "{}",
        stderr(&o)
    );
    run(Command::new("fusermount3").arg("-u").arg(&w.mnt));
    // Everything acknowledged before the kill survived.
    let report = w.fsck();
    assert_eq!(report["stats"]["root_computed"], root);
    w.mount();
    for i in 0..50 {
        assert_eq!(
            std::fs::read_to_string(w.path(&format!("d/f{i}"))).unwrap(),
            format!("content {i}")
        );
    }
}

#[test]
fn read_only_mount() {
    let mut w = Workspace::new();
    std::fs::write(w.path("f"), b"data").unwrap();
    w.unmount();
    let mut ro = Workspace::in_dir(tempfile::tempdir().unwrap(), &["--read-only"]);
    // Reuse the first workspace's state in the read-only mount.
    ro.unmount();
    std::fs::remove_dir_all(&ro.state).unwrap();
    std::fs::rename(&w.state, &ro.state).unwrap();
    ro.mount();
    assert_eq!(std::fs::read(ro.path("f")).unwrap(), b"data");
    let e = std::fs::write(ro.path("g"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(ro.path("f"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    assert_eq!(ro.status()["read_only"], true);
}

#[test]
fn disk_full_fails_with_enospc_and_stays_consistent() {
    // The state directory lives on a small tmpfs of our own.
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=160m", "tmpfs"])
        .arg(small));
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Umount(small.to_path_buf());
    let holder = tempfile::tempdir_in(small).unwrap();
    let mut w = Workspace::in_dir(holder, &["--reserve-mib", "32"]);
    // Distinct content per MiB, so deduplication cannot absorb it.
    let block = |n: usize| -> Vec<u8> {
        (0..1u32 << 20)
            .map(|i| {
                ((i ^ (n as u32).wrapping_mul(0x9e37_79b9)).wrapping_mul(2_654_435_761) >> 13) as u8
            })
            .collect()
    };
    let mut f = std::fs::File::create(w.path("fill")).unwrap();
    // Count what each write(2) reports: a write the kernel splits into
    // several FUSE requests (an unaligned buffer spans one page more than
    // a request holds) can succeed in part before ENOSPC.
    let mut written = 0usize;
    let err = loop {
        use std::io::Write;
        let b = block(written >> 20);
        match f.write(&b[written % (1 << 20)..]) {
            Ok(0) => panic!("write returned 0"),
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(written < 1 << 30, "never ran out of space");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(f);
    // Reads still work, every byte acknowledged is intact, nothing more.
    let data = std::fs::read(w.path("fill")).unwrap();
    assert_eq!(data.len(), written);
    assert!(
        data.chunks(1 << 20)
            .enumerate()
            .all(|(n, c)| c == &block(n)[..c.len()])
    );
    // Small metadata ops may still fit above the reserve; whatever they
    // get, it is success or ENOSPC, never damage.
    if let Err(e) = std::fs::create_dir(w.path("more")) {
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }
    w.unmount();
    w.fsck();
}

#[test]
fn status_and_log() {
    let mut w = Workspace::new();
    std::fs::create_dir(w.path("src")).unwrap();
    std::fs::write(w.path("src/a.rs"), b"fn a() {}").unwrap();
    std::fs::rename(w.path("src/a.rs"), w.path("src/b.rs")).unwrap();
    let s = w.status();
    for k in [
        "workspace",
        "applied_index",
        "root",
        "nodes",
        "mountpoint",
        "read_only",
        "commit",
    ] {
        assert!(s.get(k).is_some(), "status lacks {k}: {s:#}");
    }
    let out = run(Command::new(bin("hsfs"))
        .args(["log", "--tail", "3", "--json"])
        .arg(&w.state));
    let log: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ops: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["create", "write", "rename"]);
    assert_eq!(log[2]["path"], "/src/a.rs -> /src/b.rs");
    assert_eq!(log[2]["index"], s["applied_index"]);
    // Offline, from the store itself.
    w.unmount();
    let out = run(Command::new(bin("hsfs"))
        .args(["log", "--tail", "1"])
        .arg(&w.state));
    assert!(out.contains("rename"), "{out}");
    let out = run(Command::new(bin("hsfs"))
        .args(["status", "--json"])
        .arg(&w.state));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["mounted"], false);
    w.mount();
}

#[test]
fn fsck_exit_codes() {
    let mut w = Workspace::new();
    // Locked by the running mount: unusable input, for a check and for a
    // rebuild alike.
    for rebuild in [false, true] {
        let o = Command::new(bin("hsfs-fsck"))
            .args(rebuild.then_some("--rebuild-merkle"))
            .arg(&w.state)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("in use"), "{}", stderr(&o));
    }
    let o = Command::new(bin("hsfs-fsck"))
        .arg(w.dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    // Unmounted: the rebuild rewrites the branches of the store's root,
    // then the check runs on the result.
    for i in 0..50 {
        std::fs::write(w.path(&format!("f{i}")), format!("file {i}")).unwrap();
    }
    w.unmount();
    let o = Command::new(bin("hsfs-fsck"))
        .args(["--rebuild-merkle", "--json"])
        .arg(&w.state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clean"], true, "{v:#}");
    assert_eq!(v["rebuilt_merkle"]["root"], v["stats"]["root_computed"]);
    assert!(v["rebuilt_merkle"]["records"].as_u64() > Some(100), "{v:#}");
}

#[test]
fn env_prints_scratch_exports() {
    let d = tempfile::tempdir().unwrap();
    let out = run(Command::new(bin("hsfs"))
        .arg("env")
        .arg("--scratch")
        .arg(d.path()));
    for var in [
        "XDG_CACHE_HOME",
        "CARGO_TARGET_DIR",
        "GOCACHE",
        "npm_config_cache",
        "PIP_CACHE_DIR",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("export {var}=")))
            .unwrap_or_else(|| panic!("{var} missing"));
        assert!(line.contains(&d.path().display().to_string()), "{line}");
    }
}

#[test]
fn a_cached_listing_goes_on_after_the_kernel_drops_its_pages() {
    // The kernel fills a directory's listing cache through one handle and
    // serves a later one from it; `rm -rf` unlinks what it read, and when
    // the cache loses its pages (here: drop_caches) the kernel asks the
    // later handle to go on from a cookie the first one gave out, of an
    // entry deleted since. That used to fail with EINVAL.
    let w = Workspace::new();
    let d = w.path("many");
    std::fs::create_dir(&d).unwrap();
    for i in 0..3000 {
        std::fs::File::create(d.join(format!("f{i:05}"))).unwrap();
    }
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 3000);
    let mut removed = 0;
    for e in std::fs::read_dir(&d).unwrap() {
        let e = e.expect("readdir while deleting");
        std::fs::remove_file(e.path()).unwrap();
        removed += 1;
        if removed == 1000 {
            std::fs::write("/proc/sys/vm/drop_caches", "1").unwrap();
        }
    }
    assert_eq!(removed, 3000, "every entry listed exactly once");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    std::fs::remove_dir(&d).unwrap();
}
