//! What one run of code produced.

use std::fmt;
use std::time::Duration;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The code ran to the end.
    Ok,
    /// The code raised an exception; its traceback is in
    /// [`Execution::stderr`].
    Exception {
        /// The exception's class name, such as `ZeroDivisionError`.
        name: String,
    },
    /// The code called `sys.exit` (or `exit`) or `os._exit`.
    Exit {
        /// The exit status.
        code: i32,
    },
    /// The wall-clock limit passed; the interpreter was killed.
    Timeout {
        /// The limit that passed.
        after: Duration,
    },
    /// The interpreter used up its CPU-time limit and was killed.
    CpuTimeLimit,
    /// The code ran out of memory under the memory limit.
    MemoryLimit,
    /// The code kept writing well past the output limit; the interpreter was
    /// killed.
    OutputLimit,
    /// The interpreter was killed by a signal.
    Signal {
        /// The signal number.
        signal: i32,
    },
    /// The interpreter broke the protocol with the host (the code wrote to
    /// the sandbox's own pipes); it was killed.
    ProtocolViolation,
}

impl Outcome {
    /// Whether the code ran to the end without an exception.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Exit { code: 0 })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("finished"),
            Outcome::Exception { name } => write!(f, "raised {name}"),
            Outcome::Exit { code } => write!(f, "exited with status {code}"),
            Outcome::Timeout { after } => {
                write!(
                    f,
                    "timed out after {:.1} s and was killed",
                    after.as_secs_f64()
                )
            }
            Outcome::CpuTimeLimit => f.write_str("used up its CPU time and was killed"),
            Outcome::MemoryLimit => f.write_str("ran out of memory (memory limit)"),
            Outcome::OutputLimit => f.write_str("wrote too much output and was killed"),
            Outcome::Signal { signal } => write!(f, "was killed by signal {signal}"),
            Outcome::ProtocolViolation => {
                f.write_str("wrote to the sandbox's control pipes and was killed")
            }
        }
    }
}

/// The result of running code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// How the run ended.
    pub outcome: Outcome,
    /// What the code printed, cut at the output limit with a marker.
    pub stdout: String,
    /// What the code wrote to stderr, tracebacks included, cut at the output
    /// limit with a marker.
    pub stderr: String,
    /// `repr` of the last statement's value when it is an expression whose
    /// value is not `None`, as a notebook shows it.
    pub value: Option<String>,
    /// The interpreter ended during this run: variables from earlier runs in
    /// the session are gone, and the next run starts a fresh interpreter in
    /// the same working directory.
    pub state_lost: bool,
    /// Wall-clock time of the run, including starting an interpreter when
    /// one was started.
    pub duration: Duration,
}

/// The run as text for the model: the output, the value and how it ended.
impl fmt::Display for Execution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.stdout.is_empty() {
            writeln!(f, "[stdout]\n{}", self.stdout.trim_end())?;
        }
        if !self.stderr.is_empty() {
            writeln!(f, "[stderr]\n{}", self.stderr.trim_end())?;
        }
        if let Some(value) = &self.value {
            writeln!(f, "[value]\n{value}")?;
        }
        write!(f, "[status] the code {}", self.outcome)?;
        if self.state_lost {
            write!(
                f,
                "; the interpreter was restarted, so variables from earlier calls are gone \
                 (files in the working directory remain)"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_for_the_model() {
        let run = Execution {
            outcome: Outcome::Exception {
                name: "ZeroDivisionError".into(),
            },
            stdout: "hi\n".into(),
            stderr: "Traceback ...\n".into(),
            value: None,
            state_lost: false,
            duration: Duration::from_millis(3),
        };
        assert_eq!(
            run.to_string(),
            "[stdout]\nhi\n[stderr]\nTraceback ...\n[status] the code raised ZeroDivisionError"
        );
        assert!(!run.outcome.is_ok());
    }
}
