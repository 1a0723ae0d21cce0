//! The monitored process tree: which processes descend from the ones netmon watches, so that
//! programs the interceptor cannot enter (static binaries, setuid programs) are still found.
//! Children come from `/proc/<pid>/task/<tid>/children`; on a kernel built without
//! `CONFIG_PROC_CHILDREN`, from the parent pid in every process's `/proc/<pid>/stat`.

use crate::ParseStats;
use crate::fields::{dec_u32, lines, tokens};
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Parses a `children` file (pids separated by spaces) into `out` (appended).
pub fn parse_children(text: &[u8], out: &mut Vec<u32>) -> ParseStats {
    let mut stats = ParseStats::default();
    for line in lines(text) {
        for t in tokens(line) {
            match dec_u32(t).filter(|p| *p > 0) {
                Some(p) => {
                    out.push(p);
                    stats.parsed += 1;
                }
                None => stats.skipped += 1,
            }
        }
    }
    stats
}

/// The parent pid from the text of `/proc/<pid>/stat`: `pid (comm) state ppid ...`, where
/// `comm` may itself contain spaces and parentheses (so it is found from the last `)`).
pub fn parse_stat_ppid(text: &[u8]) -> Option<u32> {
    let close = text.iter().rposition(|b| *b == b')')?;
    let mut t = tokens(&text[close + 1..]);
    let _state = t.next()?;
    dec_u32(t.next()?)
}

/// Reads the children of every thread of `pid`; `Ok(false)` if the kernel has no
/// `children` files.
fn read_children(root: &Path, pid: u32, out: &mut Vec<u32>, buf: &mut Vec<u8>) -> io::Result<bool> {
    let task = root.join(pid.to_string()).join("task");
    for entry in std::fs::read_dir(&task)? {
        let entry = entry?;
        if dec_u32(entry.file_name().as_bytes()).is_none() {
            continue;
        }
        buf.clear();
        match std::fs::File::open(entry.path().join("children")) {
            Ok(mut f) => {
                io::Read::read_to_end(&mut f, buf)?;
                parse_children(buf, out);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The thread exited, or the kernel lacks the file: tell them apart by the
                // main thread, which lives as long as the process.
                if entry.file_name().as_bytes() == pid.to_string().as_bytes() {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Parent pid of every process under `root`.
fn parent_map(root: &Path, buf: &mut Vec<u8>) -> io::Result<HashMap<u32, Vec<u32>>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let Some(pid) = dec_u32(entry.file_name().as_bytes()) else {
            continue;
        };
        buf.clear();
        let Ok(mut f) = std::fs::File::open(entry.path().join("stat")) else {
            continue; // exited meanwhile
        };
        if io::Read::read_to_end(&mut f, buf).is_err() {
            continue;
        }
        if let Some(ppid) = parse_stat_ppid(buf) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    Ok(children)
}

/// Adds to `pids` every living descendant of its members, and returns how many were added.
/// A member that has exited is kept (its sockets may still be reported for a while) but has
/// no children to add.
pub fn add_descendants(root: &Path, pids: &mut BTreeSet<u32>) -> usize {
    let before = pids.len();
    let mut buf = Vec::new();
    let mut queue: Vec<u32> = pids.iter().copied().collect();
    let mut found = Vec::new();
    let mut fallback: Option<HashMap<u32, Vec<u32>>> = None;
    while let Some(pid) = queue.pop() {
        found.clear();
        let supported = match &fallback {
            Some(_) => false,
            None => read_children(root, pid, &mut found, &mut buf).unwrap_or(true),
        };
        if !supported {
            if fallback.is_none() {
                fallback = Some(parent_map(root, &mut buf).unwrap_or_default());
            }
            if let Some(map) = &fallback {
                found.extend(map.get(&pid).into_iter().flatten());
            }
        }
        for &child in &found {
            if pids.insert(child) {
                queue.push(child);
            }
        }
    }
    pids.len() - before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_lists() {
        let mut out = Vec::new();
        let s = parse_children(b"12 345 x 0 ", &mut out);
        assert_eq!(out, [12, 345]);
        assert_eq!((s.parsed, s.skipped), (2, 2));
    }

    #[test]
    fn stat_parent_pid() {
        assert_eq!(parse_stat_ppid(b"42 (a) b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid(b"42 (python3) R 1 2 3"), Some(1));
        assert_eq!(parse_stat_ppid(b"42 (x"), None);
        assert_eq!(parse_stat_ppid(b"42 (x) S"), None);
    }

    #[test]
    fn finds_a_real_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let mut pids = BTreeSet::from([std::process::id()]);
        add_descendants(Path::new("/proc"), &mut pids);
        let found = pids.contains(&child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "{pids:?}");
    }
}
