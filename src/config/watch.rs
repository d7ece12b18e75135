//! Reload on file change: watch the config file's directory, debounce, skip no-op changes.
//!
//! The directory is watched rather than the file because editors and Kubernetes ConfigMaps replace
//! files (write-then-rename, or an atomic swap of the `..data` symlink) instead of writing in place:
//! a watch on the old inode would go quiet after the first change.
//!
//! Only changes count: an open, read or close of a file (an access event) changes nothing, and
//! the watcher's own read of the config file is one. Counting those made every check trigger the
//! next one, so the file was read every `debounce` forever.

use std::path::PathBuf;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::task::JoinHandle;

use crate::gateway::RunningGateway;

/// Why the file watcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {dir}")]
pub struct WatchError {
    /// The directory that could not be watched.
    pub dir: String,
    /// The watcher's error.
    #[source]
    pub source: notify::Error,
}

/// Starts watching; the task ends when the gateway shuts down.
pub fn spawn(
    path: PathBuf,
    debounce: Duration,
    gateway: RunningGateway,
) -> Result<JoinHandle<()>, WatchError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (events, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| is_change(&event.kind)) {
            let _ = events.send(());
        }
    })
    .map_err(|source| WatchError {
        dir: dir.display().to_string(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError {
            dir: dir.display().to_string(),
            source,
        })?;
    let mut stop = gateway.background_stop();
    let mut last_content = std::fs::read(&path).ok();
    Ok(tokio::spawn(async move {
        // Dropping the watcher stops the notifications, so it lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                change = changes.recv() => if change.is_none() { return },
                _ = stop.changed() => return,
            }
            // Debounce: wait until the directory has been quiet for `debounce`.
            loop {
                match tokio::time::timeout(debounce, changes.recv()).await {
                    Ok(Some(())) => {}
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
            let content = std::fs::read(&path).ok();
            if content.is_none() || content == last_content {
                continue;
            }
            last_content = content;
            // Errors are recorded in the reload status and logged by `reload` itself.
            let _ = gateway.reload().await;
        }
    }))
}

/// Whether an event may have changed what the config path reads as. Access events (open, read,
/// close without writing) never do; anything else (create, write, the close after a write,
/// rename, remove, attributes, and kinds notify cannot tell) is checked.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};

    use super::is_change;

    #[test]
    fn access_events_are_not_changes() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
        ] {
            assert!(!is_change(&kind), "{kind:?}");
        }
    }

    #[test]
    fn writes_renames_and_removals_are_changes() {
        for kind in [
            // An editor's write in place, and the close after it.
            EventKind::Modify(ModifyKind::Any),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            // Write-then-rename, and a ConfigMap's symlink swap.
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ] {
            assert!(is_change(&kind), "{kind:?}");
        }
    }
}
