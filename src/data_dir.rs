//! The data folder holds the keyring, the database, encrypted images, backups and mail: all
//! of it for this service's user alone. At start the process umask becomes 077, so whatever
//! it (or SQLite, or object_store) creates is 0600 / 0700 whatever the shell's umask was, and
//! permissions an older version or an operator left looser are tightened, each one logged.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode bits for anyone but the owner.
const OTHERS: u32 = 0o077;

/// Makes every file this process creates from now on private to its user.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(OTHERS));
}

/// What [`prepare`] changed, for the start-up log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tightened {
    pub paths: Vec<PathBuf>,
}

/// Creates the data folder (0700) if missing and tightens what is there: the folder and every
/// folder below it to 0700, and the files directly in it (keyring, SQLite database and its
/// WAL and shared-memory files) to 0600. Files deeper down (images, backups, mail) sit behind
/// folders only this user can enter, so their own mode does not open them to anyone.
pub fn prepare(data_dir: &Path, extra_files: &[PathBuf]) -> io::Result<Tightened> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)?;
    let mut tightened = Tightened::default();
    tighten_folders(data_dir, &mut tightened)?;
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            tighten(&entry.path(), 0o600, &mut tightened)?;
        }
    }
    for file in extra_files {
        if file.is_file() {
            tighten(file, 0o600, &mut tightened)?;
        }
    }
    for path in &tightened.paths {
        tracing::warn!(path = %path.display(), "permissions were open to other users; tightened");
    }
    Ok(tightened)
}

/// The SQLite database file and its companions, for a `sqlite:` URL outside the data folder.
pub fn sqlite_files(database_url: &str) -> Vec<PathBuf> {
    let Some(path) = crate::db::sqlite_path(database_url) else {
        return Vec::new();
    };
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{path}{suffix}")))
        .collect()
}

fn tighten_folders(dir: &Path, tightened: &mut Tightened) -> io::Result<()> {
    tighten(dir, 0o700, tightened)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // Symbolic links are not followed: the folder tree is ours, what it points at is not.
        if entry.file_type()?.is_dir() {
            tighten_folders(&entry.path(), tightened)?;
        }
    }
    Ok(())
}

fn tighten(path: &Path, mode: u32, tightened: &mut Tightened) -> io::Result<()> {
    let current = fs::symlink_metadata(path)?.permissions().mode();
    if current & OTHERS != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        tightened.paths.push(path.to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn loose_folders_and_top_level_files_are_tightened_and_reported() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        fs::create_dir_all(data.join("blobs/customer")).unwrap();
        fs::write(data.join("trustplane.db"), b"").unwrap();
        fs::write(data.join("blobs/customer/image"), b"").unwrap();
        for path in [&data, &data.join("blobs"), &data.join("blobs/customer")] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::set_permissions(
            data.join("trustplane.db"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();

        let tightened = prepare(&data, &[]).unwrap();

        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("blobs")), 0o700);
        assert_eq!(mode(&data.join("blobs/customer")), 0o700);
        assert_eq!(mode(&data.join("trustplane.db")), 0o600);
        assert_eq!(tightened.paths.len(), 4);
        assert_eq!(prepare(&data, &[]).unwrap(), Tightened::default());
    }

    #[test]
    fn a_missing_data_folder_is_created_private() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("new/data");
        prepare(&data, &[]).unwrap();
        assert_eq!(mode(&data), 0o700);
    }

    #[test]
    fn a_database_outside_the_folder_is_tightened_with_its_wal() {
        let root = tempfile::tempdir().unwrap();
        let db = root.path().join("elsewhere.db");
        fs::write(&db, b"").unwrap();
        fs::write(root.path().join("elsewhere.db-wal"), b"").unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o664)).unwrap();
        let url = format!("sqlite://{}?mode=rwc", db.display());
        prepare(&root.path().join("data"), &sqlite_files(&url)).unwrap();
        assert_eq!(mode(&db), 0o600);
    }
}
