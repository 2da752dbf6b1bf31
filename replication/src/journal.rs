//! A worker's journal of intents sent but not answered, so a restarted
//! worker can tell what happened to the mutations in flight when its
//! previous process died: it asks the leader (`IntentStatus`) and reports
//! each as committed or not. Dedupe at the leader guarantees none commits
//! twice; the journal only recovers the knowledge.
//!
//! Format: text lines `sent <client hex> <seq> <op>` and `done <client hex>
//! <seq>`; the file is emptied whenever nothing is in flight.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use hsfs_engine::{ClientId, IntentId};
use parking_lot::Mutex;

/// The journal file of a worker.
pub struct Journal {
    path: PathBuf,
    state: Mutex<(std::fs::File, BTreeMap<IntentId, String>)>,
}

fn parse_id(client: &str, seq: &str) -> Option<IntentId> {
    let c = <[u8; 16]>::try_from(hex::decode(client).ok()?).ok()?;
    Some(IntentId {
        client: ClientId(c),
        seq: seq.parse().ok()?,
    })
}

impl Journal {
    /// Opens `path`, returning the intents the previous process left
    /// unanswered (with their op names); the file starts empty.
    pub fn open(path: &Path) -> std::io::Result<(Journal, Vec<(IntentId, String)>)> {
        let mut open = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let f: Vec<&str> = line.split(' ').collect();
                match f.as_slice() {
                    ["sent", c, s, op] => {
                        if let Some(id) = parse_id(c, s) {
                            open.insert(id, (*op).to_string());
                        }
                    }
                    ["done", c, s] => {
                        if let Some(id) = parse_id(c, s) {
                            open.remove(&id);
                        }
                    }
                    // A torn last line of a killed process.
                    _ => {}
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok((
            Journal {
                path: path.to_path_buf(),
                state: Mutex::new((file, BTreeMap::new())),
            },
            open.into_iter().collect(),
        ))
    }

    /// Records an intent about to be sent.
    pub fn sent(&self, id: IntentId, op: &str) {
        let mut g = self.state.lock();
        let _ = writeln!(g.0, "sent {} {} {op}", hex::encode(id.client.0), id.seq);
        g.1.insert(id, op.to_string());
    }

    /// Records an intent answered (or given up).
    pub fn done(&self, id: IntentId) {
        let mut g = self.state.lock();
        if g.1.remove(&id).is_none() {
            return;
        }
        if g.1.is_empty() {
            // Nothing in flight: start over so the file stays small.
            let _ = g.0.set_len(0);
            use std::io::Seek;
            let _ = g.0.seek(std::io::SeekFrom::Start(0));
        } else {
            let _ = writeln!(g.0, "done {} {}", hex::encode(id.client.0), id.seq);
        }
    }

    /// The journal's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unanswered_intents_survive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("intents.log");
        let id = |s| IntentId {
            client: ClientId([7; 16]),
            seq: s,
        };
        {
            let (j, left) = Journal::open(&p).unwrap();
            assert!(left.is_empty());
            j.sent(id(1), "write");
            j.sent(id(2), "mkdir");
            j.done(id(1));
            // Process "dies" here.
        }
        let (j, left) = Journal::open(&p).unwrap();
        assert_eq!(left, vec![(id(2), "mkdir".to_string())]);
        j.sent(id(3), "create");
        j.done(id(3));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    }
}
