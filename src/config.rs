//! The cluster config: which workers run on which groups of nodes.
//!
//! (Being built: see the agent issue.)
