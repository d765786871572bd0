//! Reading an input file (configuration, drop-ins, the token, the
//! kubeconfig, a CA bundle, a client certificate or key) the one safe way:
//! opened without blocking, checked on the opened descriptor to be a regular
//! file, and read up to a hard cap. A FIFO would block the runtime thread in
//! `open` (neither the deadline nor SIGTERM would work any more), and a
//! character device such as /dev/zero reports size 0 and never ends.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;
use zeroize::Zeroizing;

use crate::exit::Exit;
use crate::memory::locked::LockedBuf;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    #[error("does not exist")]
    Missing,
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is larger than {0} bytes")]
    TooLarge(usize),
    #[error("cannot be read: {0}")]
    Io(#[from] std::io::Error),
}

/// The file's bytes (zeroized when dropped: some inputs hold secrets) and
/// its metadata as seen on the opened descriptor.
pub(crate) fn read(path: &Path, cap: usize) -> Result<(Zeroizing<Vec<u8>>, Metadata), FileError> {
    read_with(path, cap, true)
}

/// Like [`read`], refusing a symbolic link rather than following it: for
/// files whose owner and mode decide whether the agent acts on them.
pub(crate) fn read_nofollow(
    path: &Path,
    cap: usize,
) -> Result<(Zeroizing<Vec<u8>>, Metadata), FileError> {
    read_with(path, cap, false)
}

fn read_with(
    path: &Path,
    cap: usize,
    follow: bool,
) -> Result<(Zeroizing<Vec<u8>>, Metadata), FileError> {
    let (mut file, meta) = open_regular(path, cap, follow)?;
    // Room for the whole file up front: no reallocation leaves a copy of a
    // secret behind, and no small probe read goes through a stack buffer.
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 64));
    (&mut file).take(cap as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > cap {
        return Err(FileError::TooLarge(cap));
    }
    Ok((bytes, meta))
}

/// Like [`read`], straight into locked memory, for a file that holds
/// nothing but secrets (a bootstrap Secret manifest). A symbolic link is
/// refused rather than followed: the file is overwritten once applied.
pub(crate) fn read_locked(path: &Path, cap: usize) -> Result<(LockedBuf, Metadata), FileError> {
    let (mut file, meta) = open_regular(path, cap, false)?;
    let len = meta.len() as usize;
    let mut buf = LockedBuf::with_capacity(len + 1)
        .map_err(|e| FileError::Io(std::io::Error::other(format!("{e:#}"))))?;
    let mut got = 0;
    buf.append_with(len, |dst| {
        while got < dst.len() {
            match file.read(&mut dst[got..])? {
                0 => break,
                n => got += n,
            }
        }
        Ok(())
    })
    .map_err(|e| FileError::Io(std::io::Error::other(format!("{e:#}"))))?;
    if got != len {
        return Err(FileError::Io(std::io::Error::other(
            "it changed size while being read",
        )));
    }
    Ok((buf, meta))
}

/// How a refusal to read an input file ends the run: a file cloud-init
/// should have written otherwise (missing, not a regular file) is
/// configuration (78); one it wrote that cannot be used is data (65).
pub(crate) fn refusal_exit(e: &FileError) -> Exit {
    match e {
        FileError::NotRegular(_) | FileError::Missing => Exit::Config,
        _ => Exit::Data,
    }
}

/// A file the agent acts on as root must be root's, or the agent's own
/// user's (tests run unprivileged); the owner's uid otherwise.
pub(crate) fn foreign_owner(meta: &Metadata) -> Option<u32> {
    let euid = nix::unistd::geteuid().as_raw();
    (meta.uid() != 0 && meta.uid() != euid).then_some(meta.uid())
}

/// Where a YAML parser failed, never what it quoted (the file may hold a
/// secret): ` (line L, column C)`, or nothing.
pub(crate) fn yaml_location(e: &serde_saphyr::Error) -> String {
    e.without_snippet()
        .location()
        .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
        .unwrap_or_default()
}

/// The names of the `*.yaml` files in `dir` (not hidden ones), sorted; a
/// missing directory has none.
pub(crate) fn yaml_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if let Some(name) = name.to_str()
            && name.ends_with(".yaml")
            && !name.starts_with('.')
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Opened without blocking (and, unless `follow`, without following a
/// final symbolic link), and checked on the descriptor to be a regular file within `cap`.
fn open_regular(path: &Path, cap: usize, follow: bool) -> Result<(File, Metadata), FileError> {
    let file = open(path, follow)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = what {
        return Err(FileError::NotRegular(what));
    }
    if meta.len() > cap as u64 {
        return Err(FileError::TooLarge(cap));
    }
    Ok((file, meta))
}

fn open(path: &Path, follow: bool) -> Result<File, FileError> {
    let mut flags = OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => FileError::Missing,
            _ if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                FileError::NotRegular("a symbolic link")
            }
            _ => FileError::Io(e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(&read(&path, 5).unwrap().0[..], b"hello");
        assert!(matches!(read(&path, 4), Err(FileError::TooLarge(4))));
        assert!(matches!(
            read(&dir.path().join("none"), 4),
            Err(FileError::Missing)
        ));
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Without O_NONBLOCK this open would wait for a writer forever.
        let err = read(&fifo, 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "is a FIFO (named pipe), not a regular file"
        );
        let err = read(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(err.to_string(), "is a character device, not a regular file");
        let err = read(dir.path(), 1024).unwrap_err();
        assert_eq!(err.to_string(), "is a directory, not a regular file");
    }
}
