//! Status and log reports, as JSON values (for `--json` and the control
//! socket) and as text.

use hsfs_engine::op::{LogEntry, Op};
use hsfs_engine::{Engine, Ino};
use serde_json::{Value, json};

/// UTC time of a nanosecond timestamp, RFC 3339 with nanoseconds.
#[must_use]
pub fn fmt_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

fn path_of(engine: &Engine, ino: Ino) -> String {
    match engine.path_of(ino) {
        Ok(Some(p)) => String::from_utf8_lossy(&p).into_owned(),
        Ok(None) => format!("<unlinked inode {ino}>"),
        Err(_) => format!("<inode {ino}>"),
    }
}

fn join(engine: &Engine, parent: Ino, name: &[u8]) -> String {
    let mut p = path_of(engine, parent);
    if !p.ends_with('/') {
        p.push('/');
    }
    p.push_str(&String::from_utf8_lossy(name));
    p
}

/// The path an entry's op touched, resolved against the current tree (a
/// later rename shows the new name).
#[must_use]
pub fn op_path(engine: &Engine, op: &Op) -> String {
    match op {
        Op::Genesis { .. } => "/".into(),
        Op::Create { parent, name, .. }
        | Op::Mkdir { parent, name, .. }
        | Op::Symlink { parent, name, .. }
        | Op::Unlink { parent, name, .. }
        | Op::Rmdir { parent, name } => join(engine, *parent, name),
        Op::Link { parent, name, .. } => join(engine, *parent, name),
        Op::Rename {
            parent,
            name,
            new_parent,
            new_name,
            ..
        } => format!(
            "{} -> {}",
            join(engine, *parent, name),
            join(engine, *new_parent, new_name)
        ),
        Op::Write { ino, .. }
        | Op::SetAttr { ino, .. }
        | Op::SetXattr { ino, .. }
        | Op::RemoveXattr { ino, .. }
        | Op::Fsync { ino }
        | Op::Reclaim { ino } => path_of(engine, *ino),
    }
}

/// One log entry as JSON.
#[must_use]
pub fn entry_json(engine: &Engine, e: &LogEntry) -> Value {
    json!({
        "index": e.index,
        "intent": format!("{}:{}", hex::encode(e.intent.client.0), e.intent.seq),
        "time": fmt_time(e.committed_at),
        "committed_at": e.committed_at,
        "worker": e.origin.worker,
        "agent": e.origin.agent,
        "op": e.op.name(),
        "path": op_path(engine, &e.op),
        "root": hex::encode(e.root),
        "hazard": e.hazard.map(|h| format!("{:?}@{}", h.kind, h.conflicting_index)),
    })
}

/// The last `tail` log entries as JSON.
pub fn log_json(engine: &Engine, tail: u64) -> anyhow::Result<Vec<Value>> {
    let last = engine.applied_index();
    let from = last.saturating_sub(tail.saturating_sub(1)).max(1);
    Ok(engine
        .log_range(from, last)?
        .iter()
        .map(|e| entry_json(engine, e))
        .collect())
}

/// Status figures of an engine.
#[must_use]
pub fn engine_status(engine: &Engine) -> Value {
    let m = engine.status().meta;
    json!({
        "workspace": engine.workspace().to_string(),
        "applied_index": m.applied,
        "commit_index": m.applied,
        "root": hex::encode(m.root),
        "last_committed_at": fmt_time(m.last_time),
        "nodes": m.nodes,
        "logical_bytes": m.bytes,
        "store_bytes": engine.backend().disk_space(),
        "poisoned": engine.is_poisoned(),
    })
}

/// Prints a status value as aligned text.
pub fn print_status(v: &Value) {
    if let Value::Object(m) = v {
        for (k, v) in m {
            match v {
                Value::Object(_) => {
                    println!("{k}:");
                    if let Value::Object(inner) = v {
                        for (k2, v2) in inner {
                            println!("  {k2:<20} {}", plain(v2));
                        }
                    }
                }
                _ => println!("{k:<22} {}", plain(v)),
            }
        }
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Prints log entries as a table.
pub fn print_log(entries: &[Value]) {
    println!(
        "{:>8}  {:<30}  {:<16}  {:<11}  {:<16}  path",
        "index", "time", "agent", "op", "root"
    );
    for e in entries {
        let s = |k: &str| e.get(k).map(plain).unwrap_or_default();
        let agent = match (s("agent").as_str(), s("worker").as_str()) {
            ("", w) => w.to_string(),
            (a, _) => a.to_string(),
        };
        let root = s("root");
        println!(
            "{:>8}  {:<30}  {:<16}  {:<11}  {:<16}  {}",
            s("index"),
            s("time"),
            agent,
            s("op"),
            &root[..16.min(root.len())],
            s("path")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            fmt_time(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(fmt_time(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            fmt_time(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
