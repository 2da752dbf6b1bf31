//! The control socket of a running mount (`STATE_DIR/control.sock`): one
//! JSON request line in, one JSON reply line out. `hsfs status` and
//! `hsfs log` use it while the store is locked by the mount.
//!
//! Requests: `{"cmd":"status"}`, `{"cmd":"log","tail":N}`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

/// Answers control requests.
pub trait Handler: Send + Sync + 'static {
    /// The status object.
    fn status(&self) -> Value;
    /// The last `tail` log entries.
    fn log(&self, tail: u64) -> Result<Value>;
}

/// Socket path of a state directory.
#[must_use]
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// A running control server; stops when dropped.
pub struct Server {
    path: PathBuf,
    /// The listening socket (a second handle of the accept loop's), shut
    /// down on drop to wake the loop.
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `handler` on the state directory's socket. The caller holds
    /// the state directory lock, so an existing socket file is stale.
    pub fn start(state_dir: &Path, handler: Arc<dyn Handler>) -> Result<Server> {
        let path = socket_path(state_dir);
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        let wake = listener
            .try_clone()
            .context("duplicating the control socket")?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hsfs-control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(c) = conn {
                        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                        if let Err(e) = serve_one(c, &*handler) {
                            tracing::debug!(error = %e, "control request failed");
                        }
                    }
                }
            })?;
        Ok(Server {
            path,
            listener: wake,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop: shutting a listening socket down makes a
        // blocked accept(2) return on Linux. (Connecting to the socket's
        // path would not do when the path is gone, e.g. the state
        // directory was removed under a running process.)
        // SAFETY: shutdown(2) on a socket descriptor this struct owns.
        if unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) } != 0 {
            // The loop cannot be woken: leave it blocked in accept (it ends
            // with the process) rather than hang here.
            let e = std::io::Error::last_os_error();
            tracing::warn!(error = %e, "cannot stop the control socket's accept loop");
            self.thread = None;
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the control socket's thread panicked");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one(conn: UnixStream, h: &dyn Handler) -> Result<()> {
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let reply = match req.get("cmd").and_then(Value::as_str) {
        Some("status") => h.status(),
        Some("log") => {
            let tail = req.get("tail").and_then(Value::as_u64).unwrap_or(20);
            h.log(tail)
                .unwrap_or_else(|e| json!({"error": e.to_string()}))
        }
        _ => json!({"error": "unknown request"}),
    };
    let mut w = &conn;
    writeln!(w, "{reply}")?;
    Ok(())
}

/// Sends one request to the mount serving `state_dir`. `Ok(None)` when no
/// mount is serving it.
pub fn request(state_dir: &Path, req: &Value) -> Result<Option<Value>> {
    let path = socket_path(state_dir);
    let conn = match UnixStream::connect(&path) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(anyhow!("{}: {e}", path.display())),
    };
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = &conn;
    writeln!(w, "{req}")?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let v: Value =
        serde_json::from_str(&line).context("bad reply from the mount's control socket")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(anyhow!("mount reported: {e}"));
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    impl Handler for Nothing {
        fn status(&self) -> Value {
            json!({"ok": true})
        }
        fn log(&self, _tail: u64) -> Result<Value> {
            Ok(json!([]))
        }
    }

    /// Dropping the server returns even when its socket file is gone (the
    /// state directory removed under a running process), and a request
    /// served before still gets its answer.
    #[test]
    fn stops_without_its_socket_file() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), Arc::new(Nothing)).unwrap();
        let mut c = UnixStream::connect(socket_path(dir.path())).unwrap();
        writeln!(c, r#"{{"cmd":"status"}}"#).unwrap();
        let mut line = String::new();
        BufReader::new(&c).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), r#"{"ok":true}"#);
        std::fs::remove_file(socket_path(dir.path())).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            drop(server);
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the control server did not stop");
    }
}
