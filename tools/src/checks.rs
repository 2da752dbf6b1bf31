//! Preconditions of `hsfs mount`, each failing with a message that says
//! what is wrong and what to do.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Whether the current process runs as root.
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A program on PATH.
#[must_use]
pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The kernel side: /dev/fuse usable; fusermount3 when not root.
pub fn fuse_available() -> Result<()> {
    let dev = Path::new("/dev/fuse");
    if !dev.exists() {
        bail!(
            "/dev/fuse does not exist: load the fuse kernel module (modprobe fuse) or run where FUSE is available"
        );
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .with_context(
            || "cannot open /dev/fuse (permission denied? run as root or join the fuse group)",
        )?;
    if !is_root() && which("fusermount3").is_none() && which("fusermount").is_none() {
        bail!(
            "fusermount3 not found: install the fuse3 package (apt-get install fuse3) or mount as root"
        );
    }
    Ok(())
}

/// Whether `path` is a mount point, from /proc/self/mountinfo.
pub fn is_mount_point(path: &Path) -> Result<bool> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let want = path.to_string_lossy();
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mount(mp) == want))
}

/// /proc/*/mountinfo escapes space, tab, newline and backslash as octal.
#[must_use]
pub fn unescape_mount(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(v as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The mount point: an existing, empty directory that nothing is mounted
/// on. A dead FUSE server leaves a mount that fails with ENOTCONN: that is
/// reported with the command that clears it.
pub fn mountpoint_usable(mp: &Path) -> Result<()> {
    match std::fs::metadata(mp) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => bail!(
            "{}: stale FUSE mount (its hsfs process died); clear it with `fusermount3 -u {0}` (or `umount -l {0}` as root), then mount again",
            mp.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "{}: mount point does not exist (create it with mkdir)",
                mp.display()
            )
        }
        Err(e) => bail!("{}: {e}", mp.display()),
        Ok(m) if !m.is_dir() => bail!("{}: mount point is not a directory", mp.display()),
        Ok(_) => {
            if is_mount_point(mp)? {
                bail!(
                    "{}: something is already mounted there (unmount it first)",
                    mp.display()
                );
            }
            if std::fs::read_dir(mp)?.next().is_some() {
                bail!("{}: mount point is not empty", mp.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn mountpoint_errors() {
        let d = tempfile::tempdir().unwrap();
        assert!(mountpoint_usable(d.path()).is_ok());
        let msg = mountpoint_usable(&d.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("does not exist"), "{msg}");
        std::fs::write(d.path().join("f"), b"x").unwrap();
        let msg = mountpoint_usable(d.path()).unwrap_err().to_string();
        assert!(msg.contains("not empty"), "{msg}");
        let msg = mountpoint_usable(&d.path().join("f"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not a directory"), "{msg}");
        assert!(is_mount_point(Path::new("/")).unwrap());
    }
}
