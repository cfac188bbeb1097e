//! Operators reviewing bindings.
