//! Finding the Python interpreter and asking it where it lives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// The oldest Python the driver supports.
const MIN_VERSION: (u32, u32) = (3, 8);
/// How long the interpreter may take to describe itself.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Printed by the interpreter; valid Python 2 as well, so that an old
/// interpreter is recognised rather than failing with a syntax error.
const INSPECT: &str = "import sys, json; print(json.dumps({'version': list(sys.version_info[:3]), \
     'executable': sys.executable, 'prefixes': [sys.prefix, sys.base_prefix, sys.exec_prefix, \
     sys.base_exec_prefix]}))";

/// A Python 3 interpreter, as it describes itself.
#[derive(Debug, Clone)]
pub(crate) struct Interpreter {
    /// The real executable (symlinks and launcher shims resolved).
    pub executable: PathBuf,
    /// Major, minor, micro.
    pub version: (u32, u32, u32),
    /// Installation prefixes (the standard library and site-packages live
    /// below these).
    pub prefixes: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct Described {
    version: Vec<u32>,
    executable: String,
    prefixes: Vec<String>,
}

/// Finds `requested` (a path, or a command name looked up on `PATH`; by
/// default `python3`) and checks that it is Python 3.8 or newer.
pub(crate) async fn inspect(requested: Option<&Path>) -> Result<Interpreter, Error> {
    let wanted = requested.unwrap_or(Path::new("python3"));
    let path = resolve(wanted).ok_or_else(|| Error::InterpreterNotFound {
        path: wanted.to_path_buf(),
    })?;
    let not_python = |detail: String| Error::NotPython3 {
        path: path.clone(),
        detail,
    };
    let output = tokio::process::Command::new(&path)
        .args(["-I", "-c", INSPECT])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(INSPECT_TIMEOUT, output).await {
        Err(_) => return Err(not_python("it did not answer within 20 s".into())),
        Ok(Err(error)) => return Err(not_python(format!("it could not be run: {error}"))),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(not_python(format!(
            "asking for its version failed ({}): {}",
            output.status,
            excerpt(&stderr)
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let described: Described = serde_json::from_str(stdout.trim()).map_err(|_| {
        not_python(format!(
            "it did not describe itself as Python does: {}",
            excerpt(&stdout)
        ))
    })?;
    let [major, minor, micro] = described.version[..] else {
        return Err(not_python("it reported a malformed version".into()));
    };
    if (major, minor) < MIN_VERSION {
        return Err(not_python(format!(
            "it is Python {major}.{minor}; 3.8 or newer is needed"
        )));
    }
    if described.executable.is_empty() {
        return Err(not_python("it does not know its own executable".into()));
    }
    let executable = std::fs::canonicalize(&described.executable)?;
    let prefixes = described
        .prefixes
        .iter()
        .filter(|p| !p.is_empty())
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    Ok(Interpreter {
        executable,
        version: (major, minor, micro),
        prefixes,
    })
}

/// A path as given, or a bare command name looked up on `PATH`.
fn resolve(wanted: &Path) -> Option<PathBuf> {
    if wanted.components().count() > 1 {
        return is_executable(wanted).then(|| wanted.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(wanted))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "(no output)".to_owned();
    }
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}
