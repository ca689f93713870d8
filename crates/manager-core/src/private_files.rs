//! Files only PiCloud's own user may read: the data dir is created 0700, the SQLite
//! database (with its `-wal` and `-shm` files) and the master key file 0600. They hold
//! every event and the sealed secrets; other local users have no business reading them.
//! Such files found readable by others are tightened at start.

use std::path::{Path, PathBuf};

/// Creates `dir` (and missing parents) with mode 0700. An existing folder is left as it
/// is: it may be shared (a database file straight in `/var/lib`, say).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes sure the SQLite database at `path` is private before it is opened: a missing
/// file is created empty with mode 0600 (SQLite gives its `-wal` and `-shm` files the
/// database file's mode), and an existing database, `-wal` or `-shm` file readable by
/// others is tightened to 0600, with a warning saying so.
pub fn prepare_sqlite_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    drop(options.open(path)?);
    for file in [
        path.to_owned(),
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
    ] {
        restrict_to_owner(&file)?;
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Clears the group and other permission bits of `file`, if it exists and has any, and
/// logs that it did.
#[cfg(unix)]
pub fn restrict_to_owner(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match std::fs::metadata(file) {
        Ok(metadata) => metadata.permissions().mode() & 0o777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if mode & 0o077 != 0 {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode & 0o700))?;
        tracing::warn!(
            file = %file.display(),
            was = %format!("{mode:04o}"),
            now = %format!("{:04o}", mode & 0o700),
            "tightened the permissions of a file other users could read"
        );
    }
    Ok(())
}

/// Nothing to do where there are no Unix permission bits.
#[cfg(not(unix))]
pub fn restrict_to_owner(_file: &Path) -> std::io::Result<()> {
    Ok(())
}
