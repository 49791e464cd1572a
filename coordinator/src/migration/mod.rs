//! Migration paths: which steps take a host from the OS it runs to a target,
//! and which requests are impossible, with the reason. Pure logic.

mod path;

pub use path::{PathError, Step, Target, Tool, plan};
