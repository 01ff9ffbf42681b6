//! Files and folders that hold what only this user may see or change (the state folder, the
//! secret key, the CLI's token, the compile cache's native code): a leaf, imported by the
//! modules that keep them and importing nothing of the host's.

/// Refuses `path`, a file or folder that holds a secret, when another user of the machine
/// could change it: owned by someone other than this user (or root), or writable by its
/// group or by others (a sticky folder excepted).
pub fn check_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let refuse = |why: String| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} {why}; another user of this machine could change it",
                path.display()
            ),
        ))
    };
    if meta.uid() != me && meta.uid() != 0 {
        return refuse(format!(
            "belongs to user {}, not to this one ({me})",
            meta.uid()
        ));
    }
    // A sticky folder (such as /tmp) lets others add files but not replace or remove ours;
    // what is read from it is checked as a file of its own.
    let sticky = meta.is_dir() && meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        return refuse(format!(
            "is writable by its group or by others (mode {:o}; chmod go-w it)",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}
