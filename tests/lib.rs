//! End-to-end tests for the edge node live in `e2e/`; this library is empty.
