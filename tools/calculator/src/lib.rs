//! Exact arithmetic for agents: a calculator tool on arbitrary-precision rationals.
