//! Real browsers on every page a member sees.
//!
//! - `frame`: the live frame's first document, over HTTP.

mod frame;
