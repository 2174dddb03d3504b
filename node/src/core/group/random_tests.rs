//! A seeded random sequence of group inputs, checking the invariants and that every request
//! is answered exactly once.
