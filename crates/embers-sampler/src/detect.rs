//! Which interpreter a process runs, from `/proc/PID/exe` and the libraries it maps.

use std::path::Path;

use crate::Error;

/// An interpreter Embers can sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpreter {
    /// CPython.
    Python,
    /// CRuby.
    Ruby,
}

/// Detects the interpreter of `pid`. A process that is neither (yet) is
/// [`Error::NotPythonOrRuby`]; callers launching a program through a wrapper script retry.
pub fn detect(pid: u32) -> Result<Interpreter, Error> {
    let proc = format!("/proc/{pid}");
    if !Path::new(&proc).exists() {
        return Err(Error::NoSuchProcess(pid));
    }
    let exe = std::fs::read_link(format!("{proc}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                pid,
                detail: format!("reading {proc}/exe: {e}"),
            },
            std::io::ErrorKind::NotFound => Error::NoSuchProcess(pid),
            _ => Error::Backend {
                pid,
                detail: format!("reading {proc}/exe: {e}"),
            },
        })?;
    if let Some(found) = from_exe_name(&exe) {
        return Ok(found);
    }
    // Embedded interpreters (uWSGI, Passenger, a C program linking libpython).
    let maps = std::fs::read_to_string(format!("{proc}/maps")).unwrap_or_default();
    from_maps(&maps).ok_or(Error::NotPythonOrRuby { pid, exe })
}

/// Whether `pid` is still running. A process that exited but was not yet reaped by its
/// parent (a zombie) still has a `/proc` entry, but no memory left to read.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain any
        // character: take what follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn from_exe_name(exe: &str) -> Option<Interpreter> {
    let name = exe
        .rsplit('/')
        .next()
        .unwrap_or(exe)
        .trim_end_matches(" (deleted)");
    if name.starts_with("python") || name.starts_with("pypy") {
        Some(Interpreter::Python)
    } else if name.starts_with("ruby") {
        Some(Interpreter::Ruby)
    } else {
        None
    }
}

fn from_maps(maps: &str) -> Option<Interpreter> {
    maps.lines().find_map(|line| {
        let lib = line.rsplit('/').next()?;
        if lib.starts_with("libpython") {
            Some(Interpreter::Python)
        } else if lib.starts_with("libruby") {
            Some(Interpreter::Ruby)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            from_exe_name("/usr/bin/python3.11"),
            Some(Interpreter::Python)
        );
        assert_eq!(
            from_exe_name("/root/.pyenv/versions/3.11.7/bin/python3.11"),
            Some(Interpreter::Python)
        );
        assert_eq!(from_exe_name("/usr/bin/ruby3.1"), Some(Interpreter::Ruby));
        assert_eq!(from_exe_name("/usr/bin/bash"), None);
    }

    #[test]
    fn maps() {
        let maps =
            "7f0000-7f1000 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1.2\n";
        assert_eq!(from_maps(maps), Some(Interpreter::Ruby));
        assert_eq!(
            from_maps("00400000-00401000 r-xp 0 0 0 /usr/bin/uwsgi\n"),
            None
        );
    }

    #[test]
    fn zombies_are_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: a zombie until wait().
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while is_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!is_alive(pid));
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "still a zombie"
        );
        child.wait().unwrap();
        assert!(is_alive(std::process::id()));
    }

    #[test]
    fn this_process_is_neither() {
        assert!(matches!(
            detect(std::process::id()),
            Err(Error::NotPythonOrRuby { .. })
        ));
        assert!(matches!(detect(u32::MAX - 1), Err(Error::NoSuchProcess(_))));
    }
}
