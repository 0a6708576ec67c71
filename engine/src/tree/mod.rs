//! The tree as the writers grow it: its right edge ([`RightEdge`]), pure tile math that both
//! the sequencer and a replica's writer use.

pub mod edge;

pub use edge::{EdgeError, RightEdge};
