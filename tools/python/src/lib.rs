//! Sandboxed Python execution for agents: runs model-written code in a contained child process.
