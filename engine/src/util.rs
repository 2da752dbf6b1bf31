//! Small OS helpers.

use std::path::Path;

/// Bytes available to unprivileged users on the filesystem holding `path`.
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized
    // out-parameter that statvfs fully initializes on success.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Starts writing `f`'s dirty pages to the disk without waiting for the
/// writes to complete (`sync_file_range(SYNC_FILE_RANGE_WRITE)`; it may
/// block while the device's queue is full). Advisory: durability still
/// takes a sync, and this call leaves the file's write-error state for that
/// sync to report, so errors here are ignored.
pub fn start_writeback(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is borrowed from `f`, open for the whole call;
    // the call takes no pointers.
    let _ = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Fills an array from the OS random source.
///
/// # Panics
/// If `getrandom(2)` fails (no entropy source at all).
#[must_use]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: writes at most N - filled bytes into the buffer tail.
        let r = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                e.kind() == std::io::ErrorKind::Interrupted,
                "getrandom failed: {e}"
            );
            continue;
        }
        filled += r as usize;
    }
    b
}

/// Wall-clock time in nanoseconds since the epoch.
#[must_use]
pub fn now_nanos() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}
